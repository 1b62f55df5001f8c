"""Tiny models and corpora for the training tests (built in-process, under tmp_path)."""

from __future__ import annotations

from pathlib import Path

import factories as fx


def write_corpus(path: Path, n: int = 120, seed: int = 5, lang: str = "ru") -> Path:
    """A plain text corpus of ``n`` documents, fortune-file style (separated by '%' lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    docs = [" ".join(fx.corpus(lang, 3, seed=seed * 1000 + i)) for i in range(n)]
    path.write_text("\n%\n".join(docs) + "\n", encoding="utf-8")
    return path


def tiny_lm(path: Path, *, tied: bool = True, arch: str = "llama", seed: int = 0) -> Path:
    """A random 2-layer causal LM with a byte-level BPE tokenizer, saved at ``path``."""
    tok = fx.byte_level_bpe(fx.corpus("ru", 200, seed=2) + fx.corpus("mixed", 50, seed=3), vocab_size=400)
    model = fx.tiny_model(arch, len(tok), tied, seed=seed)
    return fx.save_model(model, tok, path)
