"""Where a model's bits per byte come from: by character class, or by the kind of token it read.

Bits per byte compares models across tokenizers but says nothing about which part of the text a
model lost. This scores each document as ``vocadapt eval`` does
(:func:`vocadapt.evaluate.bpb.document_logprobs`: a start token in front, 1,024-token windows),
spreads each token's bits over the UTF-8 bytes of the characters it spans (the character
offsets of the fast tokenizer), and sums them by one of two splits. A byte-level token that ends
inside a character (an empty span) gives its bits to the character it belongs to.

``--split class`` (default): each script's letters (by Unicode script), digits, spaces,
punctuation. Prints per class its share of the bytes, its bits per byte and its contribution to
the model's bits per byte.

``--split token``: the characters each of the model's own tokens spans, grouped by the token's
kind: a row ``vocadapt init`` copied from the original ("copied"), or a new token by how often it
occurs in the tokenized training text (``--corpus``; new tokens that training rarely shows are the
ones it cannot teach). Next to the model's bits per byte on those characters stands the
original's (``--original``, its own tokenizer) on the same characters, and the difference's
contribution to the gap in bits per byte: the rows add up to the model's bits per byte minus the
original's.

    PYTHONPATH=src python benchmarks/bpb_by_class.py MODEL_DIR... [--split class|token]
        [--text NAME=FILE ...] [--max-chars 8000] [--original DIR] [--corpus FILE ...]

``--text`` defaults to the held-out fortunes and man pages assets (the demo's held-out texts),
``--original`` to SmolLM2 and ``--corpus`` to the demo's training text (the fortunes' and the
Russian manuals' train splits).
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from vocadapt.evaluate.bpb import LN2
from vocadapt.tokenizer.canonical import letter_script

COUNT_BUCKETS = (20, 200, 2000)  # new tokens by occurrences in the training text: <20, 20-199, ...
_EDGES = (0, *COUNT_BUCKETS, None)
KINDS = ("copied", *(f"new, {lo}-{hi - 1} in the corpus" if hi else f"new, {lo}+ in the corpus" for lo, hi in zip(_EDGES, _EDGES[1:])))


def char_class(c: str) -> str:
    if c.isspace():
        return "space"
    if c.isdigit():
        return "digit"
    return letter_script(c) if c.isalpha() else "punctuation"


def char_bits(model, tokenizer, texts: list[str]) -> list[tuple[np.ndarray, list[tuple[int, int]], list[int]]]:
    """Per document: the bits of each character, and the scored tokens' character spans and ids."""
    from vocadapt.evaluate.bpb import document_logprobs

    lps, _, has_start = document_logprobs(model, tokenizer, texts, max_length=1024)
    out = []
    for text, lp, start in zip(texts, lps, has_start):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        spans, ids = enc["offset_mapping"], enc["input_ids"]
        if not start:  # the first token was not scored
            spans, ids = spans[1:], ids[1:]
        if len(spans) != len(lp):
            raise ValueError(f"{len(spans)} token spans for {len(lp)} scores: the tokenizer adds tokens of its own")
        width = np.array([len(c.encode()) for c in text], dtype=np.float64)
        bits = np.zeros(len(text))
        for (a, b), logp in zip(spans, lp.tolist()):
            a = min(a, len(text) - 1)
            b = max(b, a + 1)  # an empty span: the character the byte piece belongs to
            bits[a:b] += -logp / LN2 * width[a:b] / width[a:b].sum()
        out.append((bits, spans, ids))
    return out


def bytes_by_class(texts: list[str]) -> Counter:
    """{class: UTF-8 bytes} over ``texts`` (the same for every model)."""
    out: Counter = Counter()
    for text in texts:
        for c in text:
            out[char_class(c)] += len(c.encode())
    return out


def bits_by_class(model, tokenizer, texts: list[str]) -> Counter:
    """{class: bits} of ``model`` over ``texts``."""
    bits: Counter = Counter()
    for text, (per_char, _, _) in zip(texts, char_bits(model, tokenizer, texts)):
        for c, b in zip(text, per_char.tolist()):
            bits[char_class(c)] += b
    return bits


def token_kinds(tokenizer, original_tokenizer, corpus_files) -> np.ndarray:
    """The kind of every id of ``tokenizer``: "copied", or "new" with its count bucket in the
    training text (tokenized as ``vocadapt train`` does it, and from the same cache)."""
    from vocadapt.tokenizer.align import align_vocabularies
    from vocadapt.train.data import tokenize_corpus

    ids = tokenize_corpus(tokenizer, corpus_files, progress=False).ids
    copied = align_vocabularies(original_tokenizer, tokenizer, decompose=False).copy_from >= 0
    counts = np.bincount(ids, minlength=len(copied))[: len(copied)]
    kinds = np.array(KINDS[1:], dtype=object)[np.searchsorted(COUNT_BUCKETS, counts, side="right")]
    kinds[copied] = "copied"
    return kinds


