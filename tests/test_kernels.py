"""The fast paths of init agree with their plain definitions."""

from __future__ import annotations

import os

import pytest
import torch

from vocadapt.init.context import finite_rows, weighted_row_sums
from vocadapt.io.safetensors_stream import read_header, read_tensor, write_file
from vocadapt.tokenizer.canonical import CanonicalToken, Family, bytes_to_unicode, canonical_token


def _index_add_reference(source, rows, ids, weights, n):
    out = torch.zeros(n, source.shape[1])
    out.index_add_(0, rows, source[ids].float() * weights[:, None])
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weighted_row_sums_matches_index_add(dtype):
    g = torch.Generator().manual_seed(0)
    source = torch.randn(50, 12, generator=g).to(dtype)
    # unsorted rows, repeated ids, an output row with no entry (4), a zero weight
    rows = torch.tensor([3, 0, 3, 5, 0, 1, 1, 3])
    ids = torch.tensor([7, 2, 7, 49, 0, 2, 3, 11])
    weights = torch.tensor([0.5, 0.25, 0.25, 2.0, -1.0, 0.0, 1.0, 0.125])
    out = weighted_row_sums(source, rows, ids, weights, 6)
    # equal to float32 rounding: embedding_bag fuses the multiply-add (one rounding, not two)
    assert torch.allclose(out, _index_add_reference(source, rows, ids, weights, 6), rtol=1e-6, atol=1e-7)
    assert torch.equal(out[4], torch.zeros(12))


def test_weighted_row_sums_column_blocks(monkeypatch):
    """More distinct rows than one block of converted values holds: the column blocks tile the
    output exactly as one block does."""
    g = torch.Generator().manual_seed(1)
    source = torch.randn(300, 40, generator=g).bfloat16()
    rows = torch.randint(0, 90, (500,), generator=g)
    ids = torch.randint(0, 300, (500,), generator=g)
    weights = torch.rand(500, generator=g)
    whole = weighted_row_sums(source, rows, ids, weights, 90)
    monkeypatch.setattr("vocadapt.init.context.BAG_ELEMENTS", 7 * 300)  # ~7 columns per block
    assert torch.equal(weighted_row_sums(source, rows, ids, weights, 90), whole)
    assert torch.allclose(whole, _index_add_reference(source, rows, ids, weights, 90), rtol=1e-6, atol=1e-6)


def test_weighted_row_sums_empty():
    source = torch.randn(4, 3)
    none = torch.zeros(0, dtype=torch.long)
    assert torch.equal(weighted_row_sums(source, none, none, torch.zeros(0), 2), torch.zeros(2, 3))


def test_finite_rows():
    x = torch.ones(6, 4)
    x[1, 2] = float("nan")
    x[3, 0] = float("inf")
    x[4, :2] = torch.tensor([float("inf"), float("-inf")])  # sums to NaN: still caught
    x[5] = 3e38  # finite values whose float32 sum overflows: must not be reported
    assert finite_rows(x).tolist() == [True, False, True, False, False, True]
    assert finite_rows(x.bfloat16()).tolist() == [True, False, True, False, False, True]


def test_write_file_copies_ranges(tmp_path, monkeypatch):
    a, b = torch.arange(1000, dtype=torch.float32).reshape(100, 10), torch.ones(3, dtype=torch.bfloat16)
    write_file(tmp_path / "src.safetensors", [("a", a), ("b", b)])
    infos, _ = read_header(tmp_path / "src.safetensors")
    write_file(tmp_path / "kernel.safetensors", [("b", infos["b"]), ("a", infos["a"]), ("c", a * 2)])

    def unsupported(*_a, **_k):
        raise OSError("not supported")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    write_file(tmp_path / "python.safetensors", [("b", infos["b"]), ("a", infos["a"]), ("c", a * 2)])
    assert (tmp_path / "kernel.safetensors").read_bytes() == (tmp_path / "python.safetensors").read_bytes()
    out, _ = read_header(tmp_path / "kernel.safetensors")
    assert torch.equal(read_tensor(out["a"]), a) and torch.equal(read_tensor(out["b"]), b)
    assert torch.equal(read_tensor(out["c"]), a * 2)


def test_byte_level_canonical_token_matches_definition():
    fam = Family("byte_level", "BPE", False, "", False)
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    for piece in ["Ġпри", "hello", "<|reserved 1|>", "a b", "пр", "", "\x00x", "Ġ", "ĠĠ", "ÿĀ", "\u00ad"]:
        if all(c in u2b for c in piece):
            raw = bytes(u2b[c] for c in piece)
        else:
            raw = piece.encode("utf-8")
        expected = CanonicalToken(raw[1:], True) if raw.startswith(b" ") else CanonicalToken(raw, False)
        assert canonical_token(piece, fam) == expected, piece
