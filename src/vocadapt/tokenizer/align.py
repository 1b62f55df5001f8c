"""Vocabulary alignment between a source model's tokenizer and a target tokenizer.

Three things every init method needs, computed once here:

* **copy map** — for each target id, the source id whose rows it copies exactly, or -1. Special
  tokens match by content first, then by role (bos/eos/pad/unk/...); ordinary tokens by their
  :class:`~vocadapt.tokenizer.canonical.CanonicalToken`; an explicit ``vocab_mapping.json``
  written by ``vocadapt tokenizer extend/optimize`` overrides both.
* **decomposition** — for each new token, the source ids its text encodes to, computed on first
  use (FOCUS, WECHSEL and OFA never read them unless a fallback does; at 128k target tokens
  re-encoding every new token is seconds of work they would pay for nothing). The token is
  decoded to text and re-encoded with the *source* tokenizer stripped of everything that would
  add pieces the token does not contain: no special tokens, no prepended ``▁``, no ByteLevel
  prefix space. (Re-encoding the raw vocabulary string instead is a known bug of several
  reference codes: ``Ġ`` or ``▁`` then reach the source tokenizer as literal characters.)
  Bytes that are not valid UTF-8 (half a character, from a byte-level target) decompose into the
  source's byte tokens when it has them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vocadapt.tokenizer.canonical import (
    CanonicalToken,
    Family,
    bpe_merges,
    canonical_vocab,
    detect_family,
    render,
    special_ids,
    tokenizer_json,
)

SPECIAL_ROLES = ("bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token")
MAPPING_FILE = "vocab_mapping.json"


@dataclass
class Alignment:
    """How a target vocabulary relates to a source vocabulary.

    ``copy_from[t]`` is the source id target id ``t`` copies, or -1 for a new token;
    ``decompositions[t]`` lists source ids for new tokens (empty: no signal, use the fallback),
    computed from ``decompose_with`` (the source tokenizer) the first time it is read, or
    empty when aligned with ``decompose=False``;
    ``how[t]`` says why a row is copied ("special", "role", "canonical", "mapping").
    """

    source_size: int
    target_size: int
    copy_from: np.ndarray  # (target_size,) int64
    how: list[str]
    target_tokens: list[CanonicalToken | None] = field(default_factory=list)
    target_specials: set[int] = field(default_factory=set)
    decompose_with: Any = field(default=None, repr=False)  # source tokenizer; None: no decompositions
    _decompositions: dict[int, list[int]] | None = field(default=None, repr=False)

    @property
    def decompositions(self) -> dict[int, list[int]]:
        if self._decompositions is None:
            self._decompositions = {}
            if self.decompose_with is not None:
                new = [int(t) for t in self.new_ids if self.target_tokens[t] is not None]
                encoder = RawEncoder(self.decompose_with)
                for tid, ids in zip(new, encoder.encode_many([self.target_tokens[t] for t in new])):
                    self._decompositions[tid] = ids
        return self._decompositions

    @property
    def decomposed(self) -> bool:
        """Whether the decompositions have been computed (read) yet."""
        return self._decompositions is not None

    @property
    def new_ids(self) -> np.ndarray:
        return np.flatnonzero(self.copy_from < 0)

    @property
    def copied_ids(self) -> np.ndarray:
        return np.flatnonzero(self.copy_from >= 0)

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {"target_size": self.target_size, "copied": int((self.copy_from >= 0).sum())}
        for h in set(self.how) - {""}:
            counts[f"copied_by_{h}"] = self.how.count(h)
        counts["new"] = int((self.copy_from < 0).sum())
        if self.decomposed or self.decompose_with is None:  # never computed only to be counted
            counts["new_with_decomposition"] = sum(1 for t in self.new_ids if self.decompositions.get(int(t)))
        return counts


# ------------------------------------------------------------------------------------------------
# Raw re-encoding with the source tokenizer
# ------------------------------------------------------------------------------------------------


def _strip_prefixing(node: Any) -> Any:
    """Copy of a normalizer/pre-tokenizer spec with every 'add a leading space' step disabled."""
    if isinstance(node, list):
        return [_strip_prefixing(n) for n in node if not (isinstance(n, dict) and n.get("type") == "Prepend")]
    if not isinstance(node, dict):
        return node
    node = {k: _strip_prefixing(v) for k, v in node.items()}
    if node.get("type") == "ByteLevel":
        node["add_prefix_space"] = False
    if node.get("type") == "Metaspace":
        node["prepend_scheme"] = "never"
        node.pop("add_prefix_space", None)
    if node.get("type") == "Prepend":  # a lone Prepend normalizer
        return None
    return node


class RawEncoder:
    """Encode text with a source tokenizer exactly as written: no specials, no added prefix space."""

    def __init__(self, tokenizer: Any):
        from tokenizers import Tokenizer

        spec = dict(tokenizer_json(tokenizer))  # top-level copy: the parsed JSON is shared
        spec["post_processor"] = None
        spec["normalizer"] = _strip_prefixing(spec.get("normalizer"))
        spec["pre_tokenizer"] = _strip_prefixing(spec.get("pre_tokenizer"))
        spec["truncation"] = None
        spec["padding"] = None
        self.backend = Tokenizer.from_str(json.dumps(spec))
        self.family: Family = detect_family(tokenizer)
        vocab = tokenizer.get_vocab()
        self.vocab = vocab
        self.unk_id = getattr(tokenizer, "unk_token_id", None)
        self.specials = special_ids(tokenizer)
        # Single-byte tokens of the source, for decomposing bytes that are not valid UTF-8.
        self.byte_ids: dict[int, int] = {}
        fam = self.family
        for b in range(256):
            if fam.kind == "byte_level":
                piece = render(CanonicalToken(bytes([b]), False), fam)
            elif fam.byte_fallback:
                piece = f"<0x{b:02X}>"
            else:
                continue
            if piece in vocab:
                self.byte_ids[b] = vocab[piece]

    def encode_many(self, tokens: list[CanonicalToken]) -> list[list[int]]:
        """Source ids for each canonical token; [] where the source cannot spell it."""
        out: list[list[int] | None] = [None] * len(tokens)
        texts, where = [], []
        for i, tok in enumerate(tokens):
            try:
                text = tok.surface().decode("utf-8")
            except UnicodeDecodeError:
                out[i] = self._bytes(tok.surface())
                continue
            if self.family.kind == "wordpiece" and not tok.word_start:
                out[i] = self._wordpiece_continuation(tok.text.decode("utf-8"))
                continue
            texts.append(text)
            where.append(i)
        for i, enc in zip(where, self.backend.encode_batch(texts, add_special_tokens=False) if texts else []):
            out[i] = [t for t in enc.ids if t != self.unk_id and t not in self.specials]
        return [o or [] for o in out]

    def _bytes(self, raw: bytes) -> list[int]:
        if self.family.kind == "byte_level":
            # Let the BPE model merge the bytes where it can (fewer, more meaningful pieces).
            return [t.id for t in self.backend.model.tokenize(render(CanonicalToken(raw, False), self.family))]
        if all(b in self.byte_ids for b in raw):
            return [self.byte_ids[b] for b in raw]
        return []

    def _wordpiece_continuation(self, text: str) -> list[int]:
        """Greedy longest-match-first with the continuation prefix: what WordPiece itself does."""
        prefix = self.family.continuing_prefix
        if self.family.lowercase:
            text = text.lower()
        ids, start = [], 0
        while start < len(text):
            end = len(text)
            while end > start and f"{prefix}{text[start:end]}" not in self.vocab:
                end -= 1
            if end == start:
                return []
            ids.append(self.vocab[f"{prefix}{text[start:end]}"])
            start = end
        return ids


def leave_one_out_pieces(tokenizer: Any, ids: Sequence[int], tokens: Sequence[CanonicalToken | None]) -> list[list[int]]:
    """Ids of ``tokenizer`` that spell each of its own tokens ``ids`` *without* the token itself.

    A token re-encodes to itself, so its FVT mean would be a perfect (leaked) feature when a
    method learns from source tokens and a different one when it predicts new tokens. We use
    the BPE merge that produced the token (its two parents), else its text (``tokens[i]``, the
    canonical token) split in the middle and each half re-encoded: a multi-piece mean like the
    ones new tokens get. [] when neither exists. Used by ``regression --base mean`` and the
    hypernetwork's ``--base mean``.
    """
    model = tokenizer_json(tokenizer).get("model", {})
    parents: dict[int, tuple[int, int]] = {}
    if model.get("type") == "BPE":
        vocab = model.get("vocab", {})
        for left, right in bpe_merges(model):
            merged = vocab.get(left + right)
            if merged is not None and merged not in parents and left in vocab and right in vocab:
                parents[merged] = (vocab[left], vocab[right])
    out: list[list[int]] = [[] for _ in ids]
    halves, where = [], []
    for i, (sid, tok) in enumerate(zip(ids, tokens)):
        if int(sid) in parents:
            out[i] = list(parents[int(sid)])
            continue
        try:
            text = tok.text.decode("utf-8") if tok is not None else ""
        except UnicodeDecodeError:
            continue
        if len(text) >= 2:
            k = len(text) // 2
            halves += [CanonicalToken(text[:k].encode(), tok.word_start), CanonicalToken(text[k:].encode(), False)]
            where.append(i)
    if halves:
        enc = RawEncoder(tokenizer).encode_many(halves)
        for j, i in enumerate(where):
            left, right = enc[2 * j], enc[2 * j + 1]
            out[i] = left + right if left and right else []
    return out


# ------------------------------------------------------------------------------------------------
# Alignment
# ------------------------------------------------------------------------------------------------


def _role_ids(tokenizer: Any) -> dict[str, int]:
    out = {}
    for role in SPECIAL_ROLES:
        tid = getattr(tokenizer, f"{role}_id", None)
        if isinstance(tid, int):
            out[role] = tid
    return out


def read_mapping(target_dir: str | Path | None) -> dict[int, int] | None:
    """``vocab_mapping.json`` ({new_id: old_id | null}) beside a tokenizer, if there is one."""
    if target_dir is None:
        return None
    path = Path(target_dir) / MAPPING_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    if "new_to_old" in raw:  # written by `vocadapt tokenizer extend/optimize`: a list indexed by new id
        return {new: int(old) for new, old in enumerate(raw["new_to_old"]) if old is not None}
    raw = raw.get("mapping", raw)
    return {int(k): int(v) for k, v in raw.items() if v is not None}


def check_mapping(mapping: dict[int, int], source: Any, target: Any, where: str | Path = MAPPING_FILE) -> None:
    """Refuse a ``vocab_mapping.json`` that belongs to another tokenizer pair: every mapped id
    must exist on both sides and name the same token string (what extend/optimize write)."""
    from vocadapt.errors import VocadaptError

    src = {i: t for t, i in source.get_vocab().items()}
    tgt = {i: t for t, i in target.get_vocab().items()}
    for new, old in sorted(mapping.items()):
        if new not in tgt or old not in src or tgt[new] != src[old]:
            found = f"{tgt.get(new)!r} vs {src.get(old)!r}"
            raise VocadaptError(
                f"{where} does not match these tokenizers: target id {new} -> source id {old} ({found}); "
                "it was written for another source or target: rebuild the tokenizer or delete the file"
            )


def align_vocabularies(
    source: Any,
    target: Any,
    *,
    mapping: dict[int, int] | None = None,
    decompose: bool = True,
) -> Alignment:
    """Align two HF fast tokenizers; see :class:`Alignment`."""
    src_tokens = canonical_vocab(source)
    tgt_tokens = canonical_vocab(target)
    n_src, n_tgt = len(src_tokens), len(tgt_tokens)  # vocab_size of each, without another get_vocab
    copy_from = np.full(n_tgt, -1, dtype=np.int64)
    how = [""] * n_tgt

    # Ordinary tokens by canonical form. Base-vocabulary ids win over added ones.
    by_canon: dict[CanonicalToken, int] = {}
    for sid, tok in enumerate(src_tokens):
        if tok is not None and tok not in by_canon:
            by_canon[tok] = sid
    for tid, tok in enumerate(tgt_tokens):
        if tok is not None and tok in by_canon:
            copy_from[tid], how[tid] = by_canon[tok], "canonical"

    # Special tokens: same content first ("<|im_start|>" is the same token in both), then role.
    src_vocab = source.get_vocab()
    tgt_specials = special_ids(target)
    src_specials = special_ids(source)
    for tid in tgt_specials:
        content = target.convert_ids_to_tokens(tid) if tid < n_tgt else None
        sid = src_vocab.get(content) if content is not None else None
        if sid is not None and sid in src_specials:
            copy_from[tid], how[tid] = sid, "special"
    src_roles = _role_ids(source)
    for role, tid in _role_ids(target).items():
        if tid < n_tgt and copy_from[tid] < 0 and role in src_roles:
            copy_from[tid], how[tid] = src_roles[role], "role"

    if mapping:
        for tid, sid in mapping.items():
            if 0 <= tid < n_tgt and 0 <= sid < n_src:
                copy_from[tid], how[tid] = sid, "mapping"

    return Alignment(
        n_src, n_tgt, copy_from, how, target_tokens=tgt_tokens, target_specials=tgt_specials,
        decompose_with=source if decompose else None,
    )
