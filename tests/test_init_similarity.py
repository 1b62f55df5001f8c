"""FOCUS, WECHSEL and OFA specifics: sparsemax, blocking, factorization, bad input (hermetic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from method_options import OPTIONS

from vocadapt.errors import VocadaptError
from vocadapt.init import init_embeddings
from vocadapt.init._similarity import sparse_combine, sparsemax, sparsemax_topk, sparsemax_weights, topk_softmax
from vocadapt.init.ofa import factorize


def test_sparsemax_known_values():
    z = torch.tensor([[0.1, 1.1, 0.2], [0.5, 0.5, 0.5], [3.0, 0.0, -1.0], [0.6, 0.4, 0.0]])
    expected = torch.tensor([[0.0, 0.95, 0.05], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.6, 0.4, 0.0]])
    torch.testing.assert_close(sparsemax(z), expected)


def test_sparsemax_topk_is_exact_even_when_support_is_wide():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 300, generator=g) * torch.linspace(0.001, 3, 40)[:, None]  # flat rows: wide support
    idx, w = sparsemax_topk(z, k=16)
    dense = torch.zeros_like(z).scatter_add_(1, idx, w)
    torch.testing.assert_close(dense, sparsemax(z), atol=1e-6, rtol=0)
    assert (sparsemax(z) > 0).sum(1).max() > 16  # the fallback path was exercised


def test_blockwise_focus_weights_equal_dense():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(57, 10, generator=g), torch.randn(300, 10, generator=g)
    idx, w = sparsemax_weights(q, k, block_elements=300 * 7)  # 7 queries per block
    blocked = torch.zeros(57, 300).scatter_add_(1, idx, w)
    cos = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(k, dim=1).T
    torch.testing.assert_close(blocked, sparsemax(cos), atol=1e-6, rtol=0)
    ti, tw = topk_softmax(q, k, 5, 0.1, block_elements=300 * 4)
    vals, ref_i = torch.topk(cos, 5)
    assert torch.equal(ti, ref_i)
    torch.testing.assert_close(tw, torch.softmax(vals / 0.1, -1))
    src = torch.randn(300, 6, generator=g).to(torch.bfloat16)
    torch.testing.assert_close(sparse_combine(src, ti, tw), torch.einsum("nk,nkd->nd", tw, src[ti].float()))


def test_ofa_factorization_full_rank_reconstructs_and_low_rank_is_optimal():
    g = torch.Generator().manual_seed(2)
    e = torch.randn(500, 24, generator=g)
    f, p = factorize(e, 24, block=64)
    torch.testing.assert_close(f @ p, e, atol=1e-4, rtol=1e-4)
    f, p = factorize(e, 5)
    u, s, vh = torch.linalg.svd(e, full_matrices=False)
    best = (u[:, :5] * s[:5]) @ vh[:5]
    torch.testing.assert_close(f @ p, best, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(f.T @ f, torch.eye(5), atol=1e-4, rtol=1e-4)  # coordinates are U_k


@pytest.mark.parametrize("method", ["focus", "wechsel", "ofa"])
def test_missing_inputs_name_the_option(method, source_models, target_tokenizers, tmp_path):
    with pytest.raises(VocadaptError, match="--(aux-corpus|source-vectors|vectors)"):
        init_embeddings(source_models["llama-bytelevel-tied"], target_tokenizers["byte_level"], tmp_path / "o", method)


def test_wechsel_rejects_wrong_dimension(source_models, target_tokenizers, tmp_path):
    opts = OPTIONS["wechsel"](tmp_path / "in")
    (tmp_path / "in" / "bad.vec").write_text("2 3\nмир 1 0 0\nдом 0 1 0\n", encoding="utf-8")
    opts["target_vectors"] = str(tmp_path / "in" / "bad.vec")
    with pytest.raises(VocadaptError, match="dimension 12 but target vectors 3"):
        init_embeddings(source_models["llama-bytelevel-tied"], target_tokenizers["byte_level"], tmp_path / "o", "wechsel", options=opts)


def test_focus_without_overlap_says_so_and_suggests(source_models, tmp_path):
    import factories as fx

    # a target tokenizer over an alphabet the source never saw: no anchors at all
    texts = ["".join(chr(0x4E00 + (i * 7 + j) % 300) for j in range(12)) for i in range(300)]
    tok = fx.wordpiece(texts, vocab_size=200)
    tok.save_pretrained(tmp_path / "tok")
    (tmp_path / "aux.txt").write_text("\n".join(texts), encoding="utf-8")
    with pytest.raises(VocadaptError, match="needs anchors.*--method mean"):
        init_embeddings(
            source_models["bert-wordpiece-mlm"], tmp_path / "tok", tmp_path / "o", "focus",
            options={"aux_corpus": [str(tmp_path / "aux.txt")], "min_count": 1, "threads": 1, "dim": 8, "epochs": 1},
        )


def test_focus_rows_are_convex_mixes_of_anchor_rows(source_models, target_tokenizers, workdir):
    from safetensors.torch import load_file

    from vocadapt.init import load_tokenizer
    from vocadapt.tokenizer.align import align_vocabularies

    src_dir, tgt_dir = source_models["llama-sentencepiece-untied"], target_tokenizers["sentencepiece"]
    out = workdir / "focus-convex"
    report = init_embeddings(src_dir, tgt_dir, out, "focus", options=OPTIONS["focus"](workdir / "focus-in"))
    assert report.counts["output"]["computed"] == report.counts["input"]["computed"] > 0  # untied head too
    a = align_vocabularies(load_tokenizer(src_dir), load_tokenizer(tgt_dir))
    src = {k: v for f in src_dir.glob("*.safetensors") for k, v in load_file(f).items()}
    new = {k: v for f in out.glob("*.safetensors") for k, v in load_file(f).items()}
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        anchors = src[name][torch.as_tensor(a.copy_from[a.copied_ids])].float()
        lo, hi = anchors.min(0).values - 1e-3, anchors.max(0).values + 1e-3
        rows = new[name][torch.as_tensor(a.new_ids)].float()
        inside = ((rows >= lo) & (rows <= hi)).all(1)
        assert int(inside.sum()) >= report.counts["input"]["computed"]  # convex mixes stay in the anchors' box


def test_ofa_keep_factorized_writes_consistent_factors(source_models, target_tokenizers, workdir):
    from safetensors.torch import load_file

    opts = dict(OPTIONS["ofa"](workdir / "ofa-in"), keep_factorized=str(workdir / "ofa-f" / "factors.safetensors"))
    init_embeddings(source_models["llama-sentencepiece-untied"], target_tokenizers["sentencepiece"], workdir / "ofa-out", "ofa", options=opts)
    for name in ("factors.safetensors", "factors-output.safetensors"):
        t = load_file(workdir / "ofa-f" / name)
        assert t["primitives"].shape == (8, 32) and t["coordinates"].shape[1] == 8
        assert np.isfinite(t["coordinates"].numpy()).all()
