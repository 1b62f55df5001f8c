"""Our init methods beside their reference implementations, on the same inputs, in one run.

Pairs: our ``focus`` vs ``deepfocus``, our ``wechsel`` vs ``wechsel``, and our ``regression``
vs ``mergekit-tokensurgeon`` (both given the same donor: a model with the target vocabulary).
The references run in a separate virtual environment (``--peers-python``), so they cannot
change this project's packages:

    python3 -m venv /work/peers-venv
    /work/peers-venv/bin/pip install torch==2.13.0          # the CPU wheel, as in this project
    echo "torch==2.13.0" > /tmp/c.txt && /work/peers-venv/bin/pip install -c /tmp/c.txt deepfocus wechsel mergekit

Two measurements:

* **quality** on SmolLM2-135M (the one real model here) with a Russian BPE of
  ``--quality-vocab`` tokens: each side's embedding is put into the model (everything else
  unchanged) and scored, untrained, in bits per byte on the first ``--docs`` held-out Russian
  documents (``vocadapt.evaluate.bpb``). Also the time and peak RSS of that init.
* **speed** at the vocabulary sizes users run: a synthetic Llama checkpoint with d =
  ``--hidden`` (random weights, SmolLM2's tokenizer, tied embedding) and Russian BPE
  tokenizers of ``--vocab-sizes`` tokens: time and peak RSS of each side (no quality: the
  weights are random).

Every timed run is its own process; peak RSS is that process's ``getrusage`` maximum, and CPU
time (user + system over all threads) says what a run costs whatever else the machine runs. For the
FOCUS and WECHSEL pairs, timing covers the method alone, from tokenizers and the source
embedding in memory to the full target matrix (alignment, loading the vectors, similarities,
weights, rows): the scope of the reference functions. For regression vs tokensurgeon, both
are whole commands (read checkpoints, compute, write a model directory). A reference that runs
past ``--timeout`` is stopped and reported as "> timeout".

Shared inputs, prepared once and not timed: Russian BPE tokenizers (``vocadapt tokenizer
train --like SmolLM2``) trained on the Russian training text plus the navec word list (pairs
seen once merge too, so that 128k merges exist); fastText on the training text tokenized by each (FOCUS's auxiliary
space, cached); navec exported to word2vec and the Mueller dictionary as TSV (WECHSEL); the
donor, SmolLM2 given the target vocabulary by our ``mean`` (a stand-in for a helper model
trained on the target tokenizer, which this machine cannot train in the time).

    PYTHONPATH=src python benchmarks/peers.py --peers-python /work/peers-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


def target_tokenizer(work: Path, vocab: int) -> Path:
    """A Russian byte-level BPE with SmolLM2's conventions, of ``vocab`` tokens (trained once)."""
    from vocadapt import assets
    from vocadapt.tokenizer.train import TrainConfig, train_tokenizer
    from vocadapt.vectors.io import load_vectors

    out = work / f"ru-bpe-{vocab // 1000}k"
    if (out / "tokenizer.json").exists():
        return out
    words = work / "navec-words.txt"
    if not words.exists():  # the training text alone has too few distinct pairs for 128k merges
        words.write_text("\n\n".join(load_vectors(assets.russian_vectors()).words) + "\n", encoding="utf-8")
    # min_frequency 1: pairs seen in one word still merge, or the word list runs out near 82k
    config = TrainConfig(kind="bpe", vocab_size=vocab, like=str(assets.smollm2()), min_frequency=1)
    train_tokenizer([assets.russian_text() / "train.txt", words], config=config, out=out, overwrite=True)
    return out


def synthetic_source(work: Path, hidden: int) -> Path:
    """Random Llama weights (tied embedding, no layers) with SmolLM2's tokenizer, d = ``hidden``."""
    import init_memory

    from vocadapt import assets
    from vocadapt.tokenizer.canonical import vocab_size
    from vocadapt.tokenizer.load import load_tokenizer

    path = work / f"llama-smollm2tok-d{hidden}"
    n = vocab_size(load_tokenizer(assets.smollm2()))
    init_memory.build_checkpoint(path, 0, vocab=n, hidden=hidden, inter=4 * hidden, tokenizer=assets.smollm2(), tied=True)
    return path


def donor(work: Path, tok: Path) -> Path:
    """SmolLM2 with the target vocabulary by our ``mean``: the helper both regression and
    tokensurgeon read their target-side features from."""
    from vocadapt import assets
    from vocadapt.init import init_embeddings

    out = work / f"donor-mean-{tok.name}"
    if not (out / "config.json").exists():
        init_embeddings(assets.smollm2(), tok, out, "mean", overwrite=True)
    return out


