"""Two CPU processes under `torchrun` compute the same run as one process.

`accelerate launch --cpu --num_processes 2` starts ONE process (its simple launcher expects
mpirun), and a plain `torchrun` on CPU gave each process a world of its own: this test launches
two real ranks and checks they formed one group of two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _traintiny import tiny_lm, write_corpus

from vocadapt.train import TrainConfig, train_embeddings

SRC = Path(__file__).resolve().parents[1] / "src"


def _log(run_dir):
    rows = [json.loads(l) for l in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r], [r for r in rows if "bpb" in r]


def test_two_processes_equal_one(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VOCADAPT_CACHE", str(cache))
    model = tiny_lm(tmp_path / "m", tied=False)
    corpus = write_corpus(tmp_path / "train.txt")
    held = write_corpus(tmp_path / "held.txt", n=6, seed=99)
    common = ["--steps", "3", "--seq-len", "32", "--batch-size", "4", "--lr", "1e-2", "--warmup-steps", "1",
              "--eval-every", "3", "--export-model", "best", "--no-progress"]
    # One process with 2 accumulated micro-batches of 2 blocks == two processes with one micro-batch each.
    one = train_embeddings(model, corpus, tmp_path / "one",
                           TrainConfig(steps=3, seq_len=32, batch_size=4, lr=1e-2, warmup_steps=1, eval_every=3,
                                       grad_accum=2, export_model="best", progress=False), eval_text=held)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "VOCADAPT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    # --standalone: a free port of its own, so that parallel test runs do not collide.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vocadapt", "train", str(model), str(corpus),
           "--out", str(tmp_path / "two"), "--eval-text", str(held), *common]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((tmp_path / "two" / "checkpoints" / "step-000003" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    # The best evaluation's export (written by rank 0 while the other waits) and its step.
    assert json.loads((tmp_path / "two" / "best" / "trainer_state.json").read_text())["step"] == one.model_step
    train1, eval1 = _log(tmp_path / "one")
    train2, eval2 = _log(tmp_path / "two")
    # Equal lengths first: zip() below would silently compare only the shorter log.
    assert [r["step"] for r in train1] == [r["step"] for r in train2] == [1, 2, 3]
    assert [r["step"] for r in eval1] == [r["step"] for r in eval2] == [0, 3]
    assert [r["tokens"] for r in train2] == [r["tokens"] for r in train1]
    for a, b in zip(train1 + eval1, train2 + eval2, strict=True):
        for key in ("loss", "bpb"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6)
    from vocadapt.io.checkpoint import Checkpoint

    ca, cb = Checkpoint(one.model_dir), Checkpoint(tmp_path / "two" / "model")
    for name in ca.tensors:
        torch.testing.assert_close(ca.read(name), cb.read(name), rtol=1e-5, atol=1e-6)
    assert "interrupted" not in proc.stderr
    # The summary table is printed once, by rank 0.
    assert proc.stdout.count("held-out bits per byte") == 1


def test_two_processes_stop_together_on_ctrl_c_and_resume(tmp_path, monkeypatch):
    """A Ctrl-C reaches the ranks at different moments (the terminal's signal, then torchrun's
    forwarded one); here only rank 1 gets it. Both ranks still stop after the same step (a rank
    stopping alone would leave the other waiting in a collective), rank 0 prints the one line,
    and a 2-process resume ends where one process with the same global batch ends."""
    import signal
    import time

    cache = tmp_path / "cache"
    monkeypatch.setenv("VOCADAPT_CACHE", str(cache))
    model = tiny_lm(tmp_path / "m", tied=False)
    corpus = write_corpus(tmp_path / "train.txt")
    held = write_corpus(tmp_path / "held.txt", n=6, seed=99)
    steps = 30
    one = train_embeddings(model, corpus, tmp_path / "one",
                           TrainConfig(steps=steps, seq_len=32, batch_size=4, lr=1e-2, warmup_steps=1, eval_every=10,
                                       grad_accum=2, export_model="best", progress=False), eval_text=held)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "VOCADAPT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    cut = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vocadapt", "train", str(model), str(corpus), "--out", str(cut), "--eval-text", str(held),
           "--steps", str(steps), "--seq-len", "32", "--batch-size", "4", "--lr", "1e-2", "--warmup-steps", "1",
           "--eval-every", "10", "--no-progress"]
    import psutil

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # a stray signal to this group must not reach pytest
    tree = [psutil.Process(proc.pid)]
    try:
        log = cut / "train_log.jsonl"
        deadline = time.monotonic() + 180
        while not (log.is_file() and '"loss"' in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.02)
        ranks = {p.environ().get("RANK"): p for p in psutil.Process(proc.pid).children(recursive=True)
                 if p.environ().get("RANK") is not None}
        tree += ranks.values()
        ranks["1"].send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        for p in tree:  # torchrun starts each rank in a session of its own: a hung run is killed rank by rank
            if p.is_running():
                p.kill()
        proc.wait()
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, err[-3000:]
    step = int(lines[0].split()[3].rstrip(";"))
    assert 0 < step < steps and lines[0] == (
        f"interrupted at step {step}; checkpoint saved in {cut / 'checkpoints' / f'step-{step:06d}'} (resume with --resume)")
    state = json.loads((cut / "checkpoints" / f"step-{step:06d}" / "trainer_state.json").read_text())
    assert state["step"] == step and state["world_size"] == 2
    proc = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train1, eval1 = _log(tmp_path / "one")
    train2, eval2 = _log(cut)
    assert [r["step"] for r in train1] == [r["step"] for r in train2] == list(range(1, steps + 1))
    assert [r["step"] for r in eval1] == [r["step"] for r in eval2] == [0, 10, 20, 30]
    for a, b in zip(train1 + eval1, train2 + eval2, strict=True):
        for key in ("loss", "bpb"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6)
    from vocadapt.io.checkpoint import Checkpoint

    ca, cb = Checkpoint(one.model_dir), Checkpoint(cut / "model")
    for name in ca.tensors:
        torch.testing.assert_close(ca.read(name), cb.read(name), rtol=1e-5, atol=1e-6)
