"""``stats``: how well tokenizers compress held-out text, one row per tokenizer.

Columns (all measured without special tokens):

* ``chars_per_token``, ``bytes_per_token`` (UTF-8 bytes): higher is better compression.
* ``tokens_per_word`` (fertility): tokens per whitespace-separated word.
* ``byte_token_share``: share of tokens that are bytes rather than text: ``<0xNN>`` fallback
  pieces, or in byte-level BPE a token that is not valid UTF-8 on its own (a character split
  across tokens). ``unk_share``: share of unknown-token ids.
* ``overlap_with_reference``: share of this tokenizer's vocabulary whose canonical form (decoded
  bytes + word-start flag) also exists in the reference tokenizer's vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vocadapt.corpus import read_texts
from vocadapt.errors import VocadaptError
from vocadapt.tokenizer import _common as C

# GPT-2's printable-character spelling of bytes, inverted: 'Ġ' -> 0x20, ...
_BYTE_DECODER: dict[str, int] | None = None


def _byte_decoder() -> dict[str, int]:
    global _BYTE_DECODER
    if _BYTE_DECODER is None:
        bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
        cs = bs[:]
        n = 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        _BYTE_DECODER = {chr(c): b for b, c in zip(bs, cs)}
    return _BYTE_DECODER


def _canonical(token: str, family: str, prefix: str) -> tuple[bytes, bool] | None:
    """(decoded bytes, starts a word) of one vocabulary string; None if it has no byte spelling.

    Private stand-in until ``vocadapt.tokenizer.canonical`` lands on main.
    """
    if family == C.BYTELEVEL_BPE:
        dec = _byte_decoder()
        if not all(ch in dec for ch in token):
            return None
        raw = bytes(dec[ch] for ch in token)
        return (raw[1:], True) if raw.startswith(b" ") else (raw, False)
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        return bytes([int(token[3:5], 16)]), False
    if family == C.WORDPIECE:
        if prefix and token.startswith(prefix):
            return token[len(prefix):].encode(), False
        return token.encode(), True
    if token.startswith(C.SP_SPACE):
        return token[1:].replace(C.SP_SPACE, " ").encode(), True
    return token.replace(C.SP_SPACE, " ").encode(), False


def _spelling(tj: dict) -> str:
    """How vocabulary strings spell bytes: byte-level mapping (any model type) or the family's own."""
    if C.has_component(tj, "pre_tokenizer", "ByteLevel") or C.has_component(tj, "decoder", "ByteLevel"):
        return C.BYTELEVEL_BPE
    return C.tokenizer_family(tj)


def canonical_set(tj: dict) -> set[tuple[bytes, bool]]:
    family = _spelling(tj)
    prefix = tj["model"].get("continuing_subword_prefix") or ""
    specials = {t["content"] for t in tj.get("added_tokens", []) if t.get("special")}
    out = set()
    for tok in C.model_vocab(tj):
        if tok in specials:
            continue
        c = _canonical(tok, family, prefix)
        if c is not None and c[0]:
            out.add(c)
    return out


def _is_byte_token(token: str, family: str) -> bool:
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        return True
    if family == C.BYTELEVEL_BPE:
        c = _canonical(token, family, "")
        if c is None:
            return False
        try:
            c[0].decode("utf-8")
        except UnicodeDecodeError:
            return True
    return False


def _load_json(path: str | Path) -> tuple[str, dict]:
    src = C.load_source(path)
    return str(path), src.json


def tokenizer_stats(
    tokenizers: list[str | Path],
    texts: list[str | Path] | None = None,
    reference: str | Path | None = None,
    *,
    documents: list[str] | None = None,
    text_field: str = "text",
) -> list[dict[str, Any]]:
    """One dict of the metrics above per tokenizer directory.

    Measured on the corpus files ``texts`` (read with :func:`vocadapt.corpus.read_texts`) or on
    in-memory ``documents``.
    """
    if not tokenizers:
        raise VocadaptError("give at least one tokenizer")
    if (texts is None) == (documents is None):
        raise VocadaptError("give held-out text either as files (texts) or as documents, not both")
    docs = read_texts(list(texts), text_field=text_field) if texts is not None else list(documents)
    if not docs or not any(d.strip() for d in docs):
        raise VocadaptError("held-out text is empty")
    n_chars = sum(len(d) for d in docs)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    n_words = sum(len(d.split()) for d in docs)
    ref_set = canonical_set(C.load_source(reference).json) if reference else None
    rows = []
    for path in tokenizers:
        name, tj = _load_json(path)
        family = C.tokenizer_family(tj)
        spelling = _spelling(tj)
        tok = C.build_tokenizer(tj)
        encs = tok.encode_batch(docs, add_special_tokens=False)
        n_tokens = sum(len(e.ids) for e in encs)
        id_to_tok = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
        byte_ids = {i for i, t in id_to_tok.items() if _is_byte_token(t, spelling)}
        unk = tj["model"].get("unk_token")
        unk_ids = {tok.token_to_id(unk)} if isinstance(unk, str) and tok.token_to_id(unk) is not None else set()
        if tj["model"].get("type") == "Unigram" and tj["model"].get("unk_id") is not None:
            unk_ids.add(tj["model"]["unk_id"])
        n_byte = sum(1 for e in encs for i in e.ids if i in byte_ids)
        n_unk = sum(1 for e in encs for i in e.ids if i in unk_ids)
        row: dict[str, Any] = {
            "tokenizer": name,
            "family": family,
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "tokens": n_tokens,
            "chars_per_token": n_chars / max(n_tokens, 1),
            "bytes_per_token": n_bytes / max(n_tokens, 1),
            "tokens_per_word": n_tokens / max(n_words, 1),
            "byte_token_share": n_byte / max(n_tokens, 1),
            "unk_share": n_unk / max(n_tokens, 1),
        }
        if ref_set is not None:
            own = canonical_set(tj)
            row["overlap_with_reference"] = len(own & ref_set) / max(len(own), 1)
        rows.append(row)
    return rows


def stats_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, ensure_ascii=False)


def stats_table(rows: list[dict[str, Any]]):
    """A rich Table of :func:`tokenizer_stats` rows."""
    from rich.table import Table

    table = Table(title="tokenizer stats")
    cols = ["tokenizer", "vocab_size", "chars_per_token", "bytes_per_token", "tokens_per_word", "byte_token_share", "unk_share"]
    if any("overlap_with_reference" in r for r in rows):
        cols.append("overlap_with_reference")
    for c in cols:
        table.add_column(c.replace("_", " "), justify="left" if c == "tokenizer" else "right")
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            if c == "tokenizer":
                v = Path(v).name or str(v)  # a directory name reads better than a long path
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        table.add_row(*cells)
    return table
