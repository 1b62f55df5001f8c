"""Where vocadapt keeps what it fetches and derives: ``$VOCADAPT_CACHE``, default ``~/.cache/vocadapt``.

The ground floor of the package (it imports nothing from vocadapt), so that anything that
caches — checkpoint conversion, tokenized corpora, fastText models, content hashes, the
demo assets — can ask for the location without importing the assets that live in it.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of the cache; ``VOCADAPT_CACHE`` overrides ``~/.cache/vocadapt``. Created if missing."""
    root = Path(os.environ.get("VOCADAPT_CACHE", Path.home() / ".cache" / "vocadapt"))
    root.mkdir(parents=True, exist_ok=True)
    return root
