"""One process, interleaved: vocadapt's training step next to `Trainer.training_step`, same model.

`train_speed.py` runs each side in its own process, which is what a user sees but mixes in
whatever differs between two processes (allocator state, page cache, placement). This script
loads SmolLM2 once, builds the engine's task and a `transformers.Trainer` around the *same*
model and optimizer (fused AdamW over the trainable matrix), and alternates one optimizer step
of each on the same batches, so machine noise hits both alike:

* ``engine``: what :func:`vocadapt.train.engine.run` does per step (task.loss_sum under
  accelerator.autocast, accelerator.backward, clip, step, zero_grad);
* ``trainer``: ``Trainer.training_step(model, inputs, num_items_in_batch)`` (its compute_loss,
  the model's own loss function, its backward), then the same clip, step and zero_grad.

It also times the engine's phases (batch, forward, backward, clip, optimizer) to show where a
step goes.

    python benchmarks/train_step_ab.py [--steps 10] [--seq-len 256] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per side (after 2 warmup steps each)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args()

    import os

    import torch
    from accelerate import Accelerator
    from transformers import Trainer, TrainingArguments

    from vocadapt import assets
    from vocadapt.train.lm import EmbeddingTask, TrainConfig

    cfg = TrainConfig(steps=args.steps + 2, seq_len=args.seq_len, batch_size=args.batch_size, progress=False, eval_every=0)
    task = EmbeddingTask(assets.smollm2(), [Path(assets.russian_text()) / "train.txt"], cfg, None)
    acc = Accelerator(mixed_precision="no")
    model = task.setup(acc)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    model, opt = acc.prepare(model, opt)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model=model, args=TrainingArguments(output_dir=tmp, use_cpu=True, report_to=[], disable_tqdm=True))
    phases: dict[str, list[float]] = {k: [] for k in ("batch", "forward", "backward", "clip+optimizer")}

    clock = time.perf_counter

    def engine(step: int) -> None:
        t0 = clock()
        gb = task.global_batch(step)
        t1 = clock()
        with acc.autocast():
            loss = task.loss_sum(model, gb.micro[0][0])
        t2 = clock()
        acc.backward(loss / gb.n_items)
        t3 = clock()
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = clock()
        for k, a, b in (("batch", t0, t1), ("forward", t1, t2), ("backward", t2, t3), ("clip+optimizer", t3, t4)):
            phases[k].append(b - a)

    def hf(step: int) -> None:
        gb = task.global_batch(step)
        m = gb.micro[0][0]
        trainer.training_step(model, {"input_ids": m["input_ids"], "labels": m["labels"]}, torch.tensor(gb.n_items))
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.zero_grad()

    times: dict[str, list[float]] = {"engine": [], "trainer": []}
    for step in range(args.steps + 2):
        for name, fn in (("engine", engine), ("trainer", hf)):
            t = clock()
            fn(step)
            if step >= 2:
                times[name].append(clock() - t)
    tokens = args.batch_size * args.seq_len
    print(f"\nOne process, alternating steps: SmolLM2, batch {args.batch_size} x {args.seq_len}, {args.steps} timed steps "
          f"each, {os.cpu_count()} CPU threads, load average {os.getloadavg()[0]:.1f}\n")
    print("| step | median s/step | tokens/s |")
    print("|---|---|---|")
    for name, label in (("engine", "vocadapt engine"), ("trainer", "Trainer.training_step")):
        med = statistics.median(times[name])
        print(f"| {label} | {med:.3f} | {tokens / med:,.0f} |")
    print("\n| engine phase | median s |")
    print("|---|---|")
    for k, v in phases.items():
        print(f"| {k} | {statistics.median(v[2:]):.4f} |")


if __name__ == "__main__":
    main()
