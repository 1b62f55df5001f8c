"""The faster init paths give exactly what the straightforward ones gave.

Each test holds a rewritten kernel to the code it replaced (kept here as the oracle, as it was
before the change) on the same inputs, with ``torch.equal`` / bit-equal arrays, not a tolerance:
the seeded outputs of existing runs must not move.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from vocadapt.init.context import InitContext, Rows, column_stats, combine_rows, random_row_blocks
from vocadapt.tokenizer.align import Alignment, RawEncoder, align_vocabularies

# ------------------------------------------------------------------------------------------------
# Oracles: the code before the change
# ------------------------------------------------------------------------------------------------


def _assemble_before(source, ctx, rows, n_rows, fallback_salt, fallback="random"):
    """``vocadapt.init.core._assemble`` before rows were written straight into the output."""
    from vocadapt.init.context import finite_rows

    a = ctx.alignment
    new_ids = torch.as_tensor(a.new_ids, dtype=torch.long)
    values = rows.values.float().clone()
    ok = rows.ok.clone()
    for start in range(0, len(ok), 4096):
        ok[start : start + 4096] &= finite_rows(values[start : start + 4096])
    source_stats = functools.cache(lambda: column_stats(source))
    missing = torch.nonzero(~ok).flatten()
    if fallback == "mean" and len(missing):
        decompositions = ctx.decompositions
        mean_rows = combine_rows(source, [decompositions[int(i)] for i in missing])
        values[missing[mean_rows.ok]] = mean_rows.values[mean_rows.ok]
        missing = missing[~mean_rows.ok]
    if len(missing):
        mean, std = source_stats()
        values[missing] = torch.randn(len(missing), source.shape[1], generator=ctx.generator(fallback_salt)) * std + mean
    out = torch.empty(n_rows, source.shape[1], dtype=source.dtype)
    copied = torch.as_tensor(a.copied_ids, dtype=torch.long)
    out[copied] = source[torch.as_tensor(a.copy_from[a.copied_ids], dtype=torch.long)]
    out[new_ids] = values.to(source.dtype)
    if n_rows > a.target_size:
        out[a.target_size :] = source_stats()[0].to(source.dtype)
    return out


def _word_incidence_before(tokenizer, words, counts=None, *, capitalized=False, batch=50_000):
    """``word_incidence`` before encode_batch_fast and the sort-based de-duplication."""
    from scipy import sparse

    from vocadapt.init._similarity import word_variants
    from vocadapt.tokenizer.canonical import special_ids, vocab_size

    enc = RawEncoder(tokenizer)
    n_vocab = vocab_size(tokenizer)
    skip = special_ids(tokenizer) | ({enc.unk_id} if enc.unk_id is not None else set())
    rows_list, cols_list = [], []
    for s in range(0, len(words), batch):
        texts, owner = [], []
        for j, w in enumerate(words[s : s + batch]):
            for v in word_variants(w, capitalized):
                texts.append(v)
                owner.append(s + j)
        encs = enc.backend.encode_batch(texts, add_special_tokens=False)
        lens = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        rows_list.append(np.fromiter((t for e in encs for t in e.ids), dtype=np.int64, count=int(lens.sum())))
        cols_list.append(np.repeat(np.asarray(owner, dtype=np.int64), lens))
    tok, word = np.concatenate(rows_list), np.concatenate(cols_list)
    keep = (tok >= 0) & (tok < n_vocab)
    if skip:
        keep &= ~np.isin(tok, np.fromiter(skip, dtype=np.int64))
    tok, word = tok[keep], word[keep]
    key = np.unique(tok * len(words) + word)
    tok, word = key // len(words), key % len(words)
    w = np.ones(len(tok)) if counts is None else np.asarray(counts, dtype=np.float64)[word]
    return sparse.csr_matrix((w, (tok, word)), shape=(n_vocab, len(words)))


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3, 8, 17, 64])
@pytest.mark.parametrize("n", [0, 1, 15, 16, 33, 100, 257])
def test_random_row_blocks_match_one_draw(n, d):
    mean, std = torch.randn(d), torch.rand(d) + 0.1
    whole = torch.randn(n, d, generator=torch.Generator().manual_seed(3)) * std + mean
    g = torch.Generator().manual_seed(3)
    blocks = list(random_row_blocks(n, mean, std, g, block=16))
    assert [s for s, _ in blocks] == [sum(len(b) for _, b in blocks[:i]) for i in range(len(blocks))]
    got = torch.cat([b for _, b in blocks]) if blocks else torch.zeros(0, d)
    assert torch.equal(got, whole)


def _toy_context(dtype=torch.float32, n_src=40, d=24, seed=0):
    """An alignment by hand: 70 target ids, 20 copied, 50 new, some without a decomposition."""
    g = torch.Generator().manual_seed(seed)
    source = (torch.randn(n_src, d, generator=g) * 0.1).to(dtype)
    n_tgt = 70
    copy_from = np.full(n_tgt, -1, dtype=np.int64)
    copy_from[::7] = np.arange(0, n_tgt, 7) % n_src
    copy_from[1:60:9] = (np.arange(1, 60, 9) * 3) % n_src
    a = Alignment(n_src, n_tgt, copy_from, [""] * n_tgt)
    rng = np.random.default_rng(seed)
    a._decompositions = {
        int(t): ([] if t % 5 == 0 else rng.integers(0, n_src, size=int(rng.integers(1, 4))).tolist()) for t in a.new_ids
    }
    return source, InitContext(None, None, a, seed=seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fallback", ["random", "mean"])
@pytest.mark.parametrize("compact", [False, True])
def test_assemble_matches_before(dtype, fallback, compact):
    from vocadapt.init.core import _assemble

    source, ctx = _toy_context(dtype)
    n_new, d = len(ctx.new_ids), source.shape[1]
    g = torch.Generator().manual_seed(1)
    ok = torch.rand(n_new, generator=g) > 0.4
    dense = torch.randn(n_new, d, generator=g)
    dense[~ok] = 0.0
    bad = int(torch.nonzero(ok)[0])
    dense[bad, 2] = float("nan")  # a non-finite method row: treated as no signal
    before = _assemble_before(source, ctx, Rows(dense, ok), 80, "fallback/input", fallback)
    rows = Rows.subset(dense[ok], ok) if compact else Rows(dense, ok)
    after, counts = _assemble(source, ctx, rows, 80, "fallback/input", fallback)
    assert after.dtype == dtype and torch.equal(after, before)
    assert counts["computed"] == int(ok.sum()) - 1
    assert counts["fallback"] + counts["fallback_mean"] == n_new - counts["computed"]


def test_assemble_refuses_ok_rows_without_values():
    from vocadapt.init.core import _assemble

    source, ctx = _toy_context()
    ok = torch.zeros(len(ctx.new_ids), dtype=torch.bool)
    ok[:3] = True
    with pytest.raises(RuntimeError, match="no row"):
        _assemble(source, ctx, Rows(torch.zeros(2, source.shape[1]), ok, torch.tensor([0, 1])), 70, "x")


def test_plan_rows_are_the_dense_rows_of_the_ok_tokens():
    from vocadapt.init._similarity import plan_rows, sparse_combine

    g = torch.Generator().manual_seed(0)
    source = torch.randn(300, 40, generator=g).bfloat16()
    index = torch.randint(0, 300, (500, 7), generator=g)
    weights = torch.rand(500, 7, generator=g)
    weights[weights < 0.5] = 0  # sparsemax leaves zeros
    ok = torch.rand(500, generator=g) > 0.7
    weights[~ok] = 0
    rows = plan_rows(source, index, weights, ok)
    assert torch.equal(rows.where, torch.nonzero(ok).flatten())
    assert torch.equal(rows.values, sparse_combine(source, index, weights)[ok])


def test_similarity_blocks_give_the_plain_products():
    from vocadapt.init._similarity import sparsemax_weights, topk_softmax

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(301, 16, generator=g), torch.randn(257, 16, generator=g)
    qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    kn = k / k.norm(dim=1, keepdim=True).clamp_min(1e-12)
    idx, w = topk_softmax(q, k, 5, 0.1, block_elements=257 * 40)
    vals, ref_idx = torch.topk(qn @ kn.T, 5, dim=-1)
    assert torch.equal(idx, ref_idx) and torch.equal(w, torch.softmax(vals / 0.1, dim=-1))
    si, sw = sparsemax_weights(q, k, block_elements=257 * 40)
    ri, rw = sparsemax_weights(q, k, block_elements=10**9)  # one block: no buffer reuse across blocks
    assert torch.equal(si, ri) and torch.equal(sw, rw)


def test_decompositions_are_computed_on_first_read(source_models, target_tokenizers):
    from vocadapt.tokenizer.load import load_tokenizer

    src = load_tokenizer(source_models["llama-bytelevel-tied"])
    tgt = load_tokenizer(target_tokenizers["byte_level"])
    a = align_vocabularies(src, tgt)
    assert not a.decomposed and "new_with_decomposition" not in a.summary()
    new = [int(t) for t in a.new_ids if a.target_tokens[t] is not None]
    eager = dict(zip(new, RawEncoder(src).encode_many([a.target_tokens[t] for t in new])))
    assert a.decompositions == eager and a.decomposed
    assert a.summary()["new_with_decomposition"] == sum(1 for v in eager.values() if v)
    off = align_vocabularies(src, tgt, decompose=False)
    assert off.decompositions == {} and off.summary()["new_with_decomposition"] == 0


@pytest.mark.parametrize("capitalized", [False, True])
def test_word_incidence_matches_before(source_models, capitalized):
    import factories as fx

    from vocadapt.init._similarity import word_incidence
    from vocadapt.tokenizer.load import load_tokenizer

    tok = load_tokenizer(source_models["llama-bytelevel-tied"])
    words = list(dict.fromkeys(" ".join(fx.corpus("mixed", 60, seed=4)).split())) + ["<|endoftext|>", "x" * 40]
    counts = np.arange(len(words), 0, -1, dtype=np.float64)
    for c in (None, counts):
        new = word_incidence(tok, words, c, capitalized=capitalized, batch=37)
        old = _word_incidence_before(tok, words, c, capitalized=capitalized, batch=37)
        assert (new != old).nnz == 0 and np.array_equal(new.indptr, old.indptr) and np.array_equal(new.indices, old.indices)


def _train_fasttext(tmp_path, text: bytes, **kw):
    pytest.importorskip("fasttext")
    from vocadapt.vectors.train import train_cbow

    path = tmp_path / "corpus.txt"
    path.write_bytes(text)
    model = train_cbow(path, dim=8, epoch=1, minCount=1, thread=1, **kw)
    out = tmp_path / f"model-{len(kw)}.bin"
    model.save_model(str(out))
    return out


@pytest.mark.parametrize("subwords", [True, False])
def test_fasttext_reader_matches_the_library(tmp_path, subwords):
    import fasttext

    from vocadapt.vectors.io import _read_fasttext_words, load_vectors

    words = "ĠпÑĢи Ġмир мир дом домик Ġд ом ##ing a b c".encode() + b" caf\xe9 \xff\xfe"  # invalid UTF-8 too
    text = b"\n".join([words] * 30) + b"\n"
    path = _train_fasttext(tmp_path, text, **({} if subwords else {"maxn": 0}))
    model = fasttext.load_model(str(path))
    ref_words, ref_freqs = model.get_words(include_freq=True, on_unicode_error="replace")
    ref = np.stack([model.get_word_vector(w) for w in ref_words]).astype(np.float32)
    got_words, got, got_counts = _read_fasttext_words(path, None)
    assert got_words == list(ref_words) and np.array_equal(got_counts, np.asarray(ref_freqs, dtype=np.float64))
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))  # bit for bit
    assert "\ufffd" in "".join(got_words)  # the replaced (out-of-dictionary) spelling was covered
    wv = load_vectors(path)
    assert wv.has_subword_info and wv._model is None  # the model is loaded only when asked for
    assert np.array_equal(wv.fasttext_model.get_word_vector("мир"), ref[list(ref_words).index("мир")])


def test_w2v_binary_reader_matches_gensim(tmp_path):
    from gensim.models import KeyedVectors

    from vocadapt.vectors.io import WordVectors, load_vectors, save_vectors

    rng = np.random.default_rng(0)
    words = ["мир", "дом", "a", "Ġпри", "x" * 30] + [f"w{i}" for i in range(200)]
    wv = WordVectors(words, rng.standard_normal((len(words), 7)).astype(np.float32))
    path = save_vectors(wv, tmp_path / "v.bin")
    ref = KeyedVectors.load_word2vec_format(str(path), binary=True)
    got = load_vectors(path)
    assert got.words == list(ref.index_to_key)
    assert np.array_equal(got.matrix, ref.vectors)
    for limit in (1, 50):
        assert load_vectors(path, limit=limit).words == words[:limit]
