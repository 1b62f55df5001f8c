"""Options the shared test matrix passes to methods that need inputs beyond the two tokenizers.

A method that runs with defaults needs no entry. One that needs files (word vectors, an
auxiliary corpus) gets a builder here that writes tiny ones into ``workdir``, so the matrix
still covers it hermetically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

OPTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {}


def options_for(method: str, workdir: Path) -> dict[str, Any]:
    build = OPTIONS.get(method)
    return build(workdir) if build else {}


# ------------------------------------------------------------------------------------------------
# Similarity-based methods (FOCUS, WECHSEL, OFA): tiny corpora and word-vector files
# ------------------------------------------------------------------------------------------------


def _word_vectors(words: list[str], dim: int, seed: int, prefix: str = "") -> list[tuple[str, list[float]]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [(prefix + w, rng.standard_normal(dim).tolist()) for w in words]


def _write_w2v(path: Path, rows: list[tuple[str, list[float]]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    dim = len(rows[0][1])
    lines = [f"{len(rows)} {dim}"] + [w + " " + " ".join(f"{x:.5f}" for x in v) for w, v in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _vocab(lang: str) -> list[str]:
    import factories as fx

    words = fx.EN_WORDS if lang == "en" else fx.RU_WORDS
    # the words and their pieces: tiny tokenizers keep whole words, so intermediate merges
    # (WordPiece '##зык') only show up inside shorter or partial words
    parts = [w[i:j] for w in words for i in range(len(w)) for j in range(i + 2, min(len(w), i + 7) + 1)]
    return list(dict.fromkeys(words + parts + [w.capitalize() for w in words]))


def _focus(workdir: Path) -> dict[str, Any]:
    import factories as fx

    workdir.mkdir(parents=True, exist_ok=True)
    text = workdir / "aux.txt"
    text.write_text("\n\n".join(fx.corpus("ru", 400, seed=7) + fx.corpus("mixed", 200, seed=8)) + "\n", encoding="utf-8")
    return {"aux_corpus": [str(text)], "min_count": 3, "threads": 1, "dim": 16, "epochs": 2}


def _wechsel(workdir: Path) -> dict[str, Any]:
    en, ru = _vocab("en"), _vocab("ru")
    src = _write_w2v(workdir / "en.vec", _word_vectors(en, 12, 1))
    tgt = _write_w2v(workdir / "ru.vec", _word_vectors(ru, 12, 2))
    (workdir / "dict.txt").write_text("\n".join(f"{a}\t{b}" for a, b in zip(en, ru)) + "\n", encoding="utf-8")
    return {"source_vectors": src, "target_vectors": tgt, "dictionary": str(workdir / "dict.txt")}


def _ofa(workdir: Path) -> dict[str, Any]:
    rows = _word_vectors(_vocab("en"), 12, 3, "eng:") + _word_vectors(_vocab("ru"), 12, 4, "rus:")
    return {"vectors": _write_w2v(workdir / "multi.vec", rows), "rank": "8"}


OPTIONS.update(focus=_focus, wechsel=_wechsel, ofa=_ofa)


def _regression(workdir: Path) -> dict[str, Any]:
    # Features from fastText on target text (the helper-free variant): works for every target
    # tokenizer the matrix uses; the helper-model variant has its own tests (test_regression.py).
    opts = _focus(workdir)
    return {"features_corpus": opts.pop("aux_corpus"), **opts}


OPTIONS.update(regression=_regression)
