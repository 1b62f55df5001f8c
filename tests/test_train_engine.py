"""The Accelerate engine and embedding-only training on tiny random models."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from _traintiny import tiny_lm, write_corpus

from vocadapt.train import TrainConfig, train_embeddings


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VOCADAPT_CACHE", str(tmp_path / "cache"))


def small(**kw) -> TrainConfig:
    base = dict(steps=6, lr=1e-2, warmup_steps=1, seq_len=32, batch_size=4, eval_every=3, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_trains_end_to_end(tmp_path):
    model = tiny_lm(tmp_path / "m")
    corpus = write_corpus(tmp_path / "train.txt")
    held = write_corpus(tmp_path / "held.txt", n=10, seed=99)
    res = train_embeddings(model, corpus, tmp_path / "run", small(), eval_text=held)
    assert res.steps == 6 and res.tokens > 0 and res.tokens_per_s > 0
    rows = [json.loads(l) for l in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "bpb" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in evals] == [0, 3, 6]
    assert evals[-1]["bpb"] < evals[0]["bpb"]  # lr 1e-2 on a random model: held-out text gets likelier
    assert res.final_bpb == pytest.approx(evals[-1]["bpb"])
    # The exported model differs from the input only in the embedding.
    before, after = load_file(model / "model.safetensors"), load_file(res.model_dir / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (name != "model.embed_tokens.weight"), name
    prov = json.loads((res.model_dir / "vocadapt.json").read_text())
    assert prov["step"] == "train" and prov["results"]["steps"] == 6 and prov["results"]["tokens"] == res.tokens
