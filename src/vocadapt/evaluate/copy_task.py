"""Darumeru-style copy tasks (DaruCopy) built from any target-language text.

The model is asked to repeat a text verbatim; an adapted model that lost the ability to write
its new tokens back out fails here long before it fails a multiple-choice test.

* sentence copy: score ``min(pred/ref, ref/pred)`` where pred/ref are the token counts (model's
  own tokenizer) of the output and the sentence; 0 for an empty output.
* paragraph copy: score 1 when at least 99% of the characters match, else 0. "Match" is the
  characters in common subsequence blocks (difflib) divided by the longer of the two texts, so
  dropping text and adding text both count against it.
* ``copy_sentence_match`` / ``copy_paragraph_match``: the mean character match itself. The
  sentence score above only compares lengths (as DaruCopy does), so an output of the right
  length in the wrong words still scores high; the match says whether the text was copied.
"""

from __future__ import annotations

import difflib
import random
import re

from vocadapt.evaluate.lm import GenArgs

DEFAULT_PROMPT = "Repeat the following text exactly, without changing anything:\n\n{text}"
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def sentence_score(pred_tokens: int, ref_tokens: int) -> float:
    """min(pred/ref, ref/pred) of token counts; 0 when either is empty."""
    if pred_tokens <= 0 or ref_tokens <= 0:
        return 0.0
    return min(pred_tokens / ref_tokens, ref_tokens / pred_tokens)


def char_match(pred: str, ref: str) -> float:
    """Fraction of characters in matching blocks, over the longer text (1.0 = identical)."""
    if not pred and not ref:
        return 1.0
    sm = difflib.SequenceMatcher(None, pred, ref, autojunk=False)
    return sum(b.size for b in sm.get_matching_blocks()) / max(len(pred), len(ref))


PARAGRAPH_THRESHOLD = 0.99


def paragraph_score(pred: str, ref: str, threshold: float = PARAGRAPH_THRESHOLD) -> float:
    return 1.0 if char_match(pred.strip(), ref.strip()) >= threshold else 0.0


def build_copy_items(texts: list[str], *, n_sentences: int = 16, n_paragraphs: int = 4, seed: int = 0,
                     sentence_chars: tuple[int, int] = (30, 200), paragraph_chars: tuple[int, int] = (150, 600),
                     ) -> tuple[list[str], list[str]]:
    """(sentences, paragraphs) sampled reproducibly from documents.

    Sentences are split at . ! ? … followed by whitespace; paragraphs are whole documents
    (whitespace-normalized lines kept), both filtered by length in characters.
    """
    rng = random.Random(seed)
    sentences, paragraphs = [], []
    for doc in texts:
        doc = doc.strip()
        if paragraph_chars[0] <= len(doc) <= paragraph_chars[1]:
            paragraphs.append(doc)
        for s in _SENTENCE_END.split(" ".join(doc.split())):
            if sentence_chars[0] <= len(s) <= sentence_chars[1]:
                sentences.append(s)
    rng.shuffle(sentences)
    rng.shuffle(paragraphs)
    return sentences[:n_sentences], paragraphs[:n_paragraphs]


def run_copy(lm, texts: list[str], *, n_sentences: int = 16, n_paragraphs: int = 4, seed: int = 0,
             prompt: str = DEFAULT_PROMPT, max_new_tokens: int | None = None) -> dict:
    """Score both copy tasks; returns {"metrics": {...}, "samples": [...]}."""
    sentences, paragraphs = build_copy_items(texts, n_sentences=n_sentences, n_paragraphs=n_paragraphs, seed=seed)
    if not sentences and not paragraphs:
        from vocadapt.errors import VocadaptError

        raise VocadaptError("copy: the held-out text has no sentence of 30-200 or paragraph of 150-600 characters")
    refs = [("sentence", s) for s in sentences] + [("paragraph", p) for p in paragraphs]
    requests = []
    for _, ref in refs:
        n = lm.count_tokens(ref)
        requests.append((lm.chat(prompt.format(text=ref)), GenArgs(max_new_tokens=min(int(n * 1.3) + 8, max_new_tokens or 1 << 30))))
    gens = lm.generate_until(requests)
    samples, by_kind, matches = [], {"sentence": [], "paragraph": []}, {"sentence": [], "paragraph": []}
    for (kind, ref), gen in zip(refs, gens):
        pred = gen.text.strip()
        match = char_match(pred, ref)  # ref is stripped by build_copy_items: paragraph_score's match
        if kind == "sentence":
            score = sentence_score(lm.count_tokens(pred), lm.count_tokens(ref))
        else:
            score = 1.0 if match >= PARAGRAPH_THRESHOLD else 0.0
        by_kind[kind].append(score)
        matches[kind].append(match)
        samples.append({"kind": kind, "reference": ref, "prediction": pred, "score": score, "char_match": match})
    metrics = {f"copy_{k}": sum(v) / len(v) for k, v in by_kind.items() if v}
    metrics.update({f"copy_{k}_match": sum(v) / len(v) for k, v in matches.items() if v})
    metrics["n_sentences"], metrics["n_paragraphs"] = len(sentences), len(paragraphs)
    return {"metrics": metrics, "samples": samples}
