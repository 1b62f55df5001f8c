"""Orthogonal Procrustes alignment of two word-vector spaces on a bilingual dictionary (WECHSEL).

Given pairs (source word, target word) present in both spaces, find the orthogonal W
(dim x dim) minimizing ||X W - Y||_F over the paired rows: W = U V^T where X^T Y = U S V^T.
Each dictionary pair is tried as given, lowercased and titlecased on both sides (as the WECHSEL
reference does); every combination found in both spaces becomes one training pair (duplicates
are counted once).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from vocadapt.errors import VocadaptError
from vocadapt.vectors.io import WordVectors

_CYRILLIC_OR_WORD = re.compile(r"^[^\W\d_]+(?:-[^\W\d_]+)?$")


def procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Orthogonal W (d x d) minimizing ||x W - y|| for paired rows x, y of shape (n, d)."""
    if x.shape != y.shape:
        raise VocadaptError(f"procrustes: paired matrices differ in shape {x.shape} vs {y.shape}")
    u, _, vt = np.linalg.svd(x.astype(np.float64).T @ y.astype(np.float64))
    return (u @ vt).astype(np.float32)


def read_dictionary(path: str | Path) -> list[tuple[str, str]]:
    """Bilingual pairs from a two-column text file (tab or space) or a dictd ``.dict(.dz)`` file.

    For dictd (e.g. Mueller's English-Russian), each single-word headword is paired with the
    single-word translations found in its entry (numbering, grammar labels, transcriptions and
    parenthesized notes removed; phrases skipped), at most three per headword.
    """
    p = Path(path)
    if not p.is_file():
        raise VocadaptError(f"dictionary not found: {p}")
    name = p.name.lower()
    opener = gzip.open if name.endswith((".gz", ".dz")) else open
    with opener(p, "rt", encoding="utf-8", errors="replace") as fh:
        if ".dict" in name:
            pairs = _parse_dictd(fh)
        else:
            pairs = []
            for line in fh:
                parts = line.strip().split("\t") if "\t" in line else line.split()
                if len(parts) >= 2 and parts[0] and parts[1]:
                    pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
        raise VocadaptError(f"dictionary {p} has no word pairs (expected 'source<TAB>target' lines or dictd format)")
    return pairs


def _parse_dictd(lines) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    head: str | None = None
    found: list[str] = []

    def flush() -> None:
        if head and _CYRILLIC_OR_WORD.match(head) and not head.startswith("00"):
            for t in found[:3]:
                pairs.append((head, t))

    for line in lines:
        if line and not line[0].isspace():
            flush()
            head, found = line.strip(), []
            continue
        if head is None or len(found) >= 3:
            continue
        text = re.sub(r"\[[^\]]*\]|\([^)]*\)|_[^\s.]+\.|\b\d+[.)]|\b[IVX]+\b", " ", line)
        for seg in re.split(r"[;,]", text):
            seg = seg.strip().strip(".:!?")
            if _CYRILLIC_OR_WORD.match(seg) and re.search("[а-яё]", seg.lower()):
                found.append(seg)
    flush()
    return pairs


def dictionary_pairs(src: WordVectors, tgt: WordVectors, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (src_rows, tgt_rows) of the dictionary pairs present in both spaces."""
    seen: set[tuple[int, int]] = set()
    for s, t in pairs:
        for sw in {s, s.lower(), s.title()}:
            i = src.index.get(sw)
            if i is None:
                continue
            # 'ё' is often written 'е' (navec's vocabulary has only 'е')
            for tw in {t, t.lower(), t.title(), t.replace("ё", "е"), t.replace("ё", "е").title()}:
                j = tgt.index.get(tw)
                if j is not None:
                    seen.add((i, j))
    if not seen:
        raise VocadaptError(
            f"no dictionary pair has both words in the vector spaces ({len(pairs)} pairs; "
            f"e.g. {pairs[0][0]!r} -> {pairs[0][1]!r}): check the dictionary's language direction and the vector files"
        )
    arr = np.asarray(sorted(seen), dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def fit_alignment(
    src: WordVectors, tgt: WordVectors, pairs: list[tuple[str, str]], *, normalize: bool = True
) -> tuple[np.ndarray, dict[str, float]]:
    """Orthogonal W (dim x dim) with ``src.matrix @ W`` in ``tgt``'s space; and a small report.

    ``normalize`` fits W on unit-length rows (standard practice; large-norm frequent words
    otherwise dominate the fit). W is orthogonal, so cosines within each space are unchanged.
    """
    if src.dim != tgt.dim:
        raise VocadaptError(
            f"cannot align word vectors of different dimensions: {src.source} has {src.dim}, {tgt.source} has {tgt.dim}"
        )
    si, ti = dictionary_pairs(src, tgt, pairs)
    x, y = src.matrix[si].astype(np.float64), tgt.matrix[ti].astype(np.float64)
    if normalize:
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
        y /= np.linalg.norm(y, axis=1, keepdims=True) + 1e-12
    w = procrustes(x, y)
    xw = x @ w
    cos = (xw * y).sum(1) / (np.linalg.norm(xw, axis=1) * np.linalg.norm(y, axis=1) + 1e-12)
    report = {"pairs_given": len(pairs), "pairs_used": int(len(si)), "mean_pair_cosine": float(cos.mean())}
    return w, report


def align_vectors(
    src: WordVectors, tgt: WordVectors, pairs: list[tuple[str, str]], *, normalize: bool = True
) -> tuple[WordVectors, dict[str, float]]:
    """``src`` mapped into ``tgt``'s space (see :func:`fit_alignment`); and the fit report."""
    w, report = fit_alignment(src, tgt, pairs, normalize=normalize)
    mapped = WordVectors(src.words, src.matrix @ w, src.counts, f"{src.source} aligned to {tgt.source}")
    return mapped, report


def multilingual(mapped: WordVectors, target: WordVectors, source_lang: str = "eng", target_lang: str = "rus") -> WordVectors:
    """One space holding both vocabularies with ``lang:word`` keys (what OFA expects)."""
    return WordVectors(
        [f"{source_lang}:{w}" for w in mapped.words] + [f"{target_lang}:{w}" for w in target.words],
        np.concatenate([mapped.matrix, target.matrix]).astype(np.float32),
    )
