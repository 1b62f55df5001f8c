"""Run by tests/test_train_interrupt.py in a process of its own: training runs that a real SIGINT
interrupts at chosen moments, each followed by its resume, and the uninterrupted run.

The process signals itself (``os.kill(getpid(), SIGINT)``) the ``at``-th time the run passes a
point: inside a forward pass, right after ``optimizer.step()``, right after ``scheduler.step()``,
inside an evaluation, inside a checkpoint's export, right after a log row. A signal, not a raised
``KeyboardInterrupt``: the engine's handler decides when it takes effect, as with a real Ctrl-C.

    python _interrupt_driver.py SPEC.json    (writes SPEC["result"])
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import torch


class Trigger:
    def __init__(self) -> None:
        self.point, self.at, self.seen, self.fired = None, 0, 0, False

    def arm(self, point: str, at: int) -> None:
        self.point, self.at, self.seen, self.fired = point, at, 0, False

    def passed(self, point: str) -> None:
        if point != self.point or self.fired:
            return
        self.seen += 1
        if self.seen == self.at:
            self.fired = True
            os.kill(os.getpid(), signal.SIGINT)


def instrument(trigger: Trigger) -> None:
    from vocadapt.train import engine
    from vocadapt.train.lm import EmbeddingTask

    def after(owner, name, point):
        original = getattr(owner, name)

        def wrapped(*a, **k):
            out = original(*a, **k)
            trigger.passed(point)
            return out

        setattr(owner, name, wrapped)

    after(EmbeddingTask, "loss_sum", "forward")
    after(EmbeddingTask, "evaluate", "evaluate")
    after(EmbeddingTask, "export", "export")
    after(engine, "_append_log", "log")
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(lambda *_: trigger.passed("optimizer"))
    lambda_step = torch.optim.lr_scheduler.LambdaLR.step

    def scheduler_step(self, *a, **k):
        lambda_step(self, *a, **k)
        if self.last_epoch > 0:  # not the constructor's initial step
            trigger.passed("scheduler")

    torch.optim.lr_scheduler.LambdaLR.step = scheduler_step


def main(spec_path: str) -> None:
    from vocadapt.train import TrainConfig, train_embeddings

    spec = json.loads(Path(spec_path).read_text())
    cfg = TrainConfig(**spec["config"])
    args = dict(eval_text=spec["held"])
    trigger = Trigger()
    instrument(trigger)
    train_embeddings(spec["model"], spec["corpus"], spec["full"], cfg, **args)
    results = []
    for case in spec["cases"]:
        trigger.arm(case["point"], case["at"])
        message, saved = None, None
        try:
            train_embeddings(spec["model"], spec["corpus"], case["out"], cfg, **args)
        except KeyboardInterrupt as e:
            message = str(e)
            named = re.search(r"checkpoint saved in (\S+) ", message)
            state = Path(named.group(1)) / "trainer_state.json" if named else None
            if state is not None and state.is_file():  # read now: the resume may delete it (keep_checkpoints)
                saved = json.loads(state.read_text())["step"]
        trigger.point = None
        train_embeddings(spec["model"], spec["corpus"], case["out"], cfg, resume=True, **args)
        results.append({**case, "fired": trigger.fired, "message": message, "saved_step": saved})
    Path(spec["result"]).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
