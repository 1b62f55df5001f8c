"""Streaming safetensors: read headers and tensors lazily, write files tensor by tensor.

The safetensors format is an 8-byte little-endian header length, a JSON header
(``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}``) and one flat
byte buffer. ``safetensors.torch.save_file`` needs every tensor of a file in memory at once; a
shard of an 8B-70B model is several GB, and vocabulary surgery changes only one or two tensors
in it. So the writer here streams: unchanged tensors are copied as byte ranges from the source
file in 64 MiB chunks, changed tensors are written from memory, and peak memory is bounded by
the changed tensors alone, whatever the size of the rest of the checkpoint.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_CHUNK = 64 << 20


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, dtype string ("BF16"), shape, absolute byte range."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse a safetensors header: ({name: TensorInfo}, metadata).

    A file that is not safetensors, or is cut short (an interrupted download or copy), is a
    one-line :class:`VocadaptError` naming the file, before any tensor is read.
    """
    from vocadapt.errors import VocadaptError

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
        if not 0 < n <= min(size - 8, 100 << 20):
            raise VocadaptError(f"{path}: not a safetensors file (no valid header; {size} bytes)")
        try:
            header = json.loads(fh.read(n))
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise VocadaptError(f"{path}: not a safetensors file (header is not valid JSON: {e})") from None
    base = 8 + n
    meta = header.pop("__metadata__", {}) or {}
    try:
        infos = {
            name: TensorInfo(path, h["dtype"], tuple(h["shape"]), base + h["data_offsets"][0], base + h["data_offsets"][1])
            for name, h in header.items()
        }
    except (KeyError, TypeError, IndexError) as e:
        raise VocadaptError(f"{path}: not a safetensors file (malformed tensor entry: {e})") from None
    end = max((i.end for i in infos.values()), default=base)
    if end > size:
        raise VocadaptError(
            f"{path}: truncated: the header describes {end} bytes but the file has {size} "
            "(an interrupted download or copy? fetch or save it again)"
        )
    return infos, meta


def read_tensor(info: TensorInfo) -> torch.Tensor:
    """Load one tensor into memory (only that tensor's bytes are read)."""
    with open(info.file, "rb") as fh:
        fh.seek(info.begin)
        buf = bytearray(fh.read(info.nbytes))
    if not buf:
        return torch.empty(info.shape, dtype=info.torch_dtype)
    return torch.frombuffer(buf, dtype=info.torch_dtype).reshape(info.shape)


def write_file(path: Path, entries: Iterable[tuple[str, TensorInfo | torch.Tensor]], metadata: dict[str, str] | None = None) -> int:
    """Write a safetensors file from (name, source) pairs; returns the data size in bytes.

    A source is either a :class:`TensorInfo` (bytes copied file to file by the kernel) or an
    in-memory tensor (written through a zero-copy byte view).
    """
    entries = list(entries)
    header: dict[str, object] = {}
    offset = 0
    for name, src in entries:
        if isinstance(src, TensorInfo):
            dtype, shape, size = src.dtype, list(src.shape), src.nbytes
        else:
            dtype, shape, size = _NAMES[src.dtype], list(src.shape), src.numel() * src.element_size()
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8-byte alignment
    # Unbuffered: byte ranges go file to file in the kernel (copy_file_range), in-memory tensors
    # through one write of a zero-copy view; a Python buffer would only add copies.
    with open(path, "wb", buffering=0) as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for _, src in entries:
            if isinstance(src, TensorInfo):
                with open(src.file, "rb", buffering=0) as fh:
                    _copy_range(fh, out, src.begin, src.nbytes)
            else:
                t = src.detach().cpu().contiguous().reshape(-1)
                if t.numel():
                    view = memoryview(t.view(torch.uint8).numpy())  # a view: no copy of the tensor
                    while view:  # a raw write may be partial
                        view = view[out.write(view) :]
    return offset


def _copy_range(src, dst, begin: int, n: int) -> None:
    """Append ``n`` bytes of ``src`` from offset ``begin`` to ``dst`` (both raw files)."""
    try:
        while n:
            done = os.copy_file_range(src.fileno(), dst.fileno(), min(n, 1 << 30), begin)
            if done == 0:
                raise OSError("copy_file_range copied nothing")
            begin, n = begin + done, n - done
        return
    except (AttributeError, OSError):  # not on this OS or file system: copy through memory
        pass
    src.seek(begin)
    while n:
        chunk = src.read(min(_CHUNK, n))
        if not chunk:
            raise OSError(f"{src.name}: unexpected end of file")
        view = memoryview(chunk)
        while view:
            view = view[dst.write(view) :]
        n -= len(chunk)
