"""Peak memory and time of `vocadapt init --method mean` on a Llama-3-sized vocabulary.

Builds (once, under --workdir) a synthetic Llama checkpoint with a 128,256 x 4096 bfloat16
input embedding and an untied head of the same shape, plus N transformer layers of Llama-3-8B
size so that the rest of the checkpoint is larger than the two vocabulary tensors, sharded
like a real checkpoint (the embedding and the head share shards with layer tensors, so the
streaming rewrite path is exercised). Source and target tokenizers are synthetic byte-level
BPEs of 128,256 tokens. Two scenarios:

* extend:  target = source vocabulary + 16,384 appended tokens (most rows copied), and
* replace: target = an unrelated 128,256-token vocabulary (almost every row new: worst case).

Each run is a separate `vocadapt init` process; peak RSS comes from the kernel
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``), compared with the bytes of the two tensors.
Target (issue 2): peak <= 3x the bytes of embedding + head, whatever the rest of the checkpoint.

    python benchmarks/init_memory.py [--workdir /tmp/vocadapt-bench] [--layers 2]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from vocadapt.io.safetensors_stream import write_file
from vocadapt.tokenizer.canonical import bytes_to_unicode

VOCAB, HIDDEN, INTER = 128_256, 4096, 14_336
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]


def synthetic_bpe(n_tokens: int, seed: int, start: tuple[dict, list] | None = None) -> tuple[dict, list]:
    """A valid byte-level BPE (vocab, merges) grown by random merges of existing tokens."""
    rng = random.Random(seed)
    if start is None:
        vocab = {t: i for i, t in enumerate(SPECIALS + list(bytes_to_unicode().values()))}
        merges: list[tuple[str, str]] = []
    else:
        vocab, merges = dict(start[0]), list(start[1])
    tokens = [t for t in vocab if t not in SPECIALS]
    while len(vocab) < n_tokens:
        a, b = rng.choice(tokens), rng.choice(tokens)
        if len(a) + len(b) > 10 or a + b in vocab:
            continue
        vocab[a + b] = len(vocab)
        merges.append((a, b))
        tokens.append(a + b)
    return vocab, merges


def save_tokenizer(vocab: dict, merges: list, path: Path) -> None:
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(SPECIALS)
    PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=SPECIALS[0], eos_token=SPECIALS[1]).save_pretrained(path)


def build_checkpoint(
    path: Path, layers: int, vocab: int = VOCAB, hidden: int = HIDDEN, inter: int = INTER,
    tokenizer: Path | None = None, tied: bool = False,
) -> None:
    """A random Llama checkpoint (bf16) with a ``vocab`` x ``hidden`` embedding (and untied head
    unless ``tied``), ``layers`` layers, and ``tokenizer`` (a tokenizer directory whose files are
    copied; default: a synthetic byte-level BPE of ``vocab`` tokens)."""
    if (path / "config.json").exists():
        return
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)

    def rand(rows, cols):  # in row blocks: a float32 temporary of a 256k-row matrix would be 4 GiB
        out = torch.empty(rows, cols, dtype=torch.bfloat16)
        for s in range(0, rows, 8192):
            out[s : s + 8192] = torch.randn(min(8192, rows - s), cols, generator=g) * 0.02
        return out

    def layer(i):
        p = f"model.layers.{i}."
        return {
            p + "self_attn.q_proj.weight": rand(hidden, hidden), p + "self_attn.k_proj.weight": rand(kv, hidden),
            p + "self_attn.v_proj.weight": rand(kv, hidden), p + "self_attn.o_proj.weight": rand(hidden, hidden),
            p + "mlp.gate_proj.weight": rand(inter, hidden), p + "mlp.up_proj.weight": rand(inter, hidden),
            p + "mlp.down_proj.weight": rand(hidden, inter),
            p + "input_layernorm.weight": torch.ones(hidden, dtype=torch.bfloat16),
            p + "post_attention_layernorm.weight": torch.ones(hidden, dtype=torch.bfloat16),
        }

    heads, kv = hidden // 128, 8 * 128 * hidden // 4096  # Llama-3's 32 heads / 8 KV heads at 4096
    weight_map, total = {}, 0
    shards = [{"model.embed_tokens.weight": rand(vocab, hidden)}]
    for i in range(layers):
        shards.append(layer(i))
    shards[-1]["model.norm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
    if not tied:
        shards[-1]["lm_head.weight"] = rand(vocab, hidden)
    # Put the embedding in the same shard as the first layer, as real checkpoints do.
    shards[1].update(shards.pop(0)) if layers else None
    n_shards = len(shards)
    for k in range(1, n_shards + 1):
        tensors = shards.pop(0)  # drop each shard once written: this process forks the measured one
        name = f"model-{k:05d}-of-{n_shards:05d}.safetensors"
        total += write_file(tmp / name, tensors.items(), {"format": "pt"})
        weight_map.update({n: name for n in tensors})
        del tensors
    (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": hidden,
        "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv // 128, "tie_word_embeddings": tied, "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "bfloat16",
        "rms_norm_eps": 1e-5, "max_position_embeddings": 8192,
    }
    if tokenizer is None:
        save_tokenizer(*synthetic_bpe(vocab, seed=0), tmp)
    else:
        for f in Path(tokenizer).iterdir():
            if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "added_tokens")):
                shutil.copyfile(f, tmp / f.name)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tmp)
        config.update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    tmp.rename(path)


def run_init(src: Path, tgt: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in GiB) of one `vocadapt init --method mean` process."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "vocadapt.cli", "init", str(src), str(tgt), str(out), "--method", "mean"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib <= before:
        raise RuntimeError("peak RSS of this child is hidden by an earlier, larger child; run scenarios separately")
    return seconds, peak_kib / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vocadapt-bench"))
    ap.add_argument("--layers", type=int, default=2, help="transformer layers of Llama-3-8B size")
    ap.add_argument("--scenario", choices=["extend", "replace", "both"], default="both")
    args = ap.parse_args()
    src = args.workdir / f"llama-128k-{args.layers}L"
    built = not (src / "config.json").exists()
    if built:
        # Built in a child process: a forked child's peak RSS counts the parent's pages, so the
        # process that launches the measured `vocadapt init` must stay small.
        print(f"building synthetic checkpoint at {src} ...", flush=True)
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import init_memory as m; m.build_checkpoint(m.Path({str(src)!r}), {args.layers})"
        subprocess.run([sys.executable, "-c", code], check=True)
    ckpt_bytes = sum(f.stat().st_size for f in src.glob("*.safetensors"))
    vocab_bytes = 2 * VOCAB * HIDDEN * 2
    scenarios = ["extend", "replace"] if args.scenario == "both" else [args.scenario]
    # ru_maxrss of children is a max over all of them (the build above is one): a fresh process
    # for each measured run
    if len(scenarios) > 1 or built:
        for s in scenarios:
            subprocess.run([sys.executable, __file__, "--workdir", str(args.workdir), "--layers", str(args.layers), "--scenario", s], check=True)
        return
    scenario = scenarios[0]
    tgt = args.workdir / f"tok-{scenario}"
    if not tgt.exists():
        base = synthetic_bpe(VOCAB, seed=0)
        vocab, merges = synthetic_bpe(VOCAB + 16_384, seed=1, start=base) if scenario == "extend" else synthetic_bpe(VOCAB, seed=1)
        save_tokenizer(vocab, merges, tgt)
    seconds, peak = run_init(src, tgt, args.workdir / f"out-{scenario}")
    prov = json.loads((args.workdir / f"out-{scenario}" / "vocadapt.json").read_text())
    counts = prov["results"]["counts"]["input"]
    print(
        f"| {scenario:7s} | {ckpt_bytes / 2**30:5.2f} GiB | {vocab_bytes / 2**30:4.2f} GiB | "
        f"{counts['copied']:>7,} | {counts['computed'] + counts['fallback']:>7,} | {seconds:6.1f} s | {peak:5.2f} GiB | "
        f"{peak / (vocab_bytes / 2**30):4.2f}x |",
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) == 1 or "--scenario" not in sys.argv:
        print("| scenario | checkpoint | emb+head | copied | new | time | peak RSS | peak / (emb+head) |")
        print("|---|---|---|---|---|---|---|---|")
    main()
