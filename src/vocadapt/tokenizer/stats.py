"""``stats``: how well tokenizers compress held-out text, one row per tokenizer.

Columns (all measured without special tokens):

* ``chars_per_token``, ``bytes_per_token`` (UTF-8 bytes): higher is better compression.
* ``tokens_per_word`` (fertility): tokens per whitespace-separated word.
* ``byte_token_share``: share of tokens that are bytes rather than text: ``<0xNN>`` fallback
  pieces, or in byte-level BPE a token that is not valid UTF-8 on its own (a character split
  across tokens). ``unk_share``: share of unknown-token ids.
* ``unreachable_added``: for a tokenizer directory made by ``extend``/``optimize`` (it has a
  ``vocab_mapping.json``), how many appended tokens the model never produces when given their
  own text (dead embedding rows; see :func:`vocadapt.tokenizer.continue_bpe.unreachable`).
* ``overlap_with_reference``: share of this tokenizer's vocabulary whose canonical form (decoded
  bytes + word-start flag) also exists in the reference tokenizer's vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vocadapt.corpus import read_texts
from vocadapt.errors import VocadaptError
from vocadapt.tokenizer import build as C
from vocadapt.tokenizer.canonical import CanonicalToken, byte_token_ids, canonical_vocab


def canonical_set(tj: dict) -> set[CanonicalToken]:
    """The non-special, non-empty canonical tokens of a tokenizer (for vocabulary overlap)."""
    return {c for c in canonical_vocab(tj) if c is not None and c.text}


def _load_json(path: str | Path) -> tuple[str, dict]:
    src = C.load_source(path)
    return str(path), src.json


def unreachable_added(path: str | Path, tj: dict) -> int | None:
    """Appended tokens (``new_to_old`` None in ``vocab_mapping.json``) that are unreachable, or
    None where the directory has no mapping (not an extension)."""
    from vocadapt.tokenizer.continue_bpe import unreachable

    mapping = Path(path) / C.VOCAB_MAPPING_FILE
    if not mapping.is_file():
        return None
    new_to_old = json.loads(mapping.read_text(encoding="utf-8"))["new_to_old"]
    tok = C.build_tokenizer(tj)
    added = [tok.id_to_token(i) for i, old in enumerate(new_to_old) if old is None]
    return len(unreachable(tj, [t for t in added if t is not None]))


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
        tok = C.build_tokenizer(tj)
        encs = tok.encode_batch(docs, add_special_tokens=False)
        n_tokens = sum(len(e.ids) for e in encs)
        byte_ids = byte_token_ids(tj)
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
        unreachable = unreachable_added(path, tj)
        if unreachable is not None:
            row["unreachable_added"] = unreachable
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
    for extra in ("unreachable_added", "overlap_with_reference"):
        if any(extra in r for r in rows):
            cols.append(extra)
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
