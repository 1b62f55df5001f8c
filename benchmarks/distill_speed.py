"""Step time of `vocadapt train` per objective: lm, distill, lm+distill (issue 19).

Distillation adds a frozen teacher forward over the same text in the teacher's own tokens
(SmolLM2 reads Russian at ~1.3 characters per token against ~3.9 for the adapted tokenizer, so
about 3x the positions) and the chunk alignment of both tokenizations on the CPU. This measures
what that costs per optimizer step against plain next-token training.

    python benchmarks/distill_speed.py --teacher SMOLLM2_DIR --student-tokenizer TOK_DIR CORPUS... \
        [--random-weights] [--steps 12] [--seq-len 128] [--batch-size 4] [--objectives lm,distill,lm+distill]

``--random-weights`` builds teacher and student from the teacher's config with random weights
(only the tokenizers and config travel: for a machine the checkpoint cannot be copied to; step
time does not depend on the weights). Otherwise the student is ``vocadapt init --method mean``
of the teacher. The teacher is bf16 on a GPU (``--teacher-dtype auto``), the student fp32 with
bf16 autocast. Reported: median step time after the first two steps, student tokens per second,
and peak CUDA memory. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _models(args, tmp: Path) -> tuple[Path, Path]:
    from vocadapt.provenance import write_provenance

    if not args.random_weights:
        from vocadapt.init import init_embeddings

        student = tmp / "student"
        init_embeddings(args.teacher, args.student_tokenizer, student, "mean", overwrite=True)
        return Path(args.teacher), student
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = {}
    for name, tok_dir in (("teacher", args.teacher), ("student", args.student_tokenizer)):
        tok = AutoTokenizer.from_pretrained(tok_dir)
        cfg = AutoConfig.from_pretrained(args.teacher)
        cfg.vocab_size = len(tok)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg)
        out[name] = tmp / name
        model.save_pretrained(out[name], safe_serialization=True)
        tok.save_pretrained(out[name])
    write_provenance(out["student"], "init", {"method": "random-weights"},
                     inputs={"source_model": out["teacher"], "target_tokenizer": args.student_tokenizer})
    return out["teacher"], out["student"]


def run(args, objective: str, student: Path, tmp: Path) -> dict:
    import torch

    from vocadapt.train import TrainConfig, train_embeddings

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cfg = TrainConfig(steps=args.steps, lr=1e-3, warmup_steps=1, seq_len=args.seq_len, batch_size=args.batch_size,
                      eval_every=0, progress=False, objective=objective, keep_checkpoints=1)
    started = time.perf_counter()
    res = train_embeddings(student, args.corpus, tmp / f"run-{objective}", cfg)
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (tmp / f"run-{objective}" / "train_log.jsonl").read_text().splitlines()]
    secs = [r["seconds"] for r in rows if "loss" in r]
    steps = [b - a for a, b in zip([0.0] + secs, secs)][2:] or secs
    median = statistics.median(steps)
    return {"objective": objective, "step_s": median, "tokens_per_s": res.tokens / res.steps / median,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0,
            "wall_s": wall, "loss": [r["loss"] for r in rows if "loss" in r][-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="+")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student-tokenizer", required=True)
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--objectives", default="lm,distill,lm+distill")
    args = ap.parse_args()
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _, student = _models(args, tmp)
        results = [run(args, o, student, tmp) for o in args.objectives.split(",")]
    print(f"\n{device}; batch {args.batch_size} x {args.seq_len} student tokens; {args.steps} steps; "
          f"{'random weights' if args.random_weights else 'mean init'}\n")
    print("| objective | median step s | student tokens/s | x lm step time | peak CUDA GiB | last loss |")
    print("|---|---|---|---|---|---|")
    base = next((r["step_s"] for r in results if r["objective"] == "lm"), None)
    for r in results:
        rel = f"{r['step_s'] / base:.2f}" if base else "-"
        print(f"| {r['objective']} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | {rel} | {r['peak_gib']:.2f} | {r['loss']:.4f} |")


if __name__ == "__main__":
    main()
