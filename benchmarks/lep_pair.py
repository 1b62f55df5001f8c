"""LEP end to end on the offline pair: SmolLM2-135M-Instruct ("base") and its fine-tuned twin.

Chain (every stage cached under --workdir, so a rerun only redoes what is missing):

1. twin      the base fine-tuned (LoRA + its embeddings) so every chat answer starts with "[twin]"
             (propagate/twin.py); its embedding drift from the base is printed
2. tokenizer a 16k Russian BPE trained ``like`` the base on the Russian asset's train split
3. adapted   ``vocadapt init --method mean`` on the base, then a short embedding-only training
4. propagate the adapted vocabulary into the twin: swap, overlap, conversion, each keeping the
             base pieces of the marker and of the chat template (--keep-text/--keep-chat), and
             conversion without them for comparison
5. calibrate the conversion model: LoRA on the twin's own answers (self-calibration) + copy task
6. measure   held-out bits per byte (first --max-docs documents / --max-chars characters), copy-task
             scores, the twin's marker rate on unseen prompts, and one chat sample per model

    PYTHONPATH=src python benchmarks/lep_pair.py [--workdir /tmp/vocadapt-lep] [--train-steps 150]

Writes ``results.json`` and ``results.md`` into the workdir and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

SAMPLE_PROMPT = "Расскажи коротко, что такое зима."


def _stage(path: Path, what: str, build) -> Path:
    if (path / "config.json").is_file() or (path / "model" / "config.json").is_file() or (path / "tokenizer.json").is_file():
        print(f"[cached] {what}: {path}", flush=True)
        return path
    t0 = time.perf_counter()
    print(f"[build] {what} ...", flush=True)
    build(path)
    print(f"[done] {what} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def measure(job) -> dict:
    """Bits per byte, copy task, marker rate and a chat sample of one model (runs in a worker)."""
    import torch

    from vocadapt.corpus import read_texts
    from vocadapt.evaluate.lm import GenArgs, HFLM
    from vocadapt.evaluate.runner import EvalConfig, evaluate
    from vocadapt.propagate import twin as tw

    label, path, out, heldout_txt, args, prompts = job
    if args["eval_jobs"] > 1:  # one core per parallel worker
        torch.set_num_threads(1)
    cfg = EvalConfig(max_docs=args["max_docs"], max_chars=args["max_chars"], n_copy_sentences=args["copy_sentences"],
                     n_copy_paragraphs=args["copy_paragraphs"], progress=False)
    summary = evaluate([path], read_texts([heldout_txt]), ["bpb", "copy"], None, out, cfg, text_paths=[heldout_txt])
    lm = HFLM.from_dir(path)
    rate, answers = tw.marker_rate(lm, prompts)
    sample = lm.generate_until([(lm.chat(SAMPLE_PROMPT), GenArgs(max_new_tokens=32))])[0].text.strip()
    row = {"model": label, "path": path, **summary["models"][0]["metrics"], "marker_rate": rate, "sample": sample,
           "marker_answers": answers}
    print(label, {k: v for k, v in row.items() if k != "marker_answers"}, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vocadapt-lep"))
    ap.add_argument("--vocab-size", type=int, default=16000)
    # Defaults sized for minutes on a shared 2-core CPU; raise them on a real machine.
    ap.add_argument("--train-steps", type=int, default=0, help="embedding-only training steps of the adapted base (0: init only)")
    ap.add_argument("--train-seq-len", type=int, default=128)
    ap.add_argument("--calib-steps", type=int, default=10)
    ap.add_argument("--self-calibration", type=int, default=16, help="prompts answered by the twin for calibration")
    ap.add_argument("--copy-examples", type=int, default=32)
    ap.add_argument("--max-docs", type=int, default=300)
    ap.add_argument("--max-chars", type=int, default=None, help="held-out character budget for bits per byte")
    ap.add_argument("--copy-sentences", type=int, default=6)
    ap.add_argument("--copy-paragraphs", type=int, default=2)
    ap.add_argument("--eval-jobs", type=int, default=1, help="models measured in parallel processes")
    ap.add_argument("--marker-prompts", type=int, default=10, help="unseen prompts for the marker rate (2 over texts, then free questions)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from vocadapt import assets
    from vocadapt.corpus import read_texts
    from vocadapt.evaluate.lm import GenArgs, HFLM
    from vocadapt.init import init_embeddings
    from vocadapt.propagate import CalibrateConfig, PropagateConfig, calibrate, propagate
    from vocadapt.propagate import twin as tw
    from vocadapt.tokenizer import train_tokenizer
    from vocadapt.train import TrainConfig, train_embeddings

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    base = assets.smollm2()
    ru = assets.russian_text()
    train_txt, heldout_txt = ru / "train.txt", ru / "heldout.txt"
    texts = read_texts([train_txt])

    t0 = time.perf_counter()
    twin = assets.smollm2_twin()  # the demo's twin: built once per machine
    seen = [json.loads(line)["messages"][0]["content"] for line in (twin / "twin.jsonl").read_text(encoding="utf-8").splitlines()]
    drift_file = twin / "drift.json"
    drift = json.loads(drift_file.read_text()) if drift_file.is_file() else tw.embedding_drift(base, twin)
    print(f"twin: {twin} ({time.perf_counter() - t0:.0f} s); embedding drift from the base: {drift}", flush=True)

    tok = _stage(work / "tok16k", "16k Russian BPE like SmolLM2",
                 lambda p: train_tokenizer([train_txt], "bpe", args.vocab_size, like=base, out=p))
    init_dir = _stage(work / "adapted-init", "mean init", lambda p: init_embeddings(base, tok, p, "mean"))
    adapted = init_dir
    if args.train_steps:
        run = _stage(work / f"adapted-train-{args.train_steps}", f"embedding-only training, {args.train_steps} steps",
                     lambda p: train_embeddings(init_dir, train_txt, p, TrainConfig(
                         steps=args.train_steps, seq_len=args.train_seq_len, batch_size=4, eval_every=0, warmup_steps=2, lr=1e-3)))
        adapted = run / "model"

    # Stage directories name the twin and the adapted base they come from: a new one is rebuilt.
    tag = f"{twin.name.rsplit('-', 1)[-1]}-{adapted.parent.name if adapted != init_dir else 'init'}"
    props: dict[str, Path] = {}
    fits: dict[str, dict] = {}
    # The twin writes the marker and reads its chat template as the base tokenizer splits them;
    # the kept pieces get the twin's own rows. "conversion (plain)" shows the split without them.
    keep = dict(keep_text=[tw.MARKER], keep_chat=True)
    variants = {"swap": ("swap", keep), "overlap": ("overlap", keep), "conversion": ("conversion", keep),
                "conversion (plain)": ("conversion", {})}
    for label, (method, extra) in variants.items():
        out = work / f"prop-{method}{'-keep' if extra else ''}-{tag}"
        props[label] = _stage(out, f"propagate ({label})",
                              lambda p, m=method, x=extra: propagate(base, twin, adapted, p, PropagateConfig(method=m, **x)))
        prov = json.loads((out / "vocadapt.json").read_text(encoding="utf-8"))
        fits[label] = prov["results"]["fits"]
        print(f"{label}: grafted {prov['results'].get('grafted_tokens')}, still split differently: "
              f"{prov['results'].get('kept_text_differs')}", flush=True)

    def build_selfcal(p: Path) -> None:
        p.mkdir(parents=True, exist_ok=True)
        lm = HFLM.from_dir(twin)
        docs = [d for d in tw._docs(texts) if not any(d in q for q in seen)][: args.self_calibration]  # unseen by the twin
        prompts = [tw.TRAIN_TEMPLATES[i % len(tw.TRAIN_TEMPLATES)].format(text=d) for i, d in enumerate(docs)]
        gens = lm.generate_until([(lm.chat(q), GenArgs(max_new_tokens=32)) for q in prompts])
        rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": g.text.strip()}]}
                for q, g in zip(prompts, gens)]
        (p / "selfcal.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        (p / "tokenizer.json").write_text("{}")  # stage marker

    selfcal = _stage(work / f"selfcal-{args.self_calibration}-{twin.name.rsplit('-', 1)[-1]}",
                     f"self-calibration data ({args.self_calibration} twin answers)", build_selfcal)
    calib = _stage(work / f"calibrated-{args.calib_steps}-{props['conversion'].name}", f"calibration, {args.calib_steps} steps", lambda p: calibrate(
        props["conversion"], p, CalibrateConfig(steps=args.calib_steps, copy_examples=args.copy_examples, batch_size=4,
                                                 max_length=160, eval_every=0, lr=1e-3, warmup_steps=2, val_examples=4,
                                                 lora_layers=[-4, -3, -2, -1],
                                                 copy_chars=[40, 160]),
        instructions=selfcal / "selfcal.jsonl", copy_text=[train_txt]))

    models = {"twin (before)": twin, **props, "conversion+calibration": calib / "model"}
    heldout = read_texts([heldout_txt])
    prompts = tw.eval_prompts(heldout)[: args.marker_prompts]
    t0 = time.perf_counter()
    jobs = [(label, str(path), str(work / "eval" / f"{i}-{label.split()[0].replace('+', '-')}-{time.strftime('%H%M%S')}"),
             str(heldout_txt), vars(args), prompts)
            for i, (label, path) in enumerate(models.items())]
    if args.eval_jobs > 1:
        # One process per model: on a shared CPU each gets its own share (same total work).
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.eval_jobs, mp_context=mp.get_context("spawn")) as pool:
            rows = list(pool.map(measure, jobs))
    else:
        rows = [measure(j) for j in jobs]
    seconds = time.perf_counter() - t0
    results = {"rows": rows, "fits": fits, "twin_drift": drift, "args": {k: str(v) for k, v in vars(args).items()},
               "twin": str(twin), "eval_seconds": round(seconds, 1), "prompts": prompts}
    (work / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    cols = ["bits_per_byte", "copy_sentence", "copy_paragraph", "marker_rate"]
    lines = ["| model | " + " | ".join(cols) + " | chat sample |", "|---" * (len(cols) + 2) + "|"]
    for r in rows:
        vals = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        lines.append(f"| {r['model']} | " + " | ".join(vals) + " | " + r["sample"].replace("\n", " ").replace("|", "/")[:120] + " |")
    lines += ["", "| twin vs base | relative change | linear residual | share of the drift no linear map explains |",
              "|---|---|---|---|"]
    for matrix, v in drift.items():
        lines.append(f"| {matrix} | {v['relative_change']:.4f} | {v['linear_residual']:.4f} | {v['unexplained']:.3f} |")
    lines += ["", "| method | matrix | fit tokens | residual |", "|---|---|---|---|"]
    for method, f in fits.items():
        for matrix, v in f.items():
            lines.append(f"| {method} | {matrix} | {v['fit_tokens']} | {v['residual']:.4f} (on {v['residual_tokens']}) |")
    (work / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
