"""Held-out bits per byte during embedding-only training, one run per init method (issue 9).

The seed papers judge an initialization by the loss curve from step 0. This trains every given
init model with the same settings on the Russian training text and prints held-out bits per
byte at steps 0, 25, 50, 100 and 200 (those within --steps), the original model's bits per
byte on the same documents for reference, throughput, and the path of the curves' plot.

Inputs: init model directories (``--init-dirs``), or init methods (``--methods``) that are run
here with ``vocadapt.init_embeddings`` from SmolLM2 to the demo's Russian tokenizer (a byte-level
BPE of --vocab-size tokens trained on the same text, like SmolLM2's; cached under --workdir).

    python benchmarks/train_curves.py --methods random mean focus-meanfb --steps 200 \\
        --seq-len 256 --batch-size 8 --workdir /tmp/vocadapt-curves

``focus-meanfb`` is FOCUS with the mean fallback (the demo's variant); ``focus`` and ``focus-*``
use the training text as auxiliary corpus. Methods that need vectors (wechsel, ofa) take the
cached demo assets.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPORT_STEPS = (0, 25, 50, 100, 200)


def demo_tokenizer(workdir: Path, train: Path, vocab_size: int, source: Path) -> Path:
    from vocadapt.tokenizer import train_tokenizer

    out = workdir / f"ru-bpe-{vocab_size}"
    if not (out / "tokenizer.json").is_file():
        train_tokenizer([train], kind="bpe", vocab_size=vocab_size, like=source, out=out)
    return out


def init_options(method: str, train: Path) -> tuple[str, dict, str]:
    """(registered method, options, fallback) for a method name of the demo recipe."""
    from vocadapt import assets

    base, _, variant = method.partition("-")
    fallback = "mean" if variant == "meanfb" else "random"
    if base == "focus":
        return base, {"aux_corpus": [str(train)]}, fallback
    if base == "wechsel":
        return base, {"source_vectors": str(assets.english_vectors()), "target_vectors": str(assets.russian_vectors()),
                      "dictionary": str(assets.en_ru_dictionary())}, fallback
    if base == "ofa":
        return base, {"vectors": str(assets.multilingual_vectors()), "rank": "100"}, fallback
    return base, {}, fallback


def main() -> None:
    from vocadapt import assets, init_embeddings
    from vocadapt.corpus import read_texts
    from vocadapt.evaluate.bpb import bits_per_byte
    from vocadapt.model import load_model
    from vocadapt.train import TrainConfig, train_embeddings
    from vocadapt.train.plot import plot_runs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init-dirs", type=Path, nargs="*", default=[], help="init model directories to train")
    p.add_argument("--methods", nargs="*", default=[], help="init methods to run first (random, mean, focus-meanfb, ...)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/vocadapt-curves"))
    p.add_argument("--source", type=Path, default=None, help="source model (default: the SmolLM2 asset)")
    p.add_argument("--vocab-size", type=int, default=16000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--eval-max-docs", type=int, default=200)
    p.add_argument("--trainable", default="embeddings+head")
    args = p.parse_args()
    if not args.init_dirs and not args.methods:
        p.error("give --init-dirs or --methods")

    source = args.source or assets.smollm2()
    text = Path(assets.russian_text())
    train, heldout = text / "train.txt", text / "heldout.txt"
    args.workdir.mkdir(parents=True, exist_ok=True)
    inits = list(args.init_dirs)
    if args.methods:
        tok = demo_tokenizer(args.workdir, train, args.vocab_size, source)
        for method in args.methods:
            out = args.workdir / f"init-{method}"
            if not (out / "config.json").is_file():
                base, options, fallback = init_options(method, train)
                init_embeddings(source, tok, out, base, options=options, fallback=fallback)
            inits.append(out)

    # The demo's held-out fortunes repeat some training fortunes (the same saying in several
    # fortune files): score only the others, for the trained models and the original alike.
    from vocadapt.tokenizer.load import load_tokenizer
    from vocadapt.train.data import overlaps, tokenize_corpus

    all_docs = read_texts([heldout])
    data = tokenize_corpus(load_tokenizer(inits[0]), [train], progress=False)
    docs = [d for d, hit in zip(all_docs, overlaps(data, all_docs)) if not hit][: args.eval_max_docs]
    model, tok = load_model(source)
    original = bits_per_byte(model, tok, docs, max_length=args.seq_len).bits_per_byte
    del model

    cfg = dict(steps=args.steps, lr=args.lr, warmup_steps=args.warmup_steps, seq_len=args.seq_len,
               batch_size=args.batch_size, eval_every=args.eval_every, eval_max_docs=args.eval_max_docs,
               trainable=args.trainable, heldout_overlap="drop")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows, runs = [], []
    for init in inits:
        run = args.workdir / f"run-{init.name}-{stamp}"
        res = train_embeddings(init, [train], run, TrainConfig(**cfg), eval_text=[heldout])
        log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        bpb = {r["step"]: r["bpb"] for r in log if "bpb" in r}
        rows.append((init.name, bpb, res.tokens_per_s))
        runs.append(run)
    plot = plot_runs(runs, args.workdir / f"curves-{stamp}.png")

    steps = [s for s in REPORT_STEPS if s <= args.steps]
    print(f"\nHeld-out bits per byte ({len(docs)} documents of {heldout} that are not in the training text); {source.name} -> Russian BPE; "
          f"batch {args.batch_size} x {args.seq_len} tokens, lr {args.lr}, {args.trainable}; "
          f"CPU load average {os.getloadavg()[0]:.1f}\n")
    print("| init | " + " | ".join(f"step {s}" for s in steps) + " | tokens/s |")
    print("|---|" + "---|" * (len(steps) + 1))
    print(f"| original model (own tokenizer) | {original:.4f} |" + " |" * (len(steps) - 1) + " |")
    for name, bpb, tps in rows:
        cells = " | ".join(f"{bpb[s]:.4f}" if s in bpb else "-" for s in steps)
        print(f"| {name} | {cells} | {tps:,.0f} |")
    print(f"\nplot: {plot}")


if __name__ == "__main__":
    main()
