"""Canonical token strings: compare tokens of different tokenizer families by what they mean.

Byte-level BPE (GPT-2, Llama-3, Qwen) spells " привет" as ``Ġ`` plus bytes mapped to printable
characters; SentencePiece (Llama-2, Mistral, Gemma) as ``▁привет`` with ``<0xNN>`` byte-fallback
pieces; WordPiece (BERT) as ``привет`` for a word start and ``##вет`` for a continuation. Matching
raw vocabulary strings across families silently finds almost no overlap (or a wrong one), so
every method in vocadapt compares :class:`CanonicalToken` values instead: the UTF-8 *bytes* the
token stands for (bytes, because a byte-level token can be half a character) and whether it
starts a word.

This is the one place that knows the families; everything else asks :func:`canonical_vocab`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
SPIECE_SPACE = "\u2581"  # ▁


@dataclass(frozen=True)
class CanonicalToken:
    """What a token decodes to: ``text`` (UTF-8 bytes, word marker removed) and ``word_start``."""

    text: bytes
    word_start: bool

    def surface(self) -> bytes:
        """The bytes this token contributes to decoded text (a leading space for word starts)."""
        return (b" " if self.word_start else b"") + self.text

    def __repr__(self) -> str:  # readable in test failures: ('▁' + 'при', ...)
        return f"Tok({'▁' if self.word_start else ''}{self.text.decode('utf-8', 'backslashreplace')})"


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (space -> 'Ġ', ...)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


# str.translate table: each byte-level character to the Latin-1 character of its byte, and every
# code point below 256 that is *not* a byte-level character to one that Latin-1 cannot encode.
_BYTE_LEVEL_TO_LATIN1 = {cp: "\uffff" for cp in range(256)}
_BYTE_LEVEL_TO_LATIN1.update({ord(c): chr(b) for b, c in bytes_to_unicode().items()})


@dataclass(frozen=True)
class Family:
    """How a tokenizer spells tokens, read off its ``tokenizer.json``.

    ``kind`` is one of ``byte_level`` (GPT-2 style), ``metaspace`` (SentencePiece style, ``▁``),
    ``wordpiece`` (continuation prefix such as ``##``) or ``plain`` (no word marker known).
    """

    kind: str
    model: str  # BPE, Unigram, WordPiece, WordLevel
    byte_fallback: bool
    continuing_prefix: str  # "##" for WordPiece; "" otherwise
    lowercase: bool


def components(node: Any):
    """Yield every dict in a (nested) normalizer / pre-tokenizer / decoder / post-processor spec."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from components(v)
    elif isinstance(node, list):
        for v in node:
            yield from components(v)


def tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    """The ``tokenizer.json`` of a fast tokenizer (HF wrapper, ``tokenizers.Tokenizer``, or the dict)."""
    if isinstance(tokenizer, dict):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    return _parse(backend.to_str())


@lru_cache(maxsize=8)
def _parse(text: str) -> dict[str, Any]:
    """Parsed ``tokenizer.json``, cached by content: alignment reads the same 3-10 MB JSON a
    dozen times. Callers must not mutate the result (copy the top level, as RawEncoder does)."""
    return json.loads(text)


def get_vocab(tokenizer: Any) -> dict[str, int]:
    """{piece: id} including added tokens, for a tokenizer object or a ``tokenizer.json`` dict."""
    if not isinstance(tokenizer, dict):
        return tokenizer.get_vocab()
    vocab = model_vocab(tokenizer)
    vocab.update({t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens", [])})
    return vocab


def model_vocab(spec: dict[str, Any]) -> dict[str, int]:
    """{piece: id} of the model section of a ``tokenizer.json`` dict (added tokens not included)."""
    pieces = spec["model"].get("vocab") or {}
    if isinstance(pieces, list):  # Unigram: [[piece, score], ...] in id order
        return {piece: i for i, (piece, _score) in enumerate(pieces)}
    return dict(pieces)


def bpe_merges(model: dict) -> list[tuple[str, str]]:
    """BPE merges as pairs, whichever of the two JSON spellings ("a b" or ["a", "b"]) is used."""
    out = []
    for m in model.get("merges", []):
        if isinstance(m, str):
            a, b = m.split(" ", 1)
            out.append((a, b))
        else:
            out.append((m[0], m[1]))
    return out


def detect_family(tokenizer: Any) -> Family:
    spec = tokenizer_json(tokenizer)
    model = spec["model"]
    parts = [spec.get("normalizer"), spec.get("pre_tokenizer"), spec.get("decoder")]
    types = {d.get("type") for d in components(parts)}
    replaces_space = any(
        d.get("type") == "Replace" and SPIECE_SPACE in json.dumps(d, ensure_ascii=False) for d in components(parts)
    )
    lowercase = any(d.get("type") == "Lowercase" or d.get("lowercase") is True for d in components(spec.get("normalizer")))
    prefix = model.get("continuing_subword_prefix") or ""
    if "ByteLevel" in types:
        kind = "byte_level"
    elif "Metaspace" in types or replaces_space:
        kind = "metaspace"
    elif model["type"] == "WordPiece" or prefix:
        kind = "wordpiece"
        prefix = prefix or "##"
    else:
        kind = "plain"
    return Family(kind, model["type"], bool(model.get("byte_fallback", False)), prefix, lowercase)


def canonical_token(piece: str, family: Family) -> CanonicalToken:
    """Canonical form of one (non-special) vocabulary string."""
    if family.kind == "byte_level":
        try:  # byte-level characters -> their bytes, in C; any other character fails the encode
            raw = piece.translate(_BYTE_LEVEL_TO_LATIN1).encode("latin-1")
        except UnicodeEncodeError:  # an added token written in plain text (e.g. "<|reserved|>")
            raw = piece.encode("utf-8")
        if raw.startswith(b" ") and len(raw) >= 1:
            return CanonicalToken(raw[1:], True)
        return CanonicalToken(raw, False)
    if family.kind == "metaspace":
        if family.byte_fallback:
            m = _BYTE_FALLBACK.match(piece)
            if m:
                return CanonicalToken(bytes([int(m.group(1), 16)]), False)
        text = piece.replace(SPIECE_SPACE, " ")
        if text.startswith(" "):
            return CanonicalToken(text[1:].encode("utf-8"), True)
        return CanonicalToken(text.encode("utf-8"), False)
    if family.kind == "wordpiece":
        p = family.continuing_prefix
        if p and piece.startswith(p) and len(piece) > len(p):
            return CanonicalToken(piece[len(p):].encode("utf-8"), False)
        return CanonicalToken(piece.encode("utf-8"), True)
    return CanonicalToken(piece.encode("utf-8"), False)


def check_id_layout(spec: dict[str, Any], what: str = "tokenizer") -> int:
    """Validate how a ``tokenizer.json`` dict lays out its ids; return the first free id.

    Real families differ (SmolLM2 puts specials first inside the BPE vocabulary, Llama-3 and
    Qwen put them after it as added tokens, Gemma has both), but every layout vocadapt can extend
    satisfies: an added token's id is either its own string's id in the model vocabulary or one
    the model does not use, and the ids in use are exactly ``0 .. max``. The ``tokenizers``
    library re-numbers added tokens that are not in the model vocabulary to follow it, so a hole
    or a clash would silently move special tokens.
    """
    from vocadapt.errors import VocadaptError

    model = model_vocab(spec)
    by_id = {i: t for t, i in model.items()}
    if len(by_id) != len(model):
        raise VocadaptError(f"{what}: two vocabulary entries share an id; the tokenizer.json is corrupt")
    for t in spec.get("added_tokens", []):
        tid, content = int(t["id"]), t["content"]
        owner = by_id.get(tid)
        if owner is not None and owner != content:
            raise VocadaptError(
                f"{what}: special/added token {content!r} has id {tid}, which the vocabulary gives to {owner!r}; "
                "special tokens must keep their own ids (fix the tokenizer.json first)"
            )
        if content in model and model[content] != tid:
            raise VocadaptError(f"{what}: added token {content!r} has id {tid} but id {model[content]} in the vocabulary")
        by_id[tid] = content
    n = max(by_id) + 1 if by_id else 0
    if len(by_id) != n:
        holes = sorted(set(range(n)) - set(by_id))
        raise VocadaptError(
            f"{what}: ids {holes[0]}..{holes[-1]} ({len(holes)} ids) belong to no token (added tokens with "
            "non-contiguous ids); vocadapt needs every id below the largest to be a token: renumber the added tokens"
        )
    return n


def vocab_size(tokenizer: Any) -> int:
    """Number of ids the tokenizer can produce: max id + 1 (added tokens included)."""
    return _ids_in(get_vocab(tokenizer))


def _ids_in(vocab: dict[str, int]) -> int:
    return (max(vocab.values()) + 1) if vocab else 0


def special_ids(tokenizer: Any, spec: dict[str, Any] | None = None) -> set[int]:
    """Ids of special tokens (added tokens marked special, and the HF wrapper's named ones).
    ``spec``: the tokenizer's :func:`tokenizer_json` when the caller already has it."""
    ids: set[int] = set()
    spec = tokenizer_json(tokenizer) if spec is None else spec
    for t in spec.get("added_tokens", []):
        if t.get("special"):
            ids.add(int(t["id"]))
    for tid in getattr(tokenizer, "all_special_ids", []) or []:
        if tid is not None:
            ids.add(int(tid))
    return ids


def canonical_vocab(tokenizer: Any) -> list[CanonicalToken | None]:
    """Canonical form of every id (``None`` for special tokens and holes in the id range).

    ``tokenizer`` is an HF fast tokenizer, a ``tokenizers.Tokenizer`` or a ``tokenizer.json`` dict.
    """
    spec = tokenizer_json(tokenizer)  # serialized and parsed once, not per helper
    family = detect_family(spec)
    vocab = get_vocab(tokenizer)
    out: list[CanonicalToken | None] = [None] * _ids_in(vocab)
    specials = special_ids(tokenizer, spec)
    for piece, tid in vocab.items():
        # Byte-fallback pieces are bytes even where a tokenizer marks them special.
        if tid not in specials or (family.byte_fallback and _BYTE_FALLBACK.match(piece)):
            out[tid] = canonical_token(piece, family)
    return out


def render(token: CanonicalToken, family: Family) -> str:
    """Spell a canonical token in ``family``'s vocabulary alphabet (inverse of canonical_token).

    Raises ``ValueError`` when the family cannot spell it (invalid UTF-8 outside byte-level).
    """
    if family.kind == "byte_level":
        b2u = bytes_to_unicode()
        return "".join(b2u[b] for b in token.surface())
    text = token.text.decode("utf-8")  # may raise: partial characters need byte tokens
    if family.kind == "metaspace":
        return (SPIECE_SPACE if token.word_start else "") + text.replace(" ", SPIECE_SPACE)
    if family.kind == "wordpiece":
        return text if token.word_start else family.continuing_prefix + text
    return text



def letter_script(ch: str) -> str:
    """The Unicode script of a letter by its character name ("Cyrillic", "Latin", "Han", ...)."""
    import unicodedata

    word = unicodedata.name(ch, "UNKNOWN").split()[0]
    return {"CJK": "Han"}.get(word, word.title())


def script_chars(script: str):
    """A predicate ``str -> bool``: does the text contain a character of Unicode ``script``
    (e.g. ``"Cyrillic"``, ``"Han"``)? Raises ``ValueError`` for an unknown script name."""
    import regex

    try:
        pattern = regex.compile(rf"\p{{Script={script}}}")
    except regex.error:
        raise ValueError(f"unknown Unicode script {script!r} (examples: Cyrillic, Greek, Arabic, Han)") from None
    return lambda text: pattern.search(text) is not None


def touches_script(token: CanonicalToken, has_script) -> bool:
    """Can ``token`` only occur in text that contains a character of the script ``has_script``
    (see :func:`script_chars`)? True when its bytes hold a complete character of the script, or
    end in the first bytes of one (a byte-level token cut inside a character). Tokens for which
    this holds never fire on text without that script, which is what keeps English untouched.
    """
    raw = token.text
    text = raw.decode("utf-8", "ignore")
    if has_script(text):
        return True
    # A trailing partial character: its lead byte and maybe some continuation bytes.
    for k in range(1, 4):
        if len(raw) < k:
            break
        tail = raw[-k:]
        if tail[0] >= 0xC0:  # a lead byte: complete it with continuation bytes and look
            need = 2 if tail[0] < 0xE0 else 3 if tail[0] < 0xF0 else 4
            if need <= k:
                break
            lo = tail + b"\x80" * (need - k)
            hi = tail + b"\xbf" * (need - k)
            try:
                first, last = ord(lo.decode("utf-8")), ord(hi.decode("utf-8"))
            except UnicodeDecodeError:
                return False
            return any(has_script(chr(c)) for c in range(first, last + 1))
        if tail[0] < 0x80:
            break
    return False


def byte_token_ids(tokenizer: Any) -> set[int]:
    """Ids that stand for raw bytes rather than text: ``<0xNN>`` byte-fallback pieces, and
    byte-level pieces that are not valid UTF-8 on their own (part of a character)."""
    family = detect_family(tokenizer)
    out: set[int] = set()
    for piece, tid in get_vocab(tokenizer).items():
        if family.byte_fallback and _BYTE_FALLBACK.match(piece):
            out.add(tid)
        elif family.kind == "byte_level":
            try:
                canonical_token(piece, family).surface().decode("utf-8")
            except UnicodeDecodeError:
                out.add(tid)
    return out
