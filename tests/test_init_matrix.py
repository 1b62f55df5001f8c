"""The shared matrix: every registered init method x every model family, same assertions.

A method added to the registry is tested here without writing a test: output shape and dtype,
finite values, no all-zero row, overlapping rows copied bit for bit (input and head),
reproducibility under a changed global seed, and a saved model that ``from_pretrained`` loads
and that gives the source model's logits on text made only of overlapping tokens.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import MODEL_CASES
from method_options import options_for
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from vocadapt.init import init_embeddings, load_tokenizer, methods
from vocadapt.io.checkpoint import Checkpoint
from vocadapt.tokenizer.align import align_vocabularies

METHODS = sorted(methods())
CASES = [c[0] for c in MODEL_CASES]
FAMILY = {c[0]: c[2] for c in MODEL_CASES}


def _tensors(path):
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def report_new_ids(report, source, out):
    a = align_vocabularies(load_tokenizer(source), load_tokenizer(out), decompose=False)
    return list(a.new_ids) + list(range(a.target_size, report.target_rows))


@pytest.fixture(scope="module")
def runs(source_models, target_tokenizers, workdir):
    """Lazily run (method, case) once and share the output between the assertions."""
    cache = {}

    def get(method, case, seed=0, tag="a"):
        key = (method, case, seed, tag)
        if key not in cache:
            out = workdir / "matrix" / f"{method}-{case}-{seed}-{tag}"
            opts = options_for(method, workdir / "method-inputs" / method)
            report = init_embeddings(
                source_models[case], target_tokenizers[FAMILY[case]], out, method, seed=seed, options=opts,
            )
            cache[key] = (out, report)
        return cache[key]

    return get


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", METHODS)
def test_shapes_dtype_finite_nonzero(method, case, runs, source_models):
    out, report = runs(method, case)
    src = Checkpoint(source_models[case])
    dst = Checkpoint(out)
    assert dst.vocab.tied == src.vocab.tied
    tensors = _tensors(out)
    for name in dst.vocab.names():
        t = tensors[name]
        assert t.dtype == src.tensors[name].torch_dtype
        assert t.shape[0] == report.target_rows
        assert torch.isfinite(t.float()).all()
        if t.dim() == 2:
            # Rows copied from an all-zero source row (BERT's padding_idx) may stay zero.
            new = torch.as_tensor(report_new_ids(report, source_models[case], out))
            assert (t[new].float().abs().sum(1) > 0).all(), f"{name} has an all-zero new row"
            assert t.shape[1] == src.hidden_size
    config = json.loads((out / "config.json").read_text())
    assert (config.get("text_config") or config)["vocab_size"] == report.target_rows
    assert sum(report.counts["input"].values()) == report.target_rows


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", METHODS)
def test_overlap_rows_copied_exactly(method, case, runs, source_models, target_tokenizers):
    out, _ = runs(method, case)
    src_tok = load_tokenizer(source_models[case])
    tgt_tok = load_tokenizer(target_tokenizers[FAMILY[case]])
    a = align_vocabularies(src_tok, tgt_tok, decompose=False)
    assert a.copied_ids.size > 10, "fixture tokenizers should overlap"
    src, dst = _tensors(source_models[case]), _tensors(out)
    for name in Checkpoint(out).vocab.names():
        copied = torch.as_tensor(a.copied_ids)
        sources = torch.as_tensor(a.copy_from[a.copied_ids])
        assert torch.equal(dst[name][copied], src[name][sources]), f"{name}: copied rows differ"


@pytest.mark.parametrize("method", METHODS)
def test_reproducible_under_global_seed(method, runs):
    case = "llama-sentencepiece-untied"
    torch.manual_seed(123)
    np.random.seed(123)
    out_a, _ = runs(method, case, seed=7, tag="a")
    torch.manual_seed(999)
    np.random.seed(999)
    out_b, _ = runs(method, case, seed=7, tag="b")
    ta, tb = _tensors(out_a), _tensors(out_b)
    for name in Checkpoint(out_a).vocab.names():
        assert torch.equal(ta[name], tb[name]), f"{method}: {name} depends on global RNG state"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", METHODS)
def test_loads_and_keeps_logits_on_overlap(method, case, runs, source_models, target_tokenizers):
    out, _ = runs(method, case)
    auto = AutoModelForMaskedLM if case.startswith("bert") else AutoModelForCausalLM
    src_model = auto.from_pretrained(source_models[case]).eval()
    tgt_model = auto.from_pretrained(out).eval()
    tok = load_tokenizer(out)
    assert len(tok) <= tgt_model.get_input_embeddings().weight.shape[0]
    a = align_vocabularies(load_tokenizer(source_models[case]), tok, decompose=False)
    overlap = [int(t) for t in a.copied_ids if a.how[t] == "canonical"][:12]
    tgt_ids = torch.tensor([overlap])
    src_ids = torch.tensor([[int(a.copy_from[t]) for t in overlap]])
    with torch.no_grad():
        lt = tgt_model(tgt_ids).logits[0][:, torch.as_tensor(a.copied_ids)]
        ls = src_model(src_ids).logits[0][:, torch.as_tensor(a.copy_from[a.copied_ids])]
    torch.testing.assert_close(lt, ls, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_new_rows_are_not_copies_of_one_row(method, runs):
    """Guards against a method that fills every new token with the same vector."""
    out, report = runs(method, "llama-bytelevel-tied")
    emb = _tensors(out)[Checkpoint(out).vocab.input].float()
    new = emb[report.counts["input"]["copied"] :]
    assert torch.unique(new, dim=0).shape[0] > 1