# ------------------------------------------------------------------------------------------------
# Timed children
# ------------------------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """One FOCUS/WECHSEL run (ours or the reference) in this process: writes json (+ npy)."""
    import numpy as np
    import torch

    import reference_agreement as ra

    torch.set_num_threads(args.threads)
    src_tok, tgt_tok, emb = ra._load_common(args.model, args.target)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    t0 = time.perf_counter()
    side, fallback = (args.side.split(":") + ["random"])[:2]  # "ours:mean": our --fallback mean
    out = ra.method_matrix(side, args.method, src_tok, tgt_tok, emb, json.loads(args.inputs), full=True, fallback=fallback)
    seconds = time.perf_counter() - t0
    if args.save:
        np.save(args.out + ".npy", np.asarray(out, dtype=np.float32))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    # not ru_maxrss: it carries over this child's parent's size (see ra.peak_rss_mb)
    Path(args.out + ".json").write_text(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": ra.peak_rss_mb()}))


def _env(threads: int, extra_path: list[str] | None = None) -> dict[str, str]:
    env = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *(extra_path or []), env.get("PYTHONPATH", "")])
    return env


def run_pair_side(python: str, side: str, method: str, model: Path, tok: Path, inp: dict, out: Path, args, save: bool) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--child", "--side", side, "--method", method, "--model", str(model),
           "--target", str(tok), "--inputs", json.dumps(inp), "--out", str(out), "--threads", str(args.threads)]
    cmd += ["--save"] if save else []
    try:
        subprocess.run(cmd, env=_env(args.threads), check=True, timeout=args.timeout, stdout=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "cpu_seconds": None, "peak_rss_mb": None}
    return json.loads(Path(str(out) + ".json").read_text())


def run_command(cmd: list[str], threads: int, timeout: float) -> dict:
    """Wall time and peak RSS of a whole command, measured by a fresh small parent process."""
    code = (
        "import json, resource, subprocess, sys, time; t = time.perf_counter(); "
        f"r = subprocess.run({cmd!r}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout={timeout}); "
        "s = time.perf_counter() - t; sys.stderr.write(r.stderr[-3000:] if r.returncode else ''); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(json.dumps({'rc': r.returncode, 'seconds': s, 'cpu_seconds': u.ru_utime + u.ru_stime, 'peak_rss_mb': u.ru_maxrss / 1024}))"
    )
    try:
        r = subprocess.run([sys.executable, "-c", code], env=_env(threads), capture_output=True, text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "cpu_seconds": None, "peak_rss_mb": None}
    if r.returncode:
        return {"seconds": None, "cpu_seconds": None, "peak_rss_mb": None, "error": r.stderr[-2000:]}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if res["rc"]:
        raise RuntimeError(f"{cmd[0]} failed:\n{r.stderr}")
    return res


# ------------------------------------------------------------------------------------------------
# Quality
# ------------------------------------------------------------------------------------------------


def model_with_matrix(base: Path, tok: Path, matrix_npy: Path, out: Path) -> Path:
    """``base`` with its (tied) input embedding replaced by the matrix and ``tok`` as tokenizer."""
    import numpy as np
    import torch

    from vocadapt.io.checkpoint import Checkpoint, write_checkpoint
    from vocadapt.tokenizer.load import load_tokenizer

    ckpt = Checkpoint(base)
    m = torch.from_numpy(np.load(matrix_npy)).to(ckpt.dtype)
    shutil.rmtree(out, ignore_errors=True)
    repl = {n: m for n in (ckpt.vocab.input, ckpt.vocab.output) if n}
    write_checkpoint(ckpt, out, repl, {"vocab_size": m.shape[0]})
    load_tokenizer(tok).save_pretrained(str(out))
    return out


