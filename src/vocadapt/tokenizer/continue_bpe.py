"""Continued BPE training: new merges learned on top of the source tokenizer's own segmentation.

Why not train a separate BPE on the target corpus and append it? Its merge paths differ from
the source's (Llama-3: ``Вы|шел`` would need ``В+ыш``, ``ыш+ел``), so appended merges either
never fire or, put first, break the source's segmentation and make text *longer* (issue 18;
taidopurason/tokenizer-extension, arXiv 2512.03989, calls the fix "continued BPE training").

Here every corpus word is first segmented by the source tokenizer itself; the trainer then
counts adjacent token pairs (weighted by word frequency) and merges the most frequent pair,
over and over, exactly like a BPE trainer that starts from the source's final tokens instead
of from characters. Each new merge is appended after every existing merge. BPE applies the
lowest-rank applicable merge first, so on any text all old merges fire first (reproducing the
source's segmentation exactly) and each new merge that fires only joins two tokens. Hence for
every text ``len(extended(text)) <= len(source(text))``, by construction:

* ``ignore_merges`` (Llama-3): a word that is a whole token is emitted as one token by the
  source and, the vocabulary only growing, by the extension too.
* byte fallback (Llama-2, Mistral, Gemma): ``<0xNN>`` pieces and ``<unk>`` are never merged
  (they split a word for counting). A character the source spells in fallback bytes (2-4
  tokens) is first added as a token of its own (1 token, shorter; no old merge involves it),
  most frequent first, so the target's words can then be merged.

The pair counts are updated incrementally (only the words that hold the merged pair are
rewritten), as in the ``tokenizers`` library's own trainer, which cannot start from existing
merges; 8,000 merges on 3.5 MB of text take seconds.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from vocadapt.errors import VocadaptError
from vocadapt.tokenizer import build as C
from vocadapt.tokenizer.canonical import SPIECE_SPACE, detect_family, model_vocab

Pair = tuple[str, str]


def source_words(tj: dict, texts: Iterable[str], batch: int = 256) -> Counter:
    """Corpus "words" as the source tokenizer segments them: tuple of token strings -> count.

    A word is one pre-token (``Encoding.word_ids``). SentencePiece-style sources whose
    pre-tokenizer does not split words (Gemma, current Llama-2 conversions) hand the model the
    whole text as one word; there a token starting with '▁' starts a new word, so no learned
    piece spans a word start. Special tokens, byte-fallback pieces and the unknown token end
    a word and are left out: they are never parts of a merge.
    """
    tok = C.build_tokenizer(tj)
    unmergeable = set(C.BYTE_PIECES) | {t["content"] for t in tj.get("added_tokens", [])}
    unk = tj["model"].get("unk_token")
    if isinstance(unk, str):
        unmergeable.add(unk)
    metaspace = detect_family(tj).kind == "metaspace"
    words: Counter = Counter()
    docs: list[str] = []

    def flush() -> None:
        for enc in tok.encode_batch(docs, add_special_tokens=False):
            word: list[str] = []
            last = None
            for t, w in zip(enc.tokens, enc.word_ids):
                if t in unmergeable:
                    if len(word) > 1:
                        words[tuple(word)] += 1
                    word, last = [], None
                    continue
                if word and (w != last or (metaspace and t.startswith(SPIECE_SPACE))):
                    if len(word) > 1:
                        words[tuple(word)] += 1
                    word = []
                word.append(t)
                last = w
            if len(word) > 1:
                words[tuple(word)] += 1
        docs.clear()

    for doc in texts:
        docs.append(doc)
        if len(docs) >= batch:
            flush()
    flush()
    return words


def check_continuable(tj: dict) -> None:
    """Refuse a BPE model whose merges cannot be continued (malformed merges)."""
    model = tj["model"]
    vocab = model_vocab(tj)
    prefix = model.get("continuing_subword_prefix") or ""
    try:
        merges = C.bpe_merges(model)
    except (ValueError, IndexError, TypeError):
        raise VocadaptError("the source's BPE merges are malformed (a merge is not two pieces); cannot continue them") from None
    for a, b in merges:
        if a not in vocab or b not in vocab or C.merge_result(a, b, prefix) not in vocab:
            raise VocadaptError(
                f"the source's BPE merge {a!r} + {b!r} names a piece its vocabulary lacks; its merges cannot be continued"
            )


def learn_merges(
    words: Counter,
    add: int,
    *,
    vocab: set[str],
    old_merges: set[Pair],
    prefix: str = "",
    min_frequency: int = 2,
    wanted: Callable[[str], bool] | None = None,
    forbidden: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[list[Pair], list[str]]:
    """Merge the most frequent adjacent pair of ``words`` until ``add`` new tokens exist.

    Returns (merges in learned order, new token strings in learned order). A merge whose result
    is already a source token (the source reaches it along another path) is kept, since it
    only shortens text, but adds no token. Pairs whose result is not ``wanted`` (script filter)
    or is ``forbidden`` (an added/special token's text) are never merged. Ties go to the
    lexicographically smallest pair, so the result is deterministic.
    """
    seqs = [list(w) for w in words]
    freqs = list(words.values())
    counts: Counter = Counter()
    where: dict[Pair, set[int]] = {}
    for i, (w, f) in enumerate(zip(seqs, freqs)):
        for p in zip(w, w[1:]):
            counts[p] += f
            where.setdefault(p, set()).add(i)
    heap = [(-n, p) for p, n in counts.items()]
    heapq.heapify(heap)
    merges: list[Pair] = []
    new_tokens: list[str] = []
    known = set(vocab)
    banned: set[Pair] = set(old_merges)  # an adjacent old-merge pair cannot occur; guard anyway
    while heap and len(new_tokens) < add:
        neg, pair = heapq.heappop(heap)
        n = counts.get(pair, 0)
        if n != -neg:  # stale entry: its count changed since it was pushed
            if n > 0:
                heapq.heappush(heap, (-n, pair))
            continue
        if n < min_frequency:
            break
        if pair in banned:
            continue
        result = C.merge_result(*pair, prefix)
        if result in forbidden or (wanted is not None and not wanted(result)):
            banned.add(pair)
            continue
        banned.add(pair)  # a pair is merged once
        merges.append(pair)
        if result not in known:
            known.add(result)
            new_tokens.append(result)
        a, b = pair
        changed: Counter = Counter()
        for i in where.pop(pair, ()):
            w = seqs[i]
            if len(w) < 2:
                continue
            # Rewrite left to right (non-overlapping, as BPE applies one merge), then move this
            # word's pair counts from the old spelling to the new one.
            out, j, hit = [], 0, False
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(result)
                    j += 2
                    hit = True
                else:
                    out.append(w[j])
                    j += 1
            if not hit:
                continue
            f = freqs[i]
            for p in zip(w, w[1:]):
                changed[p] -= f
            for p in zip(out, out[1:]):
                changed[p] += f
                where.setdefault(p, set()).add(i)
            seqs[i] = out
        counts.pop(pair, None)
        for p, d in changed.items():
            if d == 0 or p == pair:
                continue
            counts[p] += d
            if d > 0:  # a grown count must be seen; a shrunk one is corrected when popped
                heapq.heappush(heap, (-counts[p], p))
    return merges, new_tokens


def fallback_characters(tj: dict, texts: Iterable[str]) -> Counter:
    """Characters of ``texts`` (after the source's normalizer) that a byte-fallback source lacks,
    with their counts; whitespace is left out (the pre-tokenizer rewrites it, e.g. to '▁')."""
    tok = C.build_tokenizer(tj)
    vocab = tj["model"]["vocab"]
    norm = tok.normalizer
    counts: Counter = Counter()
    for doc in texts:
        counts.update(norm.normalize_str(doc) if norm is not None else doc)
    return Counter({c: n for c, n in counts.items() if c not in vocab and not c.isspace()})


def continue_bpe(
    tj: dict, texts: Callable[[], Iterable[str]], add: int, *, start: int, min_frequency: int = 2,
    wanted: Callable[[str], bool] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Extend BPE tokenizer JSON ``tj`` in place by up to ``add`` tokens (ids from ``start``).

    ``tj``'s added tokens must already be in its model vocabulary (``absorb_added_tokens``).
    Returns (new tokens in id order, info).
    """
    from vocadapt.progress import step

    check_continuable(tj)
    model = tj["model"]
    old_merges = C.bpe_merges(model)
    chars: list[str] = []
    if model.get("byte_fallback"):
        missing = fallback_characters(tj, texts())
        chars = [c for c, n in sorted(missing.items(), key=lambda cn: (-cn[1], cn[0]))
                 if n >= min_frequency and (wanted is None or wanted(c))][:add]
        for i, c in enumerate(chars):
            model["vocab"][c] = start + i
    words = source_words(tj, texts())
    step(f"tokenizer: continuing BPE training on {len(words)} distinct multi-token words of the source's segmentation")
    merges, new_tokens = learn_merges(
        words, add - len(chars), vocab=set(model["vocab"]), old_merges=set(old_merges),
        prefix=model.get("continuing_subword_prefix") or "", min_frequency=min_frequency, wanted=wanted,
        forbidden={t["content"] for t in tj.get("added_tokens", [])},
    )
    new_tokens, merges, dropped = _drop_unreachable(tj, chars, new_tokens, old_merges, merges, start)
    info = {"merges": {"source": len(old_merges), "new": len(merges), "to_source_tokens": len(merges) - len(new_tokens)},
            "new_characters": len(chars), "distinct_words": len(words)}
    if dropped:
        info["dropped_unreachable"] = dropped
    return chars + new_tokens, info


def _drop_unreachable(
    tj: dict, chars: list[str], new_tokens: list[str], old_merges: list[Pair], merges: list[Pair], start: int
) -> tuple[list[str], list[Pair], int]:
    """Write the new tokens and merges into ``tj``; drop any new token the model does not produce
    for its own text, with the merges that make or use it, until none is left. Dropping new
    merges keeps the extension a continuation (old merges first), so no text gets longer.

    By the rank argument in the module doc this should never drop anything; it is checked
    because an unreachable token is a dead embedding row that ``init`` would still fill.
    """
    model = tj["model"]
    prefix = model.get("continuing_subword_prefix") or ""
    base = {t: i for t, i in model["vocab"].items() if i < start + len(chars)}
    dropped = 0
    while True:
        model["vocab"] = {**base, **{t: i for i, t in enumerate(new_tokens, start=start + len(chars))}}
        C.set_bpe_merges(model, old_merges + merges)
        lost = set(unreachable(tj, new_tokens))
        if not lost:
            return new_tokens, merges, dropped
        dropped += len(lost)
        merges = [m for m in merges if not lost.intersection((*m, C.merge_result(*m, prefix)))]
        new_tokens = [t for t in new_tokens if t not in lost]


def unreachable(tj: dict, pieces: Iterable[str]) -> list[str]:
    """The ``pieces`` the tokenizer's model never produces when given their own text.

    A piece is reachable when the model alone (no normalizer or pre-tokenizer, which would e.g.
    put '▁' in front of a mid-word SentencePiece piece) segments the piece's own string into
    exactly that piece: BPE runs its merges, Unigram its best-score segmentation. WordPiece's
    greedy longest match always takes a whole entry that fits (a ``##`` entry right after a
    word's first piece), so only initial WordPiece entries are checked.
    """
    model = C.build_tokenizer(tj).model
    kind = tj["model"].get("type")
    prefix = tj["model"].get("continuing_subword_prefix") or "##"
    out = []
    for p in pieces:
        if kind == "WordPiece" and p.startswith(prefix):
            continue
        if [t.value for t in model.tokenize(p)] != [p]:
            out.append(p)
    return out
