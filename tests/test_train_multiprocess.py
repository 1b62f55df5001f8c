"""Two CPU processes under `accelerate launch` compute the same run as one process."""

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
              "--eval-every", "3", "--no-progress"]
    # One process with 2 accumulated micro-batches of 2 blocks == two processes with one micro-batch each.
    one = train_embeddings(model, corpus, tmp_path / "one",
                           TrainConfig(steps=3, seq_len=32, batch_size=4, lr=1e-2, warmup_steps=1, eval_every=3,
                                       grad_accum=2, progress=False), eval_text=held)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "VOCADAPT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "vocadapt", "train", str(model), str(corpus),
           "--out", str(tmp_path / "two"), "--eval-text", str(held), *common]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train1, eval1 = _log(tmp_path / "one")
    train2, eval2 = _log(tmp_path / "two")
    assert [r["step"] for r in train2] == [1, 2, 3] and [r["tokens"] for r in train2] == [r["tokens"] for r in train1]
    for a, b in zip(train1 + eval1, train2 + eval2):
        for key in ("loss", "bpb"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6)
    from vocadapt.io.checkpoint import Checkpoint

    ca, cb = Checkpoint(one.model_dir), Checkpoint(tmp_path / "two" / "model")
    for name in ca.tensors:
        torch.testing.assert_close(ca.read(name), cb.read(name), rtol=1e-5, atol=1e-6)
    assert "interrupted" not in proc.stderr
