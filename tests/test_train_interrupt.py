"""Ctrl-C at any moment of training, then --resume: the same losses and weights as a run never
interrupted. Real SIGINTs, in processes of their own (a stray one must not reach pytest)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from _traintiny import tiny_lm, write_corpus

from vocadapt.io.checkpoint import Checkpoint
from vocadapt.train import TrainConfig, train_embeddings

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
MESSAGE = re.compile(r"interrupted at step (\d+); checkpoint saved in (\S+) \(resume with --resume\)")


def _env(tmp_path) -> dict:
    # The same thread count as this process: the CLI case compares its losses with a run made here.
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "VOCADAPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": str(torch.get_num_threads())}


def _log(run_dir: Path) -> list[dict]:
    # Timing fields differ between any two runs; everything else must be equal.
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "seconds")} for r in rows]


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    ck = Checkpoint(model_dir)
    return {n: ck.read(n) for n in ck.tensors}


def _same_run(a: Path, b: Path, where: str = "") -> None:
    assert _log(a) == _log(b), where
    wa, wb = _weights(a / "model"), _weights(b / "model")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[n], wb[n]) for n in wa), where


def test_sigint_at_random_moments_then_resume_is_exact(tmp_path, monkeypatch):
    """Six seeded moments, one per kind of place a Ctrl-C can land, including between
    optimizer.step() and the step count (which used to save step N+1's weights as step N)."""
    monkeypatch.setenv("VOCADAPT_CACHE", str(tmp_path / "cache"))
    model = tiny_lm(tmp_path / "m", tied=False)
    corpus = write_corpus(tmp_path / "train.txt", n=60)
    held = write_corpus(tmp_path / "held.txt", n=4, seed=99)
    config = dict(steps=6, lr=1e-2, warmup_steps=1, seq_len=32, batch_size=4, grad_accum=2, eval_every=2,
                  save_every=2, progress=False)
    # How often a run of these settings passes each point: 12 forward passes (6 steps x 2
    # micro-batches), 6 updates, 4 evaluations (steps 0, 2, 4, 6), 3 exports (steps 2, 4 and the
    # final one), 10 log rows (6 losses, 4 evaluations).
    passes = {"forward": 12, "optimizer": 6, "scheduler": 6, "evaluate": 4, "export": 3, "log": 10}
    rng = random.Random(20)
    cases = [{"point": p, "at": rng.randint(1, n), "out": str(tmp_path / f"cut-{p}")} for p, n in passes.items()]
    spec = {"model": str(model), "corpus": str(corpus), "held": str(held), "config": config,
            "full": str(tmp_path / "full"), "cases": cases, "result": str(tmp_path / "result.json")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(HERE / "_interrupt_driver.py"), str(tmp_path / "spec.json")],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "result.json").read_text())
    assert [r["point"] for r in results] == list(passes)
    for r in results:
        where = f"{r['point']} #{r['at']}"
        assert r["fired"], where
        m = MESSAGE.fullmatch(r["message"] or "")
        assert m, (where, r["message"])
        step, ckpt = int(m.group(1)), Path(m.group(2))
        assert ckpt.name == f"step-{step:06d}"
        assert r["saved_step"] == step, where
        _same_run(Path(r["out"]), tmp_path / "full", where)


def test_ctrl_c_to_the_cli_then_resume_is_exact(tmp_path, monkeypatch):
    """SIGINT from outside, at a seeded random time once training runs: one line, exit 130, and
    the resumed run equals one never interrupted."""
    monkeypatch.setenv("VOCADAPT_CACHE", str(tmp_path / "cache"))
    model = tiny_lm(tmp_path / "m", tied=False)
    corpus = write_corpus(tmp_path / "train.txt", n=60)
    cfg = TrainConfig(steps=40, lr=1e-2, warmup_steps=1, seq_len=32, batch_size=4, eval_every=0, progress=False)
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "vocadapt", "train", str(model), str(corpus), "--out", str(cut), "--steps", "40",
           "--lr", "1e-2", "--warmup-steps", "1", "--seq-len", "32", "--batch-size", "4", "--eval-every", "0",
           "--no-progress"]
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = cut / "train_log.jsonl"
        deadline = time.monotonic() + 120
        while not (log.is_file() and '"loss"' in log.read_text()):  # training has started
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "no step"
            time.sleep(0.02)
        time.sleep(random.Random(7).uniform(0, 0.3))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    m = MESSAGE.fullmatch(lines[0])
    assert m and 0 < int(m.group(1)) < 40, lines[0]
    train_embeddings(model, corpus, cut, cfg, resume=True)
    train_embeddings(model, corpus, tmp_path / "full", cfg)
    _same_run(cut, tmp_path / "full")
