"""Provenance next to every output: what made this directory, from what, with which versions.

Every command that writes an output directory also writes ``vocadapt.json`` into it: the
command, its resolved configuration, package versions, hashes of the inputs, and whatever
counts the step produced (for ``init``: how many rows were copied, computed, or fell back).
Reading it back is how ``vocadapt report`` knows what a directory is.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import platform
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "vocadapt.json"

log = logging.getLogger("vocadapt")

_PACKAGES = ("vocadapt", "torch", "transformers", "tokenizers", "safetensors", "numpy")

# The files that identify a model or tokenizer directory: configs, tokenizer files and weights.
_SMALL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Files larger than this are hashed through the content-hash cache (:func:`content_sha256`);
# smaller ones are cheaper to read than to look up.
_READ_WHOLE_UP_TO = 4 << 20
_HASH_CACHE_FILE = "file-hashes.sqlite"
# A file modified this recently may change again within the file system's timestamp granularity
# without its mtime moving ("racy" timestamps, as git calls them): its hash is not cached.
_RACY_NS = 2_000_000_000


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def fingerprint(path: str | Path) -> str:
    """A short hash of the whole content of a file or of a model/tokenizer directory (its configs,
    tokenizer files and every weight file). Large files are hashed once and then found in the
    content-hash cache (:func:`content_sha256`), so fingerprinting a multi-GB model again is
    instant; a change anywhere in a weight file changes the fingerprint."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(
        f for f in p.iterdir() if f.is_file() and (f.name in _SMALL_FILES or f.suffix in (".safetensors", ".gguf", ".model"))
    ) if p.is_dir() else []
    for f in files:
        h.update(f.name.encode())
        if f.stat().st_size <= _READ_WHOLE_UP_TO:
            h.update(f.read_bytes())  # as fingerprints of small files have always been made
        else:
            h.update(f"sha256:{content_sha256(f)}".encode())
    return h.hexdigest()[:16]


def content_sha256(path: str | Path) -> str:
    """sha256 of a file's whole content, cached under the cache folder by (path, device, inode,
    size, mtime in ns): re-hashing an unchanged multi-GB model costs one ``stat`` and one lookup.

    The cache is one SQLite file, so concurrent processes (``accelerate launch``, parallel
    recipe stages) read and write it safely, each write a transaction. A file modified within
    the last two seconds, or one that changed while it was read, is hashed but not cached. When
    the cache cannot be used (read-only, corrupt), files are simply hashed every time.
    """
    p = Path(path).resolve()
    st = p.stat()
    if st.st_size <= _READ_WHOLE_UP_TO:
        return file_sha256(p)
    ident = (str(p), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _hash_cache("get", ident)
    if cached:
        return cached
    digest = file_sha256(p)
    after = p.stat()
    unchanged = (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns) == ident[1:]
    if unchanged and time.time_ns() - st.st_mtime_ns > _RACY_NS:
        _hash_cache("put", ident, digest)
    return digest


def _hash_cache(op: str, ident: tuple, digest: str | None = None) -> str | None:
    """Look up (``get``) or store (``put``) the hash of the file ``ident`` = (path, dev, ino, size, mtime_ns)."""
    import sqlite3
    from contextlib import closing

    from vocadapt.cache import cache_dir

    try:
        with closing(sqlite3.connect(cache_dir() / _HASH_CACHE_FILE, timeout=60)) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, "
                       "size INTEGER, mtime_ns INTEGER, sha256 TEXT NOT NULL)")
            if op == "put":  # one row per path: a changed file replaces its stale entry
                db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)", (*ident, digest))
                return digest
            row = db.execute("SELECT sha256 FROM hashes WHERE path = ? AND dev = ? AND ino = ? AND size = ? AND mtime_ns = ?",
                             ident).fetchone()
            return row[0] if row else None
    except (sqlite3.Error, OSError) as e:
        log.debug("content-hash cache unavailable (%s): hashing without it", e)
        return None


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def write_provenance(
    out_dir: str | Path,
    step: str,
    config: Any,
    inputs: dict[str, str | Path] | None = None,
    results: dict[str, Any] | None = None,
) -> Path:
    """Write ``vocadapt.json`` into ``out_dir`` and return its path.

    ``step`` names the pipeline step ("init", "tokenizer.train", "eval", ...); ``config`` is the
    resolved configuration (a dataclass or dict); ``inputs`` maps roles to paths, which are
    fingerprinted; ``results`` holds the step's counts and figures.
    """
    record = {
        "step": step,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "config": _jsonable(config),
        "inputs": {k: {"path": str(v), "fingerprint": fingerprint(v)} for k, v in (inputs or {}).items()},
        "results": _jsonable(results or {}),
        "versions": versions(),
    }
    path = Path(out_dir) / PROVENANCE_FILE
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_provenance(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / PROVENANCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def file_sha256(path: str | Path, limit: int | None = None) -> str:
    """sha256 of a file (or of its first ``limit`` bytes), streamed."""
    h = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
                if remaining <= 0:
                    break
    return h.hexdigest()
