"""ROUGE-1/2/L F-scores of generated summaries, with optional Russian lemmatization.

Tokens are lowercased ``\\w+`` runs (letters, digits, underscore in any script: the
``rouge-score`` package keeps only ASCII letters, which scores every Russian summary 0). With
``lemmatize=True`` each token is replaced by its pymorphy3 normal form, so inflected forms of
a word match (Russian has many).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from vocadapt.evaluate.lm import GenArgs

_WORD = re.compile(r"\w+", re.UNICODE)
DEFAULT_PROMPT = "Summarize the following text in one or two sentences:\n\n{text}"


def tokenize(text: str, lemmatize: bool = False) -> list[str]:
    words = [w.lower() for w in _WORD.findall(text)]
    return [_lemma(w) for w in words] if lemmatize else words


@lru_cache(maxsize=1)
def _morph():
    try:
        import pymorphy3
    except ImportError as e:
        from vocadapt.errors import VocadaptError

        raise VocadaptError("lemmatization needs pymorphy3: pip install 'vocadapt[eval]'") from e
    return pymorphy3.MorphAnalyzer()


@lru_cache(maxsize=200_000)
def _lemma(word: str) -> str:
    return _morph().parse(word)[0].normal_form


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    p, r = overlap / n_pred, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_n(pred: list[str], ref: list[str], n: int) -> float:
    """ROUGE-N F1 with clipped n-gram counts."""
    pc = Counter(tuple(pred[i:i + n]) for i in range(len(pred) - n + 1))
    rc = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
    return _f1(sum((pc & rc).values()), sum(pc.values()), sum(rc.values()))


def lcs_length(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(pred: list[str], ref: list[str]) -> float:
    """ROUGE-L F1 (longest common subsequence, summary-level without sentence splitting)."""
    return _f1(lcs_length(pred, ref), len(pred), len(ref))


def rouge(pred: str, ref: str, lemmatize: bool = False) -> dict[str, float]:
    p, r = tokenize(pred, lemmatize), tokenize(ref, lemmatize)
    return {"rouge1": rouge_n(p, r, 1), "rouge2": rouge_n(p, r, 2), "rougeL": rouge_l(p, r)}


def run_summary(lm, items: list[dict], *, lemmatize: bool = False, prompt: str = DEFAULT_PROMPT,
                max_new_tokens: int = 96) -> dict:
    """items: [{"text", "summary"}]; returns mean ROUGE F1s and samples."""
    gens = lm.generate_until([(lm.chat(prompt.format(text=it["text"])), GenArgs(max_new_tokens=max_new_tokens))
                              for it in items])
    samples, totals = [], Counter()
    for it, gen in zip(items, gens):
        scores = rouge(gen.text, it["summary"], lemmatize)
        totals.update(scores)
        samples.append({"reference": it["summary"], "prediction": gen.text.strip(), **scores})
    metrics = {k: totals[k] / len(items) for k in ("rouge1", "rouge2", "rougeL")}
    metrics["n"] = len(items)
    return {"metrics": metrics, "samples": samples}
