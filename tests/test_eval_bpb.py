"""bits_per_byte: exact math against hand computations on a tiny random model."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _evaltiny import make_model, make_tokenizer

from vocadapt.errors import VocadaptError
from vocadapt.evaluate.bpb import bits_per_byte, encode_document, length_batches, rolling_windows
from vocadapt.model import load_model

TEXT = "Умный в гору не пойдёт, умный гору обойдёт. The quick brown fox jumps over the lazy dog."


def _hand_bits(model, ids: list[int], contexts: list[int] | None = None) -> float:
    """Sum of -log2 p(ids[t] | ids[start_t:t]) computed one target at a time."""
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            start = contexts[t] if contexts else 0
            logits = model(input_ids=torch.tensor([ids[start:t]])).logits[0, -1].double()
            total -= float(torch.log_softmax(logits, -1)[ids[t]]) / math.log(2)
    return total


def test_bpb_matches_hand_computation(tiny):
    model, tok = tiny
    ids, has_start = encode_document(tok, TEXT)
    assert has_start and ids[0] == tok.bos_token_id
    res = bits_per_byte(model, tok, [TEXT])
    expected = _hand_bits(model, ids)
    assert res.nll_bits == pytest.approx(expected, rel=1e-5)
    assert res.n_bytes == len(TEXT.encode("utf-8"))
    assert res.bits_per_byte == pytest.approx(expected / len(TEXT.encode("utf-8")), rel=1e-5)
    assert res.n_tokens == len(ids) - 1
    assert res.n_chars == len(TEXT)
    assert res.chars_per_token == pytest.approx(len(TEXT) / (len(ids) - 1))
    assert set(res.as_dict()) >= {"bits_per_byte", "nll_bits", "n_bytes", "n_chars", "n_tokens", "chars_per_token"}


def test_sliding_window_equals_full_context_when_text_fits(tiny):
    model, tok = tiny
    full = bits_per_byte(model, tok, [TEXT], max_length=512)
    other = bits_per_byte(model, tok, [TEXT], max_length=400, stride=7)
    assert len(encode_document(tok, TEXT)[0]) < 400
    assert other.nll_bits == pytest.approx(full.nll_bits, rel=1e-6)


def test_chunked_equals_direct_computation(tiny):
    model, tok = tiny
    ids, _ = encode_document(tok, TEXT)
    max_length, stride = 8, 3
    windows = rolling_windows(len(ids), max_length, stride)
    assert len(windows) > 3  # the text really is chunked
    contexts = [0] * len(ids)
    for begin, end, k in windows:
        for t in range(end - k, end):
            contexts[t] = begin
    res = bits_per_byte(model, tok, [TEXT], max_length=max_length, stride=stride, batch_size=3)
    assert res.nll_bits == pytest.approx(_hand_bits(model, ids, contexts), rel=1e-5)
    # A truncated context scores worse or differently than the full one: the windows matter.
    assert res.nll_bits != pytest.approx(_hand_bits(model, ids), rel=1e-6)


def test_batching_and_document_order_do_not_change_the_result(tiny):
    model, tok = tiny
    docs = [TEXT, "Кто рано встаёт, тому бог подаёт.", "A bird in the hand.", TEXT[:20]]
    one = bits_per_byte(model, tok, docs, batch_size=1)
    many = bits_per_byte(model, tok, docs[::-1], batch_size=8)
    assert many.nll_bits == pytest.approx(one.nll_bits, rel=1e-5)
    assert many.n_bytes == one.n_bytes and many.n_tokens == one.n_tokens and one.n_docs == 4
    # Documents are scored independently: the total is the sum of single-document totals.
    singles = sum(bits_per_byte(model, tok, [d]).nll_bits for d in docs)
    assert one.nll_bits == pytest.approx(singles, rel=1e-5)


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 1024), min_size=1, max_size=60), batch_size=st.integers(1, 16))
def test_length_batches_pad_under_half_and_keep_every_window_once(lengths, batch_size):
    lengths = sorted(lengths, reverse=True)
    batches = length_batches(lengths, batch_size)
    assert [j for b in batches for j in b] == list(range(len(lengths)))  # each window once, in order
    for b in batches:
        assert 1 <= len(b) <= batch_size
        # every row at least half the batch's width: padding is under half of any batch
        assert all(2 * lengths[j] >= lengths[b[0]] for j in b)


def test_length_batches_keep_short_documents_out_of_long_windows():
    # The demo's man pages: two long documents in 1,024-token windows, six short documents.
    lengths = [1024, 1024, 919, 228, 61, 51, 37, 24, 17, 12]
    batches = length_batches(lengths, 8)
    padded = sum(len(b) * lengths[b[0]] for b in batches)
    assert padded < 1.2 * sum(lengths)  # fixed batches of 8 would compute 8,221 positions for 3,397
    assert batches[0] == [0, 1, 2]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 300), max_length=st.integers(2, 40), data=st.data())
def test_rolling_windows_score_every_target_once(n, max_length, data):
    stride = data.draw(st.integers(1, max_length - 1))
    scored = []
    for begin, end, k in rolling_windows(n, max_length, stride):
        assert 0 <= begin < end <= n and end - begin <= max_length and 1 <= k <= end - begin - 1
        scored.extend(range(end - k, end))
    assert scored == list(range(1, n))


def test_without_bos_eos_is_the_start_token():
    tok = make_tokenizer(bos=False)
    model = make_model(len(tok))
    ids, has_start = encode_document(tok, TEXT)
    assert has_start and ids[0] == tok.eos_token_id
    assert bits_per_byte(model, tok, [TEXT]).nll_bits == pytest.approx(_hand_bits(model, ids), rel=1e-5)


def test_empty_text_is_an_error(tiny):
    model, tok = tiny
    with pytest.raises(VocadaptError, match="empty"):
        bits_per_byte(model, tok, ["", ""])


def test_bad_window_settings(tiny):
    model, tok = tiny
    with pytest.raises(VocadaptError, match="stride"):
        bits_per_byte(model, tok, [TEXT], max_length=8, stride=8)


def test_load_model_errors(tmp_path, tiny_dir):
    with pytest.raises(VocadaptError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VocadaptError, match="config.json"):
        load_model(tmp_path / "empty")
    # A bare transformer body with no LM head.
    from transformers import LlamaModel

    body = LlamaModel(make_model(300).config)
    body.save_pretrained(tmp_path / "body")
    make_tokenizer().save_pretrained(tmp_path / "body")
    with pytest.raises(VocadaptError, match="no LM head"):
        load_model(tmp_path / "body")
    with pytest.raises(VocadaptError, match="dtype"):
        load_model(tiny_dir, dtype="float33")
