"""Tokenizers built by `vocadapt tokenizer extend/optimize` go straight into `vocadapt init`."""

from __future__ import annotations

import json

import factories as fx
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from vocadapt.init import init_embeddings
from vocadapt.tokenizer import extend_tokenizer, optimize_tokenizer


@pytest.fixture(scope="module")
def ru_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "ru.txt"
    path.write_text("\n\n".join(fx.corpus("ru", 400, seed=11)), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", ["llama-bytelevel-tied", "llama-sentencepiece-untied"])
def test_extended_tokenizer_keeps_every_old_row(case, source_models, ru_corpus, tmp_path):
    src = source_models[case]
    tok_dir = tmp_path / "tok"
    extend_tokenizer(src, [ru_corpus], add=60, out=tok_dir)
    out = tmp_path / "model"
    report = init_embeddings(src, tok_dir, out, "mean")
    before, after = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    n_old = before["model.embed_tokens.weight"].shape[0]
    for name in [n for n in before if "embed_tokens" in n or "lm_head" in n]:
        assert torch.equal(after[name][:n_old], before[name]), name
    assert report.counts["input"]["copied"] >= n_old
    assert report.target_rows > n_old
    assert AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.shape[0] == report.target_rows


def test_optimized_tokenizer_copies_rows_by_mapping(source_models, ru_corpus, tmp_path):
    src = source_models["llama-bytelevel-tied"]
    tok_dir = tmp_path / "tok"
    optimize_tokenizer(src, [ru_corpus], keep=320, add=60, out=tok_dir)
    mapping = json.loads((tok_dir / "vocab_mapping.json").read_text())["new_to_old"]
    out = tmp_path / "model"
    init_embeddings(src, tok_dir, out, "mean")
    before = load_file(src / "model.safetensors")["model.embed_tokens.weight"]
    after = load_file(out / "model.safetensors")["model.embed_tokens.weight"]
    kept = [(new, old) for new, old in enumerate(mapping) if old is not None]
    assert len(kept) >= 100
    for new, old in kept:
        assert torch.equal(after[new], before[old])
