"""Full replacement vs `extend`, each trained with `lm` and with `distill` at equal steps (issue 19).

For each target tokenizer: ``vocadapt init --method mean`` of the base, then embedding-only
training per objective (same batches, steps, schedule), with held-out bits per byte logged every
``--eval-every`` steps on the first held-out text (the curve). Then every final model and the
base are scored on every held-out text (first ``--max-chars`` characters), characters per token
are measured, and the best run (lowest mean of its bits per byte relative to the base's) is
propagated into the instruct twin (conversion, keeping the marker and chat pieces), calibrated
(LoRA + copy task) and measured like ``benchmarks/lep_pair.py``: bits per byte, copy task,
the twin's marker rate on unseen prompts.

    PYTHONPATH=src python benchmarks/objectives.py --base SMOLLM2 --tokenizer replace=TOK16K \
        --tokenizer extend=EXT16K --corpus fortunes.txt docs.txt --heldout manpages=man.txt \
        --heldout fortunes=fort.txt [--steps 200] [--objectives lm,distill] [--workdir DIR] [--twin DIR]

Writes ``objectives.json`` and prints Markdown tables. Stages are cached in the workdir.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _pairs(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, _, path = item.partition("=")
        out[name] = Path(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--tokenizer", action="append", required=True, help="NAME=DIR")
    ap.add_argument("--corpus", nargs="+", required=True)
    ap.add_argument("--heldout", action="append", required=True, help="NAME=FILE; the first one is the curve's")
    ap.add_argument("--objectives", default="lm,distill")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--max-chars", type=int, default=8000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vocadapt-objectives"))
    ap.add_argument("--twin", type=Path, default=None, help="instruct twin (default: built from the corpus)")
    ap.add_argument("--calib-steps", type=int, default=20)
    ap.add_argument("--no-instruct", action="store_true")
    args = ap.parse_args()

    from vocadapt.corpus import read_texts
    from vocadapt.evaluate.runner import EvalConfig, evaluate
    from vocadapt.init import init_embeddings
    from vocadapt.train import TrainConfig, train_embeddings

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    toks, held = _pairs(args.tokenizer), _pairs(args.heldout)
    curve_text = next(iter(held.values()))
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": {}, "curves": {}}
    runs: dict[str, Path] = {}
    for tname, tok in toks.items():
        init_dir = work / f"init-{tname}"
        if not (init_dir / "config.json").exists():
            init_embeddings(args.base, tok, init_dir, "mean", overwrite=True)
        for obj in args.objectives.split(","):
            name = f"{tname}/{obj}"
            run = work / f"run-{tname}-{obj.replace('+', '-')}"
            if not (run / "model" / "config.json").exists():
                t0 = time.perf_counter()
                cfg = TrainConfig(steps=args.steps, lr=args.lr, warmup_steps=10, seq_len=args.seq_len,
                                  batch_size=args.batch_size, eval_every=args.eval_every, progress=False,
                                  objective=obj, keep_checkpoints=1, heldout_overlap="drop")
                train_embeddings(init_dir, args.corpus, run, cfg, eval_text=[curve_text])
                print(f"{name}: trained in {time.perf_counter() - t0:.0f} s", flush=True)
            rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
            results["curves"][name] = [(r["step"], r["bpb"]) for r in rows if "bpb" in r]
            runs[name] = run / "model"

    # Every final model and the base on every held-out text.
    models = {"base": args.base, **runs}
    table: dict[str, dict] = {m: {} for m in models}
    for hname, path in held.items():
        texts = read_texts([path])
        cfg = EvalConfig(max_chars=args.max_chars, progress=False)
        summary = evaluate(list(models.values()), texts, ["bpb"], None, work / f"eval-{hname}", cfg, text_paths=[path],
                           names=[m.replace("/", "-") for m in models])
        for m, row in zip(models, summary["models"]):
            # Both from the scored text itself (evaluate's bpb task counts its tokens too).
            table[m][f"bpb {hname}"] = row["metrics"]["bits_per_byte"]
            table[m][f"chars/token {hname}"] = row["metrics"]["chars_per_token"]
    results["runs"] = table
    base_row = table["base"]
    hnames = list(held)
    rel = {m: sum(table[m][f"bpb {h}"] / base_row[f"bpb {h}"] for h in hnames) / len(hnames) for m in runs}
    best = min(rel, key=rel.get)
    results["best"] = best

    print(f"\n{args.steps} steps x {args.batch_size} x {args.seq_len}; lr {args.lr}; first {args.max_chars} characters "
          "of each held-out text\n")
    cols = [f"bpb {h}" for h in hnames] + [f"chars/token {h}" for h in hnames]
    print("| model | " + " | ".join(cols) + " | mean bpb / base |")
    print("|---" * (len(cols) + 2) + "|")
    for m, row in table.items():
        r = f"{rel[m]:.3f}" if m in rel else "1.000"
        print(f"| {m} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + f" | {r} |")
    print(f"\nheld-out bits per byte on {hnames[0]} during training (step: bpb)\n")
    for name, pts in results["curves"].items():
        print(f"- {name}: " + ", ".join(f"{s}: {b:.3f}" for s, b in pts))

    if not args.no_instruct:
        results["instruct"] = instruct_side(args, runs[best], work, curve_text)
    (work / "objectives.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


def instruct_side(args, adapted: Path, work: Path, heldout_txt: Path) -> list[dict]:
    """Propagate the best adapted base into the twin, calibrate, and measure (as lep_pair.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from lep_pair import measure  # noqa: E402  (the same measurements as the LEP pair benchmark)

    from vocadapt.corpus import read_texts
    from vocadapt.propagate import twin as tw
    from vocadapt.propagate.calibrate import CalibrateConfig, calibrate
    from vocadapt.propagate.lep import PropagateConfig, propagate

    texts = read_texts([args.corpus[0]])
    twin = args.twin or tw.make_twin(args.base, texts, cache=work)
    prop = work / "propagated"
    if not (prop / "config.json").exists():
        propagate(args.base, twin, adapted, prop, PropagateConfig(method="conversion", keep_text=[tw.MARKER], keep_chat=True),
                  overwrite=True)
    calib = work / f"calibrated-{args.calib_steps}"
    if not (calib / "model" / "config.json").exists():
        calibrate(prop, calib, CalibrateConfig(steps=args.calib_steps, batch_size=4, max_length=160, eval_every=0, lr=1e-3,
                                               warmup_steps=2, val_examples=4, lora_layers=[-4, -3, -2, -1],
                                               copy_chars=[40, 160], progress=False), copy_text=[args.corpus[0]])
    heldout = read_texts([heldout_txt])
    prompts = tw.eval_prompts(heldout)[:8]
    opts = {"eval_jobs": 1, "max_docs": None, "max_chars": args.max_chars, "copy_sentences": 6, "copy_paragraphs": 1}
    rows = [measure((label, str(path), str(work / f"eval-instruct-{i}"), str(heldout_txt), opts, prompts))
            for i, (label, path) in enumerate({"twin": twin, "conversion": prop, "conversion+calibration": calib / "model"}.items())]
    print("\n| instruct side | bpb | copy (length score) | copy (characters matched) | marker rate |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r.get('bits_per_byte', float('nan')):.3f} | {r.get('copy_sentence', float('nan')):.3f} | "
              f"{r.get('copy_sentence_match', float('nan')):.3f} | {r['marker_rate']:.2f} |")
    return [{k: v for k, v in r.items() if k != "marker_answers"} for r in rows]


if __name__ == "__main__":
    main()
