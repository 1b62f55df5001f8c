"""Packing of training blocks and the tokenize-once cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from vocadapt.train.data import PackedBlocks, TokenizedCorpus, tokenize_corpus


def _corpus(lengths: list[int]) -> TokenizedCorpus:
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    ids = np.concatenate([np.full(n, d + 1, dtype=np.int32) for d, n in enumerate(lengths)])  # token = doc number
    return TokenizedCorpus(ids=ids, starts=starts, text_hashes=np.zeros(0, np.uint64), key="test")


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(4, 24))
def test_blocks_cover_every_token_once_and_start_at_documents(lengths, seq_len):
    corpus = _corpus(lengths)
    if corpus.n_tokens < seq_len:
        return
    blocks = PackedBlocks(corpus, seq_len)
    spans = blocks.spans
    assert spans[0, 0] == 0 and spans[-1, 1] == corpus.n_tokens
    assert (spans[1:, 0] == spans[:-1, 1]).all()  # contiguous, no token dropped or repeated
    assert ((spans[:, 1] - spans[:, 0]) <= seq_len).all()
    doc_starts = set(corpus.starts.tolist())
    for (b, e) in spans:
        if b not in doc_starts:
            # only a continuation of a document longer than a block, which then fills whole blocks
            d = np.searchsorted(corpus.starts, b, side="right") - 1
            assert corpus.starts[d + 1] - corpus.starts[d] > seq_len
        # a block never ends inside a document unless that document is longer than a block
        if e not in doc_starts:
            d = np.searchsorted(corpus.starts, e, side="right") - 1
            assert corpus.starts[d + 1] - corpus.starts[d] > seq_len and e - b == seq_len


def test_batch_pads_with_ignored_labels_and_order_is_seeded():
    blocks = PackedBlocks(_corpus([5, 3, 9, 2, 30, 4]), 8, pad_id=0)
    batch = blocks.batch([0, 1])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0].tolist() == [1] * 5 + [2] * 3  # docs 1 and 2 fill block 0 exactly
    row = batch["labels"][1].tolist()
    assert row == [3] * 8  # doc 3 (9 tokens) fills block 1 and continues in block 2
    last = blocks.batch([len(blocks) - 1])
    n = int(blocks.spans[-1, 1] - blocks.spans[-1, 0])
    assert (last["labels"][0, n:] == -100).all() and (last["labels"][0, :n] != -100).all()
    a = blocks.block_indices(0, 3 * len(blocks), seed=1)
    assert a == blocks.block_indices(0, 3 * len(blocks), seed=1)
    assert a != blocks.block_indices(0, 3 * len(blocks), seed=2)
    for epoch in range(3):  # every epoch is a permutation of all blocks
        assert sorted(a[epoch * len(blocks):(epoch + 1) * len(blocks)]) == list(range(len(blocks)))


def test_one_seeds_block_order_does_not_leak_into_anothers():
    lengths = [5, 3, 9, 2, 30, 4, 7, 11]
    fresh = PackedBlocks(_corpus(lengths), 8).block_indices(0, 5, seed=2)
    blocks = PackedBlocks(_corpus(lengths), 8)
    assert blocks.block_indices(0, 5, seed=1) != fresh
    assert blocks.block_indices(0, 5, seed=2) == fresh  # same epoch, other seed: not served from the cache


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(4, 24), st.integers(0, 60), st.integers(0, 3))
def test_token_counts_are_those_of_the_blocks_served(lengths, seq_len, n_blocks, seed):
    corpus = _corpus(lengths)
    if corpus.n_tokens < seq_len:
        return
    blocks = PackedBlocks(corpus, seq_len)
    served = blocks.batch(blocks.block_indices(0, n_blocks, seed))["labels"] if n_blocks else None
    want = np.bincount(served[served != -100].numpy(), minlength=len(lengths) + 1) if n_blocks else np.zeros(1)
    got = blocks.token_counts(n_blocks, seed, minlength=len(lengths) + 1)
    assert got.tolist() == np.pad(want, (0, len(got) - len(want))).tolist()


def _mixed(lengths: list[int], vocab: int, seed: int) -> TokenizedCorpus:
    """Documents of random tokens from ``vocab`` ids (the doc-number corpus has one id a doc)."""
    c = _corpus(lengths)
    c.ids = np.random.default_rng(seed).integers(0, vocab, size=c.n_tokens).astype(np.int32)
    return c


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(4, 24), st.integers(2, 60), st.integers(0, 3))
def test_coverage_order_shows_the_most_unshown_ids_first(lengths, seq_len, vocab, seed):
    corpus = _mixed(lengths, vocab, seed)
    if corpus.n_tokens < seq_len:
        return
    cover = np.arange(vocab // 2, vocab)
    blocks = PackedBlocks(corpus, seq_len, cover=cover)
    order = blocks.permutation(0, seed)
    plain = PackedBlocks(corpus, seq_len)
    assert sorted(order.tolist()) == list(range(len(blocks)))  # still every block once an epoch
    sets = [set(corpus.ids[b:e].tolist()) & set(cover.tolist()) for b, e in blocks.spans]
    shown: set[int] = set()
    for k, b in enumerate(order):
        gains = [len(sets[x] - shown) for x in order[k:]]
        assert gains[0] == max(gains)  # greedy: no block left would show more unshown ids
        if gains[0] == 0:
            # the rest add nothing: they keep the plain permutation's order
            rest = order[k:].tolist()
            assert rest == [x for x in plain.permutation(0, seed).tolist() if x in set(rest)]
            break
        shown |= sets[b]
    assert shown == set().union(*sets)
    # later epochs, and the counts a run reports, follow the blocks served
    assert blocks.permutation(1, seed).tolist() == plain.permutation(1, seed).tolist()
    n = len(blocks) + 3
    served = blocks.batch(blocks.block_indices(0, n, seed))["labels"]
    want = np.bincount(served[served != -100].numpy(), minlength=vocab)
    assert blocks.token_counts(n, seed, minlength=vocab).tolist() == want.tolist()


def test_coverage_order_beats_a_random_one_on_a_skewed_corpus():
    # Zipf-like ids: a random order shows the frequent ids again and again
    rng = np.random.default_rng(0)
    corpus = _corpus([20] * 200)
    corpus.ids = np.minimum(rng.zipf(1.3, size=corpus.n_tokens), 5000).astype(np.int32)
    cover = np.arange(1, 5001)
    random_order = PackedBlocks(corpus, 20).block_indices(0, 20, seed=0)
    greedy = PackedBlocks(corpus, 20, cover=cover).block_indices(0, 20, seed=0)

    def distinct(blocks, idx):
        return len(np.unique(np.concatenate([corpus.ids[blocks.spans[i][0]:blocks.spans[i][1]] for i in idx])))

    b = PackedBlocks(corpus, 20)
    assert distinct(b, greedy) > 1.1 * distinct(b, random_order)


def test_tokenized_once_and_cached(tmp_path, monkeypatch):
    import factories as fx

    monkeypatch.setenv("VOCADAPT_CACHE", str(tmp_path / "cache"))
    tok = fx.byte_level_bpe(fx.corpus("ru", 100, seed=2), vocab_size=300)
    text = tmp_path / "c.txt"
    text.write_text("Первый документ.\n%\nВторой документ, длиннее.\n", encoding="utf-8")
    first = tokenize_corpus(tok, [text], progress=False)
    assert first.n_docs == 2
    assert first.ids[first.starts[0]] == tok.convert_tokens_to_ids("<|im_start|>")  # start token in front (BOS)
    cached = list((tmp_path / "cache" / "tokenized").iterdir())
    assert len(cached) == 1
    again = tokenize_corpus(tok, [text], progress=False)
    assert again.key == first.key and np.array_equal(again.ids, first.ids)
    text.write_text("Другой текст.\n", encoding="utf-8")
    assert tokenize_corpus(tok, [text], progress=False).key != first.key
    with pytest.raises(Exception, match="fewer than one block"):
        PackedBlocks(tokenize_corpus(tok, [text], progress=False), 512)
