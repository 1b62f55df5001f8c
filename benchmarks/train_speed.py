"""Throughput and memory of embedding-only training: vocadapt's engine next to a plain `Trainer`.

Both runs train SmolLM2 (the cached asset, or --model) on the same packed blocks of the Russian
training text, with the same frozen parameters (everything but the input embedding and the
head; SmolLM2 ties them, so one matrix), the same batch (blocks x sequence length), AdamW
(0.9, 0.95), weight decay 0.1, warmup + cosine, clipping at 1.0, fp32 on CPU and bf16 on a GPU.
Each runs in its own process, so peak memory is its own:

* tokens/s: block positions (batch x seq_len) per second at the median step time of the steps
  after the first two (warmup: allocator, kernels). The sides alternate for ``--rounds`` rounds
  (ours, Trainer, ours, ...) and their steps are pooled, so a slow spell on a shared machine
  hits both; the table also gives each round's tokens/s. Step times on a 2-core CPU vary by
  +-15% from step to step, so 20 steps of one round cannot tell a 10% gap from noise;
* peak RSS from the kernel (``ru_maxrss``), CUDA max allocated on a GPU;
* optimizer state: bytes held by AdamW (ours: the checkpoint's optimizer file; Trainer: its
  optimizer's state tensors). Target: state for the trainable matrix only;
* model FLOPs utilization on a GPU: ``4 N + 2 N_trained`` matmul FLOPs per token (forward and
  activation gradients through every matmul, weight gradients only where weights train) plus
  attention, over the device's dense bf16 peak.

    python benchmarks/train_speed.py [--steps 20] [--seq-len 256] [--batch-size 4] [--rounds 2]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def _settings(args) -> dict:
    return dict(steps=args.steps, lr=2e-4, warmup_steps=2, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95,
                max_grad_norm=1.0, seq_len=args.seq_len, batch_size=args.batch_size, seed=0)


def _peak_cuda() -> int:
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else 0


def run_ours(args) -> dict:
    from vocadapt.train import TrainConfig, train_embeddings

    cfg = TrainConfig(**_settings(args), trainable="embeddings+head", eval_every=0, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train_embeddings(args.model, args.corpus, run, cfg)
        rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        seconds = [r["seconds"] for r in rows if "loss" in r]
        step_times = [b - a for a, b in zip([0.0] + seconds, seconds)]
        opt = sum(f.stat().st_size for f in (run / "checkpoints").glob("step-*/optimizer.bin"))
        losses = [r["loss"] for r in rows if "loss" in r]
    return {"step_times": step_times, "optimizer_bytes": opt, "loss_first": losses[0], "loss_last": losses[-1]}


def run_trainer(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from vocadapt.tokenizer.load import load_tokenizer
    from vocadapt.train.data import PackedBlocks, tokenize_corpus

    tok = load_tokenizer(args.model)
    blocks = PackedBlocks(tokenize_corpus(tok, [args.corpus], progress=False), args.seq_len,
                          pad_id=tok.pad_token_id or 0)
    gpu = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.requires_grad_(False)
    model.get_input_embeddings().weight.requires_grad_(True)
    model.get_output_embeddings().weight.requires_grad_(True)

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            b = blocks.batch([i])
            return {"input_ids": b["input_ids"][0], "labels": b["labels"][0]}

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            if gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t0)

    s = _settings(args)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, max_steps=s["steps"], per_device_train_batch_size=s["batch_size"],
            learning_rate=s["lr"], warmup_steps=s["warmup_steps"], lr_scheduler_type="cosine",
            weight_decay=s["weight_decay"], adam_beta1=s["adam_beta1"], adam_beta2=s["adam_beta2"],
            max_grad_norm=s["max_grad_norm"], logging_steps=1, save_strategy="no", report_to=[],
            bf16=gpu, use_cpu=not gpu, dataloader_num_workers=0, seed=0, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=Blocks(), callbacks=[Clock()])
        trainer.train()
        state = trainer.optimizer.state
        opt = sum(t.numel() * t.element_size() for st in state.values() for t in st.values() if torch.is_tensor(t))
        losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {"step_times": times, "optimizer_bytes": opt, "loss_first": losses[0], "loss_last": losses[-1]}


def flops_per_token(model_dir: Path, seq_len: int) -> float:
    """Matmul FLOPs per trained token with only the (tied) embedding training; see the docstring."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir)
    d, L, inter, V = c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size
    kv = d * c.num_key_value_heads // c.num_attention_heads
    body = L * (2 * d * d + 2 * d * kv + 3 * d * inter)  # q,o + k,v + gated MLP
    head = d * V
    n = body + head
    attn = 2 * 2 * L * seq_len * d  # scores and weighted sum, forward; backward doubles it
    return 4 * n + 2 * head + 3 * attn


def child(args) -> None:
    import torch

    result = run_ours(args) if args.child == "ours" else run_trainer(args)
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["cuda_peak"] = _peak_cuda()
    result["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print("RESULT " + json.dumps(result))


def main() -> None:
    from vocadapt import assets

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--corpus", type=Path, default=None)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2, help="alternating runs per side, steps pooled")
    p.add_argument("--child", choices=("ours", "trainer"), help=argparse.SUPPRESS)
    args = p.parse_args()
    args.model = args.model or assets.smollm2()
    args.corpus = args.corpus or Path(assets.russian_text()) / "train.txt"
    if args.child:
        child(args)
        return
    results: dict[str, list[dict]] = {"ours": [], "trainer": []}
    for _ in range(args.rounds):
        for name in ("ours", "trainer"):
            cmd = [sys.executable, __file__, "--child", name, "--model", str(args.model), "--corpus", str(args.corpus),
                   "--steps", str(args.steps), "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
            results[name].append(json.loads(next(line[7:] for line in out.stdout.splitlines() if line.startswith("RESULT "))))
    per_step = args.batch_size * args.seq_len
    first = results["ours"][0]
    gpu = first["cuda_peak"] > 0
    device = first["device"]
    peak = next((v for k, v in PEAK_BF16.items() if k in device), None)
    fpt = flops_per_token(args.model, args.seq_len)
    print(f"\nEmbedding-only training of {Path(args.model).name} on {device}: {args.steps} steps x {args.rounds} "
          f"rounds, batch {args.batch_size} x {args.seq_len} tokens, load average {os.getloadavg()[0]:.1f}\n")
    head = ("| run | tokens/s (median step) | s/step | tokens/s per round | peak RSS (GiB) | optimizer state (MiB) "
            "| loss first -> last |")
    if gpu:
        head += " CUDA max allocated (GiB) | MFU |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, label in (("ours", "vocadapt engine"), ("trainer", "transformers Trainer")):
        rounds = results[name]
        steady = [r["step_times"][2:] or r["step_times"] for r in rounds]
        sec = statistics.median(t for times in steady for t in times)
        tps = per_step / sec
        each = " / ".join(f"{per_step * len(t) / sum(t):,.0f}" for t in steady)
        r = rounds[0]
        row = (f"| {label} | {tps:,.0f} | {sec:.2f} | {each} | {max(x['peak_rss'] for x in rounds) / 2**30:.2f} | "
               f"{r['optimizer_bytes'] / 2**20:.0f} | {r['loss_first']:.3f} -> {r['loss_last']:.3f} |")
        if gpu:
            mfu = f"{tps * fpt / peak:.1%}" if peak else "-"
            row += f" {max(x['cuda_peak'] for x in rounds) / 2**30:.2f} | {mfu} |"
        print(row)

if __name__ == "__main__":
    main()
