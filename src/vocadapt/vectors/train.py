"""fastText CBOW vectors for the *tokens* of a tokenizer, trained on text it tokenized (FOCUS).

The corpus is streamed, tokenized in batches by the fast tokenizer (``encode_batch``), written
one document per line with tokens separated by spaces, and fed to ``fasttext.train_unsupervised``.
fastText keys are the tokenizer's own vocabulary strings (``Ġпри``, ``▁при``, ``##ing``) with
any whitespace inside a piece replaced, so :func:`token_key` maps them back to ids.

Models are cached under ``$VOCADAPT_CACHE/fasttext/<hash>.bin``, the hash covering the
tokenizer's JSON, the corpus files' contents and every training setting: training twice on
the same inputs costs nothing the second time.
"""

from __future__ import annotations

import hashlib
import logging
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vocadapt.errors import VocadaptError

log = logging.getLogger("vocadapt")


def train_cbow(text: str | Path, lr: float = 0.05, **kwargs: Any):
    """``fasttext.train_unsupervised(text, model="cbow", ...)``, robust to its sporadic NaN.

    fastText's SGD can diverge to NaN on a small corpus at its default lr; halving the rate
    recovers it. It has also failed with NaN at every rate inside one long test process while
    the same call succeeded in a fresh one (never reproduced in 300 runs alone), so the last
    attempt runs in a new Python process. Same inputs give the same attempts, so a cache keyed
    on the inputs stays valid. A run that returns non-finite vectors without raising counts as
    diverged too. Raises RuntimeError when every attempt fails.
    """
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # load_model's notice on stderr
    kwargs = {"verbose": 0, **kwargs}
    for attempt in range(4):
        try:
            train = _train_in_process if attempt < 3 else _train_in_subprocess
            model = train(text, lr, kwargs)
            if _finite(model):
                return model
        except (RuntimeError, ValueError) as e:
            if "NaN" not in str(e):
                raise RuntimeError(str(e)) from None
        lr /= 2
        if attempt < 3:
            log.warning("fastText diverged (NaN); retrying with lr %.4f%s", lr, " in a new process" if attempt == 2 else "")
    raise RuntimeError("fastText diverged (NaN) at every learning rate tried")


def _train_in_process(text, lr: float, kwargs: dict[str, Any]):
    import fasttext

    return fasttext.train_unsupervised(str(text), model="cbow", lr=lr, **kwargs)


def _train_in_subprocess(text, lr: float, kwargs: dict[str, Any]):
    import fasttext
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="vocadapt-fasttext-") as tmp:
        out = Path(tmp) / "model.bin"
        code = ("import fasttext, json, sys; a = json.loads(sys.argv[1]); "
                "fasttext.train_unsupervised(a.pop('input'), model='cbow', **a).save_model(sys.argv[2])")
        args = json.dumps({"input": str(text), "lr": lr, **kwargs})
        done = subprocess.run([sys.executable, "-c", code, args, str(out)], capture_output=True, text=True)
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError((done.stderr.strip().splitlines() or ["fastText failed"])[-1])
        return fasttext.load_model(str(out))


def _finite(model) -> bool:
    """Whether every trained vector is finite. fastText does not always raise on divergence: in
    one CI process a run returned a matrix of NaN and garbage (values like 1.4e-45, 1e10)."""
    import numpy as np

    return bool(np.isfinite(model.get_input_matrix()).all())


_WS = str.maketrans({c: "\u2423" for c in " \t\n\r\v\f\x00"})  # '␣': fastText splits on these


def token_key(piece: str) -> str:
    """The fastText word for a vocabulary piece (whitespace replaced; fastText splits on it)."""
    return piece.translate(_WS)


def _cache_key(tokenizer: Any, files: list[Path], settings: dict[str, Any]) -> str:
    from vocadapt.provenance import file_sha256
    from vocadapt.tokenizer.canonical import tokenizer_json

    h = hashlib.sha256()
    h.update(json.dumps(tokenizer_json(tokenizer), sort_keys=True).encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    for f in files:
        h.update(f"{f.name}:{file_sha256(f)}".encode())
    return h.hexdigest()[:24]


def tokenize_to_file(tokenizer: Any, corpus: Sequence[str | Path], out: Path, batch: int = 1000) -> tuple[int, int]:
    """Write the corpus tokenized (one document per line); returns (documents, tokens)."""
    from vocadapt.corpus import batched, iter_texts
    from vocadapt.progress import bar

    backend = tokenizer.backend_tokenizer
    n_docs = n_tok = 0
    progress = bar(desc="fastText: tokenizing the corpus", unit="doc", unit_scale=True)
    with open(out, "w", encoding="utf-8") as fh, progress:
        for docs in batched(iter_texts(list(corpus), errors="skip"), batch):
            progress.update(len(docs))
            for enc in backend.encode_batch(docs, add_special_tokens=False):
                toks = [token_key(t) for t in enc.tokens]
                n_tok += len(toks)
                fh.write(" ".join(toks) + "\n")
            n_docs += len(docs)
    return n_docs, n_tok


def train_token_vectors(
    corpus: Sequence[str | Path],
    tokenizer: Any,
    out: str | Path | None = None,
    *,
    dim: int = 100,
    epochs: int = 3,
    min_count: int = 10,
    threads: int = 2,
    seed: int = 0,
    use_cache: bool = True,
) -> Path:
    """Train (or reuse from the cache) fastText CBOW on ``corpus`` tokenized by ``tokenizer``.

    FOCUS's settings by default: CBOW, dim 100, 3 epochs, minCount 10, 10 negatives. Returns
    the path of the ``.bin`` model (``out`` if given, else the cache entry).
    """
    from vocadapt.cache import cache_dir
    from vocadapt.corpus import list_files

    files = list_files(list(corpus))
    settings = {"model": "cbow", "dim": dim, "epoch": epochs, "minCount": min_count, "neg": 10, "v": 1}
    cached = cache_dir() / "fasttext" / f"{_cache_key(tokenizer, files, settings)}.bin"
    if use_cache and cached.is_file():
        if out is None:
            return cached
        import shutil

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, out)
        return Path(out)

    from vocadapt.progress import step

    with tempfile.TemporaryDirectory(prefix="vocadapt-ft-") as tmp:
        text = Path(tmp) / "tokenized.txt"
        n_docs, n_tok = tokenize_to_file(tokenizer, files, text)
        if n_tok < 5 * min_count:
            raise VocadaptError(
                f"corpus too small to train fastText: {n_tok} tokens in {n_docs} documents "
                f"(need well over min_count={min_count} occurrences per token type); give more text or lower min_count"
            )
        step(f"fastText: training {dim}-d CBOW vectors on {n_tok} tokens ({epochs} epochs, {threads} threads; cached after)")
        try:
            model = train_cbow(text, dim=dim, epoch=epochs, minCount=min_count, neg=10, thread=max(1, threads))
        except RuntimeError as e:
            raise VocadaptError(
                f"fastText could not train on {n_tok} tokens ({e}); the corpus is too small for min_count={min_count}"
            ) from None
        n_words = len(model.words)
        if n_words < 2:
            raise VocadaptError(
                f"corpus too small to train fastText: only {n_words} token types occur >= {min_count} times in {n_tok} tokens"
            )
        dest = Path(out) if out is not None else cached
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        model.save_model(str(part))
        part.replace(dest)
        if use_cache and dest != cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            import shutil

            shutil.copyfile(dest, cached)
    return dest
