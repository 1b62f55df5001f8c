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
import platform
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "vocadapt.json"

_PACKAGES = ("vocadapt", "torch", "transformers", "tokenizers", "safetensors", "numpy")

# Files whose content identifies a model or tokenizer directory without reading gigabytes of
# weights: configs and tokenizer files are hashed whole; weight files by their safetensors header
# (names, shapes, dtypes, offsets) plus the first MiB, which changes whenever the weights do in
# practice and keeps hashing an 8B checkpoint instant.
_SMALL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


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
    """A short content hash of a file or of a model/tokenizer directory."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(
        f for f in p.iterdir() if f.is_file() and (f.name in _SMALL_FILES or f.suffix in (".safetensors", ".gguf", ".model"))
    ) if p.is_dir() else []
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            if f.name in _SMALL_FILES or f.stat().st_size <= (4 << 20):
                h.update(fh.read())
            else:
                h.update(str(f.stat().st_size).encode())
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


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