def bits_by_token(scored, original, texts: list[str], kinds: np.ndarray) -> dict[str, np.ndarray]:
    """{kind: [model bits, original bits, bytes, tokens]} over the characters each token spans."""
    out: dict[str, np.ndarray] = {}
    for text, (bits, spans, ids), (orig_bits, _, _) in zip(texts, scored, original):
        width = np.array([len(c.encode()) for c in text], dtype=np.float64)
        free = np.ones(len(text), dtype=bool)  # byte pieces of one character share it: count it once
        for (a, b), t in zip(spans, ids):
            a = min(a, len(text) - 1)
            b = max(b, a + 1)
            take = free[a:b].copy()
            free[a:b] = False
            row = out.setdefault(kinds[t], np.zeros(4))
            row += (bits[a:b][take].sum(), orig_bits[a:b][take].sum(), width[a:b][take].sum(), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model directories")
    ap.add_argument("--split", choices=("class", "token"), default="class", help="by character class, or by token kind")
    ap.add_argument("--text", nargs="*", help="NAME=FILE held-out texts (default: the fortunes and man pages assets)")
    ap.add_argument("--max-chars", type=int, default=8000, help="score the first N characters of each text")
    ap.add_argument("--original", help="--split token: the original model (default: the SmolLM2 asset)")
    ap.add_argument("--corpus", nargs="*", help="--split token: the training text (default: the demo's)")
    args = ap.parse_args()

    from vocadapt import assets
    from vocadapt.corpus import read_texts, take_chars
    from vocadapt.model import load_model

    if args.text:
        named = dict(t.split("=", 1) for t in args.text)
    else:
        named = {"fortunes": assets.russian_text() / "heldout.txt", "man pages": assets.russian_manpages() / "heldout.txt"}
    texts = {name: take_chars([t for t in read_texts([path]) if t.strip()], args.max_chars) for name, path in named.items()}
    if args.split == "token":
        token_split(args, texts)
        return
    nbytes = {name: bytes_by_class(docs) for name, docs in texts.items()}
    bits: dict[str, dict[str, Counter]] = {name: {} for name in texts}
    for path in args.models:
        model, tokenizer = load_model(path)
        for name, docs in texts.items():
            bits[name][path] = bits_by_class(model, tokenizer, docs)
    for name, by_model in bits.items():
        nb, total = nbytes[name], sum(nbytes[name].values())
        classes = [c for c, _ in nb.most_common()]
        print(f"\n{name}: {total:,} bytes; per class: share of bytes, bits per byte (contribution)")
        print("| model | bpb | " + " | ".join(f"{c} ({nb[c] / total:.2f})" for c in classes) + " |")
        print("|---|---|" + "---|" * len(classes))
        for path, b in by_model.items():
            cells = [f"{b[c] / nb[c]:.3f} ({b[c] / total:.3f})" for c in classes]
            print(f"| {path} | {sum(b.values()) / total:.3f} | " + " | ".join(cells) + " |")


def token_split(args, texts: dict[str, list[str]]) -> None:
    from vocadapt import assets
    from vocadapt.model import load_model

    corpus_files = args.corpus or [assets.russian_text() / "train.txt", assets.russian_docs() / "train.txt"]
    original, original_tok = load_model(args.original or assets.smollm2())
    orig_bits = {name: char_bits(original, original_tok, docs) for name, docs in texts.items()}
    del original
    for path in args.models:
        model, tokenizer = load_model(path)
        kinds = token_kinds(tokenizer, original_tok, corpus_files)
        for name, docs in texts.items():
            rows = bits_by_token(char_bits(model, tokenizer, docs), orig_bits[name], docs, kinds)
            total = sum(r[2] for r in rows.values())
            model_bpb, orig_bpb = sum(r[0] for r in rows.values()) / total, sum(r[1] for r in rows.values()) / total
            print(f"\n{path} on {name} ({int(total):,} bytes): bpb {model_bpb:.3f}, the original {orig_bpb:.3f}")
            print("| the model's token | tokens | bytes | bits per byte | the original's | gap contribution |")
            print("|---|---|---|---|---|---|")
            for kind in (k for k in KINDS if k in rows):
                b, o, n, k = rows[kind]
                print(f"| {kind} | {int(k):,} | {int(n):,} | {b / n:.3f} | {o / n:.3f} | {(b - o) / total:+.3f} |")


if __name__ == "__main__":
    main()
