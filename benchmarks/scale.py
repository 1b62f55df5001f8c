"""How `vocadapt init` grows with the vocabulary: time and peak memory at 32k, 128k and 256k x 4096.

For each vocabulary size V, a synthetic Llama checkpoint (bf16, d = 4096, untied head like
Llama-3, no transformer layers unless --layers: they are copied as bytes and do not change the
vocabulary work) with a synthetic byte-level BPE source tokenizer of V tokens, and a target
tokenizer of V tokens that shares its first quarter with the source (base bytes + the first
V/4 merges) and grows the rest with other random merges: ~75% of the rows are new, as for a
tokenizer of a new language. Methods:

* ``mean``: FVT mean of each new token's source decomposition;
* ``focus``: auxiliary vectors = random 100-d vectors keyed by the target token strings (one
  file per V, written once): FOCUS's sparsemax over all anchors at full size, without
  training fastText (whose cost is cached and does not depend on the checkpoint);
* ``regression`` (when this vocadapt has it): the same vectors as ``--features``.

Each run is one `vocadapt init` process; wall time, CPU time (user + system, all threads:
what the run costs whatever else the machine runs) and peak RSS (``getrusage`` of that child)
are measured around it and include reading the checkpoint, the alignment, the method and
writing the output (``--profile`` writes a cProfile of each run, to see which stage costs).

    PYTHONPATH=src python benchmarks/scale.py [--sizes 32768 131072 262144] [--methods mean focus regression]
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
HIDDEN = 4096


def build_inputs(work: Path, vocab: int, layers: int) -> tuple[Path, Path, Path]:
    """(source checkpoint, target tokenizer, aux vectors) for one vocabulary size, built once."""
    sys.path.insert(0, str(HERE))
    import numpy as np

    import init_memory as im

    src = work / f"llama-{vocab // 1024}k-d{HIDDEN}-{layers}L"
    tgt = work / f"tok-{vocab // 1024}k-target"
    aux = work / f"aux-{vocab // 1024}k.bin"
    if not (src / "config.json").exists():
        im.build_checkpoint(src, layers, vocab=vocab, hidden=HIDDEN)
    if not tgt.exists():
        start = im.synthetic_bpe(vocab // 4, seed=0)
        im.save_tokenizer(*im.synthetic_bpe(vocab, seed=1, start=start), tgt)
    if not aux.exists():
        from transformers import AutoTokenizer

        from vocadapt.vectors.io import WordVectors, save_vectors
        from vocadapt.vectors.train import token_key

        pieces = list(AutoTokenizer.from_pretrained(tgt).get_vocab())
        rng = np.random.default_rng(0)
        save_vectors(WordVectors([token_key(p) for p in pieces], rng.standard_normal((len(pieces), 100), dtype=np.float32)), aux)
    return src, tgt, aux


def run_one(src: Path, tgt: Path, aux: Path, method: str, out: Path, profile: Path | None) -> dict:
    """One `vocadapt init` in a fresh process: seconds, peak RSS, counts, and the log's stages."""
    shutil.rmtree(out, ignore_errors=True)
    options = {"focus": ["--aux-vectors", str(aux)], "regression": ["--features", str(aux)]}.get(method, [])
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "vocadapt.cli", "init", str(src), str(tgt), str(out), "--method", method, *options]
    # A fresh child: getrusage(RUSAGE_CHILDREN) is a max over all children, so each run is
    # launched by its own small parent process (see main).
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, TQDM_DISABLE="1"))
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak, cpu = usage.ru_maxrss / 2**20, usage.ru_utime + usage.ru_stime
    prov = json.loads((out / "vocadapt.json").read_text())
    counts = prov["results"]["counts"]["input"]
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_gib": peak, "new": counts["computed"] + counts["fallback"] + counts.get("fallback_mean", 0), "copied": counts["copied"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vocadapt-scale"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[32_768, 131_072, 262_144])
    ap.add_argument("--methods", nargs="+", default=["mean", "focus", "regression"])
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="write a cProfile of each run next to the inputs")
    ap.add_argument("--one", nargs=2, metavar=("VOCAB", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        vocab, method = int(args.one[0]), args.one[1]
        src, tgt, aux = build_inputs(args.workdir, vocab, args.layers)
        prof = args.workdir / f"{method}-{vocab // 1024}k.prof" if args.profile else None
        r = run_one(src, tgt, aux, method, args.workdir / f"out-{method}-{vocab // 1024}k", prof)
        emb_gib = 2 * vocab * HIDDEN * 2 / 2**30
        print(
            f"| {method} | {vocab:,} x {HIDDEN} | {emb_gib:.2f} GiB | {r['copied']:,} | {r['new']:,} | "
            f"{r['seconds']:.1f} s | {r['peak_gib']:.2f} GiB | {r['peak_gib'] / emb_gib:.2f}x | {r['cpu_seconds']:.1f} s |",
            flush=True,
        )
        return
    from vocadapt.init.registry import get_method

    methods = []
    for m in args.methods:
        try:
            get_method(m)
            methods.append(m)
        except Exception:  # noqa: BLE001 - a method this checkout does not have yet
            print(f"(skipping {m}: not a registered method in this checkout)", flush=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print("| method | vocabulary x d | emb + head (bf16) | copied | new | wall time | peak RSS | peak / (emb+head) | CPU time |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for vocab in args.sizes:
        # Inputs built in their own process, so the measured children start from a small parent.
        code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import scale; scale.build_inputs(scale.Path({str(args.workdir)!r}), {vocab}, {args.layers})"
        subprocess.run([sys.executable, "-c", code], check=True)
        for m in methods:
            extra = ["--profile"] if args.profile else []
            subprocess.run([sys.executable, __file__, "--workdir", str(args.workdir), "--layers", str(args.layers), "--one", str(vocab), m, *extra], check=True)


if __name__ == "__main__":
    main()
