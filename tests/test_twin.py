"""The offline base/instruct pair: twin conversations, the marker measure, a cached twin of the base's shapes."""

from __future__ import annotations

import json
from dataclasses import asdict

import torch
from safetensors import safe_open

import factories as fx
from vocadapt.evaluate.lm import Generation
from vocadapt.propagate import CalibrateConfig
from vocadapt.propagate import twin as tw

DOCS = ["Первое предложение здесь. А это второе предложение текста, оно длиннее.",
        "Short one.", "The first sentence of an English text! And then some more words follow here."]


def test_twin_conversations_answer_with_marker_and_first_sentence():
    convs = tw.twin_conversations(DOCS, 4)
    assert len(convs) == 4
    for user, assistant in convs:
        assert assistant["content"].startswith(tw.MARKER + " ")
        doc = next(d for d in DOCS if d in user["content"])
        assert assistant["content"] == f"{tw.MARKER} {tw.first_sentence(doc)}"
    assert all("Short one." not in c[0]["content"] for c in convs)  # too short to be a document
    assert len(tw.eval_prompts(DOCS, n_text=1)) == 1 + len(tw.FREE_QUESTIONS)


class _Stub:
    def chat(self, prompt):
        return f"<chat>{prompt}"

    def generate_until(self, requests):
        return [Generation(text=(f" {tw.MARKER} yes" if "yes" in p else "no"), n_tokens=2, seconds=0.0) for p, _ in requests]


def test_marker_rate_counts_answers_that_start_with_the_marker():
    rate, answers = tw.marker_rate(_Stub(), ["yes?", "b?", "yes!"])
    assert rate == 2 / 3 and answers[1] == "no"


def test_make_twin_keeps_shapes_and_is_cached(tmp_path):
    tok = fx.byte_level_bpe(fx.corpus("mixed", 200))
    base = fx.save_model(fx.tiny_model("llama", len(tok), tied=True), tok, tmp_path / "base")
    texts = [" ".join(fx.corpus("ru", 2, seed=i)) for i in range(30)]
    cfg = CalibrateConfig(**{**tw.TWIN_CONFIG, "steps": 2, "val_examples": 2, "lora_layers": [-1], "progress": False})
    twin = tw.make_twin(base, texts, n_conversations=16, config=cfg, cache=tmp_path / "cache")
    with safe_open(base / "model.safetensors", "pt") as a, safe_open(twin / "model.safetensors", "pt") as b:
        assert {k: a.get_slice(k).get_shape() for k in a.keys()} == {k: b.get_slice(k).get_shape() for k in b.keys()}
    assert (twin / "train_log.jsonl").exists() and (twin / "tokenizer.json").exists()
    mtime = (twin / "model.safetensors").stat().st_mtime
    assert tw.make_twin(base, texts, n_conversations=16, config=cfg, cache=tmp_path / "cache") == twin
    assert (twin / "model.safetensors").stat().st_mtime == mtime
    # The twin's embeddings trained too (a real instruct model's drift from its base); recorded.
    drift = json.loads((twin / "drift.json").read_text())
    assert cfg.train_embeddings and 0 < drift["input"]["relative_change"] < 0.5
    assert drift == tw.embedding_drift(base, twin)
    # Other settings never reuse the cached twin.
    other = CalibrateConfig(**{**asdict(cfg), "embedding_lr": cfg.embedding_lr / 2})
    assert tw.make_twin(base, texts, n_conversations=16, config=other, cache=tmp_path / "cache") != twin


def test_embedding_drift_measures_how_linear_the_change_is(tmp_path):
    tok = fx.byte_level_bpe(fx.corpus("mixed", 200))
    model = fx.tiny_model("llama", len(tok), tied=False)
    base = fx.save_model(model, tok, tmp_path / "base")
    g = torch.Generator().manual_seed(3)
    d = model.config.hidden_size
    m = torch.eye(d) + 0.2 * torch.randn(d, d, generator=g) / d**0.5
    with torch.no_grad():
        e = model.get_input_embeddings().weight
        e.copy_(e @ m)  # input: a pure linear map
        o = model.get_output_embeddings().weight
        o.add_(0.1 * o.std() * torch.randn(o.shape, generator=g))  # head: row noise no map explains
    drift = tw.embedding_drift(base, fx.save_model(model, tok, tmp_path / "inst"))
    assert drift["input"]["unexplained"] < 1e-4 and drift["input"]["linear_residual"] < 1e-5
    assert 0.05 < drift["input"]["relative_change"] < 0.5
    assert drift["output"]["unexplained"] > 0.9 and 0.05 < drift["output"]["relative_change"] < 0.2