def bpb(model_dir: Path, docs: int, threads: int) -> float:
    """Bits per byte of ``model_dir`` on the first ``docs`` held-out Russian documents (own process)."""
    code = (
        "import torch, json, sys; torch.set_num_threads(%d); "
        "from vocadapt import assets; from vocadapt.corpus import read_texts; "
        "from vocadapt.evaluate.bpb import bits_per_byte; from vocadapt.model import load_model; "
        "texts = read_texts([assets.russian_text() / 'heldout.txt'])[:%d]; "
        "m, t = load_model(%r); print(bits_per_byte(m, t, texts).bits_per_byte)"
    ) % (threads, docs, str(model_dir))
    r = subprocess.run([sys.executable, "-c", code], env=_env(threads), capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------


def load() -> str:
    """The 1-minute load average now (how busy the 2 cores were around a measurement)."""
    return f"{os.getloadavg()[0]:.1f}"


def fmt_s(x):
    return "> timeout" if x is None else f"{x:.1f} s"


def fmt_cpu(m):
    return "" if m.get("cpu_seconds") is None else f"{m['cpu_seconds']:.1f} s"


def fmt_mb(x):
    return "" if x is None else f"{x / 1024:.2f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers-python", default="/work/peers-venv/bin/python", help="python of the venv with deepfocus, wechsel, mergekit")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vocadapt-peers"))
    ap.add_argument("--quality-vocab", type=int, default=32_000, help="target vocabulary for the SmolLM2 quality runs")
    ap.add_argument("--vocab-sizes", type=int, nargs="*", default=[32_000, 128_000], help="target vocabularies for the speed runs")
    ap.add_argument("--hidden", type=int, default=2048, help="d of the synthetic checkpoint for the speed runs")
    ap.add_argument("--pairs", nargs="+", default=["focus", "wechsel", "regression"], help="focus, wechsel, regression (vs tokensurgeon)")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--no-original", dest="original", action="store_false", help="skip scoring SmolLM2 with its own tokenizer")
    ap.add_argument("--no-fallback-mean", dest="fallback_mean", action="store_false", help="skip the quality row of ours with --fallback mean")
    ap.add_argument("--no-quality", dest="quality", action="store_false", help="focus/wechsel: speed rows only (no SmolLM2 quality runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--surgeon-k", type=int, default=64, help="tokensurgeon's OMP atoms per token (its default 64; cost grows with k)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a run is stopped")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--save", action="store_true")
    for a in ("--side", "--method", "--model", "--target", "--inputs", "--out"):
        ap.add_argument(a)
    args = ap.parse_args()
    if args.child:
        return child(args)

    import reference_agreement as ra

    from vocadapt import assets

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    smol = assets.smollm2()
    print(f"preparing inputs under {work} ...", flush=True)
    toks = {v: target_tokenizer(work, v) for v in sorted({args.quality_vocab, *args.vocab_sizes})}
    inputs = {v: ra.prepare(work / f"inputs-{v // 1000}k", str(toks[v]), shared=work) for v in toks}
    synth = synthetic_source(work, args.hidden) if args.vocab_sizes else None

    rows: list[str] = []
    quality: list[str] = []

    def log(line: str, table: list[str]) -> None:
        table.append(line)
        print(line, flush=True)

    qv = args.quality_vocab
    qtok = toks[qv]
    for pair in args.pairs:
        if pair in ("focus", "wechsel"):
            ref_name = {"focus": "deepfocus", "wechsel": "wechsel"}[pair]
            res = {}
            for side, python in (("ours", sys.executable), ("ref", args.peers_python)) if args.quality else ():
                out = work / f"q-{pair}-{side}"
                m = run_pair_side(python, side, pair, smol, qtok, inputs[qv], out, args, save=True)
                b = None
                if m["seconds"] is not None:
                    b = bpb(model_with_matrix(smol, qtok, Path(str(out) + ".npy"), work / f"model-{pair}-{side}"), args.docs, args.threads)
                res[side] = (m, b)
            if args.fallback_mean and args.quality:  # our option for the rows the paper leaves to noise
                out = work / f"q-{pair}-ours-meanfb"
                m = run_pair_side(sys.executable, "ours:mean", pair, smol, qtok, inputs[qv], out, args, save=True)
                res["ours:mean"] = (m, bpb(model_with_matrix(smol, qtok, Path(str(out) + ".npy"), work / f"model-{pair}-ours-meanfb"), args.docs, args.threads))
            (mr, br) = res.get("ref", (None, None))
            for side in [s for s in res if s != "ref"]:
                mo, bo = res[side]
                speed = f"{mr['seconds'] / mo['seconds']:.1f}x" if mr["seconds"] and mo["seconds"] else ""
                name = pair + (" --fallback mean" if side == "ours:mean" else "")
                log(f"| {name} | {ref_name} | {bo:.4f} | {'' if br is None else f'{br:.4f}'} | {fmt_s(mo['seconds'])} | {fmt_s(mr['seconds'])} | {speed} | {fmt_mb(mo['peak_rss_mb'])} | {fmt_mb(mr['peak_rss_mb'])} | {fmt_cpu(mo)} | {fmt_cpu(mr)} |", quality)
            for v in args.vocab_sizes:
                mo = run_pair_side(sys.executable, "ours", pair, synth, toks[v], inputs[v], work / f"s-{pair}-ours-{v}", args, save=False)
                mr = run_pair_side(args.peers_python, "ref", pair, synth, toks[v], inputs[v], work / f"s-{pair}-ref-{v}", args, save=False)
                speed = f"{mr['seconds'] / mo['seconds']:.1f}x" if mr["seconds"] and mo["seconds"] else (f"> {args.timeout / mo['seconds']:.0f}x" if mo["seconds"] else "")
                cpu_speed = f"{mr['cpu_seconds'] / mo['cpu_seconds']:.1f}x" if mr.get("cpu_seconds") and mo.get("cpu_seconds") else ""
                log(f"| {pair} vs {ref_name} | {v:,} | {args.hidden} | {fmt_s(mo['seconds'])} | {fmt_s(mr['seconds'])} | {speed} | {fmt_mb(mo['peak_rss_mb'])} | {fmt_mb(mr['peak_rss_mb'])} | {fmt_cpu(mo)} | {fmt_cpu(mr)} | {cpu_speed} | {load()} |", rows)
        elif pair == "regression":
            from vocadapt.init.registry import get_method

            try:
                get_method("regression")
            except Exception:  # noqa: BLE001 - not merged into this checkout yet
                print("(regression is not a method in this checkout: tokensurgeon runs alone)", flush=True)
                ours_cmd = None
            else:
                ours_cmd = [sys.executable, "-m", "vocadapt.cli", "init", str(smol), "DONOR", "OUT", "--method", "regression", "--overwrite"]
            d = donor(work, qtok)
            b_mean = bpb(d, args.docs, args.threads)
            surgeon = str(Path(args.peers_python).with_name("mergekit-tokensurgeon"))
            out_ts = work / "model-tokensurgeon"
            shutil.rmtree(out_ts, ignore_errors=True)
            mr = run_command([surgeon, str(smol), str(d), str(out_ts), "--quiet", "-k", str(args.surgeon_k)], args.threads, args.timeout)
            br = bpb(out_ts, args.docs, args.threads) if mr["seconds"] is not None else None
            mo, bo = {"seconds": None, "cpu_seconds": None, "peak_rss_mb": None}, None
            if ours_cmd:
                out_re = work / "model-regression"
                ours_cmd = [str(d) if c == "DONOR" else str(out_re) if c == "OUT" else c for c in ours_cmd]
                mo = run_command(ours_cmd, args.threads, args.timeout)
                bo = bpb(out_re, args.docs, args.threads)
            speed = f"{mr['seconds'] / mo['seconds']:.1f}x" if mr["seconds"] and mo["seconds"] else ""
            log(f"| regression | mergekit-tokensurgeon (omp, k={args.surgeon_k}) | {'' if bo is None else f'{bo:.4f}'} | {'' if br is None else f'{br:.4f}'} | {fmt_s(mo['seconds']) if ours_cmd else ''} | {fmt_s(mr['seconds'])} | {speed} | {fmt_mb(mo['peak_rss_mb'])} | {fmt_mb(mr['peak_rss_mb'])} | {fmt_cpu(mo)} | {fmt_cpu(mr)} |", quality)
            log(f"| (donor: mean) | | {b_mean:.4f} | | | | | | | | |", quality)
    if args.original:
        b_src = bpb(smol, args.docs, args.threads)
        log(f"| (SmolLM2, original tokenizer) | | {b_src:.4f} | | | | | | | | |", quality)

    print(f"\nQuality: SmolLM2-135M -> Russian BPE {qv:,}, bits per byte on {args.docs} held-out documents (untrained)")
    print("| ours | reference | bpb ours | bpb reference | time ours | time reference | speed-up | peak RSS ours | peak RSS reference | CPU ours | CPU reference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(quality))
    if rows:
        print(f"\nSpeed: synthetic Llama (d = {args.hidden}, SmolLM2's 49,152-token tokenizer) -> Russian BPE")
        print("| pair | target vocabulary | d | time ours | time reference | speed-up | peak RSS ours | peak RSS reference | CPU ours | CPU reference | CPU speed-up | load after |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
