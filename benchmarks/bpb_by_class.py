"""Where a model's bits per byte come from: Cyrillic, Latin, digits, spaces or punctuation.

Bits per byte compares models across tokenizers but says nothing about which part of the text a
model lost. This scores each document as ``vocadapt eval`` does
(:func:`vocadapt.evaluate.bpb.document_logprobs`: a start token in front, 1,024-token windows),
spreads each token's bits over the UTF-8 bytes of the characters it spans (the character
offsets of the fast tokenizer), and sums them by character class. A byte-level token that ends
inside a character (offsets that repeat) gives its bits to the character it belongs to.

    PYTHONPATH=src python benchmarks/bpb_by_class.py MODEL_DIR... [--text NAME=FILE ...] [--max-chars 8000]

``--text`` defaults to the held-out fortunes and man pages assets (the demo's held-out texts).
Prints one table per text: per class its share of the bytes, its bits per byte and its share of
the text's bits per byte (the contributions add up to the model's bits per byte).
"""

from __future__ import annotations

import argparse
import unicodedata
from collections import Counter

from vocadapt.evaluate.bpb import LN2

CLASSES = ("Cyrillic", "Latin", "digit", "space", "punctuation", "other letter")


def char_class(c: str) -> str:
    if c.isspace():
        return "space"
    if c.isdigit():
        return "digit"
    if c.isalpha():
        name = unicodedata.name(c, "")
        return "Cyrillic" if "CYRILLIC" in name else "Latin" if "LATIN" in name else "other letter"
    return "punctuation"


def bits_by_class(model, tokenizer, texts: list[str]) -> tuple[Counter, Counter]:
    """({class: bits}, {class: UTF-8 bytes}) over ``texts``."""
    from vocadapt.evaluate.bpb import document_logprobs

    lps, _, has_start = document_logprobs(model, tokenizer, texts, max_length=1024)
    bits, nbytes = Counter(), Counter()
    for text, lp, start in zip(texts, lps, has_start):
        spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if not start:  # the first token was not scored
            spans = spans[1:]
        if len(spans) != len(lp):
            raise ValueError(f"{len(spans)} token spans for {len(lp)} scores: the tokenizer adds tokens of its own")
        per_char = [0.0] * len(text)
        for (a, b), logp in zip(spans, lp.tolist()):
            b = max(b, a + 1) if a < len(text) else a  # a byte piece of a character spans that character
            chars = range(min(a, len(text) - 1), min(b, len(text)))
            weight = sum(len(text[k].encode()) for k in chars)
            for k in chars:
                per_char[k] += -logp / LN2 * len(text[k].encode()) / weight
        for c, x in zip(text, per_char):
            bits[char_class(c)] += x
            nbytes[char_class(c)] += len(c.encode())
    return bits, nbytes


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
    rows: dict[str, dict] = {name: {} for name in texts}
    for path in args.models:
        model, tokenizer = load_model(path)
        model.eval()
        for name, docs in texts.items():
            rows[name][path] = bits_by_class(model, tokenizer, docs)
    for name, by_model in rows.items():
        total_bytes = sum(sum(Counter(nb).values()) for _, nb in list(by_model.values())[:1])
        present = [c for c in CLASSES if any(nb[c] for _, nb in by_model.values())]
        print(f"\n{name}: {total_bytes:,} bytes; per class: share of bytes, bits per byte (contribution)")
        print("| model | bpb | " + " | ".join(f"{c} ({list(by_model.values())[0][1][c] / total_bytes:.2f})" for c in present) + " |")
        print("|---|---|" + "---|" * len(present))
        for path, (bits, nb) in by_model.items():
            cells = [f"{bits[c] / nb[c]:.3f} ({bits[c] / total_bytes:.3f})" for c in present]
            print(f"| {path} | {sum(bits.values()) / total_bytes:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
