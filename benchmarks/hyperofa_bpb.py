"""Equal budget: HyperOFA + its LM stage vs ``mean`` + embedding-row training (issue 8, part 3).

The question a user has: for N optimizer steps on the same tokens, which start gives the lowest
held-out bits per byte? Four models, SmolLM2-135M with a 16k Russian BPE:

  mean             FVT mean of the pieces (step 0)
  mean+rows N      mean, then N steps of ``vocadapt train`` (``--trainable``, default new-rows)
  hyperofa         rows predicted by the reconstruction-trained hypernetwork (step 0)
  hyperofa+lm N    the hypernetwork trained N more steps through the frozen LLM's next-token
                   loss (``vocadapt hypernet tune``), then the init again

Both training runs read the same corpus with the same seed, ``--seq-len`` and ``--batch-size``,
so they see the same tokens in the same order; the table prints the tokens each saw. Why
``new-rows`` by default: the LM stage can only move the rows the hypernetwork predicts (the new
tokens; SmolLM2's head is tied, so these rows are the head too), never the copied rows, and
``new-rows`` trains the same rows (plus the few fallback rows) with the same loss. ``--trainable
embeddings+head`` also lets the copied rows move: a larger parameter budget for the same steps.

Inputs follow recipes/learned-inits.yaml: OUT is that recipe's run folder; this reads
OUT/prepared/tokenizer and the reconstruction hypernetwork OUT/prepared/hn, writes the tuned
hypernetwork to OUT/prepared/hn-lm (which the recipe's ``hyperofa-lm`` entry reads) and its own
models under OUT/budget/. Held-out scoring is the recipe's: the first ``--max-chars`` characters
of the fortunes held-out text, ``EvalConfig`` defaults otherwise. Results accumulate in
OUT/budget/results.json, so a rerun does only what is missing (delete an entry to redo it).

    vocadapt hypernet train $S --vectors $V --rank 100 --hidden 128 --max-words 32 --steps 300 --out OUT/prepared/hn
    python benchmarks/hyperofa_bpb.py OUT --steps 30 --seq-len 128 --batch-size 4

``--hn NAME`` compares another hypernetwork in OUT/prepared/NAME (its tuned copy goes to
OUT/prepared/NAME-lm, its rows are labelled ``hyperofa-SUFFIX``, SUFFIX being NAME without
``hn-``), next to the same ``mean`` and ``mean+rows`` results; e.g. one trained with ``--base mean``:

    vocadapt hypernet train $S --vectors $V --rank 100 --hidden 128 --max-words 32 --steps 300 --base mean --out OUT/prepared/hn-base
    python benchmarks/hyperofa_bpb.py OUT --hn hn-base
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path


def timed(fn):
    """(result, wall seconds, CPU seconds of this process: every thread, so load does not count)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, round(time.perf_counter() - w, 1), round(time.process_time() - c, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the learned-inits recipe's run folder (holds prepared/tokenizer and prepared/hn)")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps of each training run (the budget)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the row training")
    ap.add_argument("--hn-lr", type=float, default=1e-2, help="peak learning rate of the hypernetwork in the LM stage (hypernet tune's default)")
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--trainable", default="new-rows", help="what the row training trains (new-rows | embeddings+head | embeddings)")
    ap.add_argument("--max-chars", type=int, default=5000, help="held-out characters scored per model (the recipe's eval.max_chars)")
    ap.add_argument("--fallback", default="mean", help="fallback of the inits (the recipe's)")
    ap.add_argument("--hn", default="hn", help="the hypernetwork run under OUT/prepared to compare (default hn)")
    ap.add_argument("--start", default="base", choices=("base", "network"),
                    help="LM stage of a --base mean network: base (gate at 0, starts at mean; labelled -gated) | network")
    ap.add_argument("--gate-lr", type=float, default=1e-1, help="LM stage: peak learning rate of the residual gate (hypernet tune's default)")
    ap.add_argument("--tag", default="", help="suffix of the tuned hypernetwork's label and folder (to compare LM-stage settings)")
    args = ap.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from vocadapt import assets
    from vocadapt.corpus import read_texts
    from vocadapt.evaluate.runner import EvalConfig, evaluate
    from vocadapt.hypernet.lm import LmStageConfig, tune_hypernet
    from vocadapt.init import init_embeddings
    from vocadapt.train import TrainConfig, train_embeddings

    source, text = assets.smollm2(), assets.russian_text()
    prepared, work = args.out / "prepared", args.out / "budget"
    tok, hn = prepared / "tokenizer", prepared / args.hn / "model"
    hyp = "hyperofa" if args.hn == "hn" else f"hyperofa-{args.hn.removeprefix('hn-')}"
    # a --base mean network's LM stage: gated (default, starts at mean) or from the network's residual
    gated = json.loads((hn / "hypernet.json").read_text()).get("base", "none") == "mean" and args.start == "base"
    tuned = (f"{hyp}-gated" if gated else hyp) + args.tag
    hn_lm = prepared / ((f"{args.hn}-gated" if gated else args.hn) + args.tag + "-lm")
    for need in (tok, hn):
        if not need.exists():
            raise SystemExit(f"missing {need}: make it first (see recipes/learned-inits.yaml)")
    work.mkdir(parents=True, exist_ok=True)
    results_file = work / "results.json"
    res = json.loads(results_file.read_text()) if results_file.exists() else {}
    settings = {k: getattr(args, k) for k in ("steps", "seq_len", "batch_size", "lr", "warmup_steps", "trainable",
                                              "max_chars", "fallback")}
    if res.get("settings", settings) != settings:
        raise SystemExit(f"{results_file} holds results for other settings ({res['settings']}); use another OUT or delete it")
    res["settings"] = settings

    def note(key: str, value) -> None:
        res[key] = value
        results_file.write_text(json.dumps(res, indent=1) + "\n")
        print("RESULT", key, value, flush=True)

    def init(name: str, method: str, options: dict) -> Path:
        dest = work / "models" / name
        if f"init/{name}" not in res:
            r, wall, cpu = timed(lambda: init_embeddings(source, tok, dest, method, options=options, fallback=args.fallback, overwrite=True))
            note(f"init/{name}", {"wall_s": wall, "cpu_s": cpu, "counts": r.counts.get("input")})
        return dest

    held = read_texts([text / "heldout.txt"])
    ecfg = EvalConfig(max_chars=args.max_chars, progress=False)

    def score(label: str, model: Path) -> None:
        if f"bpb/{label}" in res:
            return
        summary, wall, cpu = timed(lambda: evaluate([model], held, ["bpb"], None, work / "eval" / label.replace("+", "_"), ecfg,
                                                    names=[label]))
        m = summary["models"][0]["metrics"]
        note(f"bpb/{label}", {"bpb": m["bits_per_byte"], "chars_per_token": m["chars_per_token"], "wall_s": wall, "cpu_s": cpu})

    loop = dict(steps=args.steps, seq_len=args.seq_len, batch_size=args.batch_size, warmup_steps=args.warmup_steps,
                eval_every=0, save_every=0, progress=False, seed=0)
    n = args.steps

    mean = init("mean", "mean", {})
    score("mean", mean)
    hyper = init(hyp, "hyperofa", {"hypernet": [str(hn)]})
    score(hyp, hyper)

    if f"train/{tuned}+lm" not in res:  # the LM stage: only the hypernetwork learns
        if hn_lm.exists():
            raise SystemExit(f"{hn_lm} exists but {results_file} has no record of it: delete it to retrain")
        stage = LmStageConfig(lr=args.hn_lr, start=args.start, gate_lr=args.gate_lr, **loop)
        r, wall, cpu = timed(lambda: tune_hypernet(hn, hyper, text / "train.txt", hn_lm, stage))
        extra = {"hn_lr": args.hn_lr, **({"start": "base", "gate_lr": args.gate_lr} if gated else {})}
        note(f"train/{tuned}+lm", {"steps": r.steps, "tokens": r.tokens, "wall_s": wall, "cpu_s": cpu, **extra})
    score(f"{tuned}+lm {n}", init(f"{tuned}-lm", "hyperofa", {"hypernet": [str(hn_lm / "model")]}))

    rows = work / f"train-mean-{args.trainable}"
    if "train/mean+rows" not in res:
        if rows.exists():
            raise SystemExit(f"{rows} exists but {results_file} has no record of it: delete it to retrain")
        r, wall, cpu = timed(lambda: train_embeddings(mean, text / "train.txt", rows, TrainConfig(
            lr=args.lr, trainable=args.trainable, **loop)))
        note("train/mean+rows", {"steps": r.steps, "tokens": r.tokens, "wall_s": wall, "cpu_s": cpu})
    score(f"mean+rows {n}", rows / "model")

    load = os.getloadavg()
    tr = res["train/mean+rows"]
    print(f"\nSmolLM2-135M -> 16k Russian BPE; {n} steps x {args.batch_size} x {args.seq_len} tokens; held-out: first "
          f"{args.max_chars} characters of the fortunes; load average now {load[0]:.2f}\n")
    print("| model | trains | steps | tokens | train wall s | train CPU s | bpb |")
    print("|---|---|---|---|---|---|---|")
    variants = [k[len("train/"):-len("+lm")] for k in res if k.startswith("train/hyperofa") and k.endswith("+lm")]

    def trains(v: str) -> str:
        t = res[f"train/{v}+lm"]
        return f"hypernetwork, lr {t.get('hn_lr', 1e-3):g}" + (f", gate from 0, lr {t['gate_lr']:g}" if t.get("start") == "base" else "")

    inits = [k[len("bpb/"):] for k in res if k.startswith("bpb/hyperofa") and "+lm" not in k]
    table = [("mean", "-", None), *((v, "-", None) for v in inits),
             (f"mean+rows {n}", f"rows ({args.trainable}), lr {args.lr:g}", tr),
             *((f"{v}+lm {n}", trains(v), res[f"train/{v}+lm"]) for v in variants)]
    for label, what, t in table:
        steps, tokens, wall, cpu = (t["steps"], t["tokens"], t["wall_s"], t["cpu_s"]) if t else ("0", "-", "-", "-")
        print(f"| {label} | {what} | {steps} | {tokens} | {wall} | {cpu} | {res[f'bpb/{label}']['bpb']:.4f} |")


if __name__ == "__main__":
    main()
