"""Where a model's bits per byte come from: each script's letters, digits, spaces or punctuation.

Bits per byte compares models across tokenizers but says nothing about which part of the text a
model lost. This scores each document as ``vocadapt eval`` does
(:func:`vocadapt.evaluate.bpb.document_logprobs`: a start token in front, 1,024-token windows),
spreads each token's bits over the UTF-8 bytes of the characters it spans (the character
offsets of the fast tokenizer), and sums them by character class (letters by their Unicode
script). A byte-level token that ends inside a character (an empty span) gives its bits to the
character it belongs to.

    PYTHONPATH=src python benchmarks/bpb_by_class.py MODEL_DIR... [--text NAME=FILE ...] [--max-chars 8000]

``--text`` defaults to the held-out fortunes and man pages assets (the demo's held-out texts).
Prints one table per text: per class its share of the bytes, its bits per byte and its share of
the text's bits per byte (the contributions add up to the model's bits per byte).
"""

from __future__ import annotations

import argparse
from collections import Counter

from vocadapt.evaluate.bpb import LN2
from vocadapt.tokenizer.canonical import letter_script


def char_class(c: str) -> str:
    if c.isspace():
        return "space"
    if c.isdigit():
        return "digit"
    return letter_script(c) if c.isalpha() else "punctuation"


def bytes_by_class(texts: list[str]) -> Counter:
    """{class: UTF-8 bytes} over ``texts`` (the same for every model)."""
    out: Counter = Counter()
    for text in texts:
        for c in text:
            out[char_class(c)] += len(c.encode())
    return out


def bits_by_class(model, tokenizer, texts: list[str]) -> Counter:
    """{class: bits} of ``model`` over ``texts``."""
    from vocadapt.evaluate.bpb import document_logprobs

    lps, _, has_start = document_logprobs(model, tokenizer, texts, max_length=1024)
    bits: Counter = Counter()
    for text, lp, start in zip(texts, lps, has_start):
        spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if not start:  # the first token was not scored
            spans = spans[1:]
        if len(spans) != len(lp):
            raise ValueError(f"{len(spans)} token spans for {len(lp)} scores: the tokenizer adds tokens of its own")
        for (a, b), logp in zip(spans, lp.tolist()):
            a = min(a, len(text) - 1)
            chars = text[a:max(b, a + 1)]  # an empty span: the character the byte piece belongs to
            weight = len(chars.encode())
            for c in chars:
                bits[char_class(c)] += -logp / LN2 * len(c.encode()) / weight
    return bits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model directories")
    ap.add_argument("--text", nargs="*", help="NAME=FILE held-out texts (default: the fortunes and man pages assets)")
    ap.add_argument("--max-chars", type=int, default=8000, help="score the first N characters of each text")
    args = ap.parse_args()

    from vocadapt.corpus import read_texts, take_chars
    from vocadapt.model import load_model

    if args.text:
        named = dict(t.split("=", 1) for t in args.text)
    else:
        from vocadapt import assets

        named = {"fortunes": assets.russian_text() / "heldout.txt", "man pages": assets.russian_manpages() / "heldout.txt"}
    texts = {name: take_chars([t for t in read_texts([path]) if t.strip()], args.max_chars) for name, path in named.items()}
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


if __name__ == "__main__":
    main()
