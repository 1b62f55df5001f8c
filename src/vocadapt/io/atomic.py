"""Outputs appear whole or not at all: write into a temporary sibling, rename at the end.

Every command that writes a directory (a model, a tokenizer, an unpacked asset) goes through
:func:`atomic_dir`, so an error, a Ctrl-C or a full disk never leaves a half-written output
that a later step would mistake for a finished one. The finished output is readable as the
umask allows (usually by the group and others): ``mkdtemp`` makes owner-only folders and some
writers (``save_pretrained``) owner-only files, which would keep a shared model private.
"""

from __future__ import annotations

import os
import shutil
import stat
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


def umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_as_umask_allows(root: str | Path) -> None:
    """Give ``root`` and everything under it the permissions a plain ``mkdir``/``open`` would
    have: folders ``0o777 & ~umask``, files ``0o666 & ~umask`` (execute bits kept)."""
    mask = umask()
    root = Path(root)
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for p in paths:
        if p.is_symlink():
            continue
        mode = stat.S_IMODE(p.stat().st_mode)
        wanted = mode | ((0o777 if p.is_dir() else 0o666) & ~mask)
        if wanted != mode:
            p.chmod(wanted)


def _created_ancestors(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, deepest first."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


@contextmanager
def atomic_dir(dest: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``dest``; on success it replaces ``dest``.

    A non-empty ``dest`` is an error unless ``overwrite``; on failure the temporary directory
    is removed, and so are the parent folders it had to create, so ``dest`` and its
    surroundings are left as they were.
    """
    dest = Path(dest)
    check_output_dir(dest, overwrite)
    new_parents = _created_ancestors(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        share_as_umask_allows(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in new_parents:
            try:
                parent.rmdir()
            except OSError:  # something else was put there meanwhile: keep it
                break
        raise
    if dest.exists():
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    tmp.rename(dest)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all: into a hidden sibling named by the
    process (concurrent writers never share one), renamed over ``path`` at the end."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        part.write_text(text, encoding="utf-8")
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path
