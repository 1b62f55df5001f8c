"""Streamed access to target-language text.

A corpus is one or more paths: plain text files, directories (walked recursively, sorted, hidden
files skipped), ``.gz`` files, and JSONL files (``.jsonl``/``.jsonl.gz``) whose ``text_field`` holds
the text. Nothing is loaded whole: :func:`iter_texts` yields one document at a time, so a
tokenizer trainer or a fastText pass can consume gigabytes in bounded memory.

Non-UTF-8 bytes are the commonest corruption in scraped text. With ``errors="fail"`` the first one
stops the run with the file and byte offset; with ``errors="skip"`` the offending line is dropped
and counted in :class:`CorpusStats`, so the caller can report how much was lost.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from vocadapt.errors import VocadaptError

T = TypeVar("T")

# Fortune-cookie files (the embedded Russian corpus) separate entries by a line holding "%".
# Any other plain text file is split into documents at blank lines.
_BINARY_SUFFIXES = {".dat", ".u8", ".bin", ".safetensors", ".pt", ".gguf", ".npy"}


@dataclass
class CorpusStats:
    """What a pass over a corpus saw; filled in as the iterator is consumed."""

    files: int = 0
    documents: int = 0
    characters: int = 0
    bytes: int = 0
    skipped_lines: int = 0
    skipped_examples: list[str] = field(default_factory=list)

    def note_skip(self, where: str) -> None:
        self.skipped_lines += 1
        if len(self.skipped_examples) < 5:
            self.skipped_examples.append(where)


def list_files(paths: Sequence[str | Path]) -> list[Path]:
    """Expand files and directories into a sorted list of corpus files; error on a missing path."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise VocadaptError(f"corpus path not found: {p}")
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    if f.suffix.lower() not in _BINARY_SUFFIXES:
                        out.append(f)
        else:
            out.append(p)
    if not out:
        raise VocadaptError(f"corpus is empty: no files under {', '.join(map(str, paths))}")
    return out


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _is_jsonl(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".jsonl") or name.endswith(".jsonl.gz") or name.endswith(".ndjson")


def _decoded_lines(path: Path, errors: str, stats: CorpusStats) -> Iterator[str]:
    """Yield lines of ``path`` as text (newline kept), handling bad UTF-8 line by line."""
    offset = 0
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                where = f"{path}:{lineno} (byte offset {offset + e.start})"
                if errors == "fail":
                    raise VocadaptError(
                        f"non-UTF-8 bytes in {where}; to drop such lines pass --errors skip "
                        "(errors: skip in a recipe, errors='skip' in Python)"
                    ) from None
                stats.note_skip(where)
                line = None
            offset += len(raw)
            if line is not None:
                yield line.replace("\r\n", "\n")


def _documents_from_text(lines: Iterator[str]) -> Iterator[str]:
    """Split plain text into documents at '%' lines (fortune files) or blank lines."""
    buf: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped == "%" or (not stripped and buf and buf[-1].strip() == ""):
            doc = "".join(buf).strip("\n")
            if doc.strip():
                yield doc
            buf = []
            continue
        buf.append(line)
    doc = "".join(buf).strip("\n")
    if doc.strip():
        yield doc


def iter_jsonl_records(path: Path, lines: Iterator[str] | None = None) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line; bad JSON is a one-line error naming the line."""
    if lines is None:
        lines = iter(Path(path).read_text(encoding="utf-8").splitlines())
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise VocadaptError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None


def _documents_from_jsonl(path: Path, lines: Iterator[str], text_field: str) -> Iterator[str]:
    for lineno, record in iter_jsonl_records(path, lines):
        if not isinstance(record, dict) or text_field not in record:
            raise VocadaptError(f"{path}:{lineno}: no field {text_field!r} (set --text-field)")
        text = record[text_field]
        if isinstance(text, str) and text.strip():
            yield text


def iter_texts(
    paths: Sequence[str | Path],
    *,
    text_field: str = "text",
    errors: str = "fail",
    stats: CorpusStats | None = None,
    max_chars: int | None = None,
) -> Iterator[str]:
    """Yield the documents of a corpus one by one.

    ``errors`` is ``"fail"`` (default) or ``"skip"`` for non-UTF-8 lines. ``max_chars`` stops after
    roughly that many characters (whole documents), for quick runs on a slice of a big corpus.
    Raises :class:`VocadaptError` if the corpus yields no text at all.
    """
    if errors not in ("fail", "skip"):
        raise VocadaptError(f"errors must be 'fail' or 'skip', not {errors!r}")
    stats = stats if stats is not None else CorpusStats()
    produced = 0
    for path in list_files(paths):
        stats.files += 1
        lines = _decoded_lines(path, errors, stats)
        docs = _documents_from_jsonl(path, lines, text_field) if _is_jsonl(path) else _documents_from_text(lines)
        for doc in docs:
            stats.documents += 1
            stats.characters += len(doc)
            stats.bytes += len(doc.encode("utf-8"))
            produced += 1
            yield doc
            if max_chars is not None and stats.characters >= max_chars:
                return
    if produced == 0:
        raise VocadaptError(f"corpus is empty: no text in {', '.join(map(str, paths))}")


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    """Lists of up to ``n`` consecutive items (``itertools.batched`` arrived only in 3.12)."""
    buf: list[T] = []
    for item in items:
        buf.append(item)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def read_texts(paths: Sequence[str | Path], **kwargs) -> list[str]:
    """All documents of a (small) corpus as a list; for held-out evaluation text."""
    return list(iter_texts(paths, **kwargs))


def take_chars(texts: Sequence[str], max_chars: int | None) -> list[str]:
    """The leading documents of ``texts`` up to ``max_chars`` characters in all, the last one cut.

    A character budget, unlike a document count, costs the same on any text: 25 fortunes are
    ~5k characters, 25 man pages ~400k. Cutting inside a document is harmless for bits per byte,
    which is a per-byte average."""
    if max_chars is None:
        return list(texts)
    out: list[str] = []
    left = max_chars
    for t in texts:
        if left <= 0:
            break
        out.append(t[:left])
        left -= len(out[-1])
    return out
