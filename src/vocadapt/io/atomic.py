"""Outputs appear whole or not at all: write into a temporary sibling, rename at the end.

Every command that writes a directory (a model, a tokenizer, an unpacked asset) goes through
:func:`atomic_dir`, so an error, a Ctrl-C or a full disk never leaves a half-written output
that a later step would mistake for a finished one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vocadapt.errors import VocadaptError


def check_output_dir(dest: str | Path, overwrite: bool = False) -> None:
    """Fail fast, before any long work, if ``dest`` holds something and ``overwrite`` is off."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())) and not overwrite:
        raise VocadaptError(f"output directory exists and is not empty: {dest} (use --overwrite)")


@contextmanager
def atomic_dir(dest: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``dest``; on success it replaces ``dest``.

    A non-empty ``dest`` is an error unless ``overwrite``; on failure the temporary directory
    is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    check_output_dir(dest, overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    tmp.rename(dest)
