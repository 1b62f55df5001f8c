"""What every init method receives (:class:`InitContext`) and returns (:class:`Rows`).

The context is built once per run and holds everything a method would otherwise re-derive: both
tokenizers, the vocabulary alignment (copy map, new ids, decompositions), the seed, and a memo
for work that does not depend on which matrix is being initialized (FOCUS's sparse weights are
computed for the input embedding and reused for the untied head).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vocadapt.tokenizer.align import Alignment

BLOCK_ROWS = 4096  # rows per block when gathering source rows: bounds temporary memory
BAG_ELEMENTS = 1 << 24  # source values converted to float32 at a time by weighted_row_sums (64 MB)


@dataclass
class Rows:
    """A method's answer for ``ctx.new_ids``.

    ``values``: (m, d) float32; row i is for target id ``ctx.new_ids[where[i]]``, or for
    ``ctx.new_ids[i]`` when ``where`` is None (then m = n_new).
    ``ok``: (n_new,) bool; rows with ``ok[i] == False`` had no signal and get the seeded random
    fallback from the framework (and are counted as such in the provenance file). A method that
    has rows for only some new tokens returns just those (``where``, ascending): FOCUS with a
    small auxiliary corpus computes a few thousand of 128k, and float32 rows for the others would
    cost a vocabulary-sized matrix of memory and time for nothing.
    """

    values: torch.Tensor
    ok: torch.Tensor
    where: torch.Tensor | None = None

    def __post_init__(self) -> None:
        m = self.values.shape[0] if self.values.dim() == 2 else -1
        if self.where is None:
            good = self.values.dim() == 2 and self.ok.shape == (m,)
        else:
            good = self.values.dim() == 2 and self.ok.dim() == 1 and self.where.shape == (m,)
        if not good:
            raise ValueError(f"Rows: values {tuple(self.values.shape)}, ok {tuple(self.ok.shape)}"
                             f"{'' if self.where is None else f' and where {tuple(self.where.shape)}'} disagree")

    @property
    def positions(self) -> torch.Tensor:
        """(m,) long: the position in ``new_ids`` of each row of ``values``."""
        return torch.arange(len(self.values)) if self.where is None else self.where.long()

    @classmethod
    def subset(cls, values: torch.Tensor, ok: torch.Tensor) -> Rows:
        """Rows for the new tokens marked in ``ok`` (n_new,), ``values`` one row per True, in order."""
        return cls(values, ok.clone(), torch.nonzero(ok).flatten())


@dataclass
class InitContext:
    source_tokenizer: Any
    target_tokenizer: Any
    alignment: Alignment
    seed: int = 0
    matrix: str = "input"  # "input" or "output": which matrix the current call initializes
    source_model: Path | None = None
    target_dir: Path | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)  # what a method reports; written to the provenance

    @property
    def new_ids(self) -> np.ndarray:
        return self.alignment.new_ids

    @property
    def decompositions(self) -> list[list[int]]:
        """Source ids for each of ``new_ids`` (same order; [] when there is none)."""
        return [self.alignment.decompositions.get(int(t), []) for t in self.new_ids]

    def generator(self, salt: str) -> torch.Generator:
        """A local generator seeded from (seed, salt): never touches the global RNG state."""
        digest = hashlib.sha256(f"{self.seed}/{salt}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute once per run (across input and output matrices), then reuse."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


def finite_rows(block: torch.Tensor) -> torch.Tensor:
    """(rows,) bool: which rows of a 2-D block hold only finite values.

    A NaN or inf anywhere makes its row's sum non-finite, so one float32 row-sum pass (a
    reduction, much cheaper than an elementwise ``isfinite``) clears almost every row; only rows
    whose sum is not finite (a bad value, or an overflowing sum of finite ones) are checked
    element by element.
    """
    ok = torch.isfinite(block.sum(1, dtype=torch.float32))
    if not bool(ok.all()):
        bad = torch.nonzero(~ok).flatten()
        ok[bad] = torch.isfinite(block[bad]).all(1)
    return ok


def column_stats(source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std (float32, shape (d,)) of the rows of ``source``, in blocks."""
    total = torch.zeros(source.shape[1], dtype=torch.float64)
    sq = torch.zeros_like(total)
    for start in range(0, source.shape[0], BLOCK_ROWS):
        block = source[start : start + BLOCK_ROWS].to(torch.float64)
        total += block.sum(0)
        sq += (block * block).sum(0)
    n = max(source.shape[0], 1)
    mean = total / n
    var = (sq / n - mean * mean).clamp_min(0.0)
    return mean.float(), var.sqrt().float()


def random_rows(
    source: torch.Tensor, n: int, generator: torch.Generator, stats: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """(n, d) float32 rows drawn from N(mean, std) of ``source``, per dimension.

    ``stats``: the (mean, std) of :func:`column_stats`, when the caller already has them.
    """
    mean, std = stats if stats is not None else column_stats(source)
    return torch.cat([b for _, b in random_row_blocks(n, mean, std, generator)]) if n else torch.zeros(0, source.shape[1])


def random_row_blocks(
    n: int, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator, block: int = BLOCK_ROWS
) -> Iterator[tuple[int, torch.Tensor]]:
    """``torch.randn(n, d, generator=generator) * std + mean``, the same values, as (start, rows)
    blocks of ``block`` rows, so that 100k fallback rows never need a second vocabulary-sized matrix.

    Identical to the one-call draw: torch's CPU ``randn`` on a contiguous float32 tensor of at
    least 16 values draws one uniform per value in order and transforms them 16 at a time
    (Box-Muller), redrawing the last 16 when the size is not a multiple of 16. Blocks of a
    multiple of 16 values (``block`` a multiple of 16 rows) consume the stream exactly as the
    whole does, and the last block takes the remainder (never fewer than ``block`` rows), so it
    repeats the whole's tail rule. ``test_random_row_blocks_match_one_draw`` holds this to torch.
    """
    if block % 16:
        raise ValueError(f"block must be a multiple of 16 rows, not {block}")
    d = mean.shape[0]
    start = 0
    while start < n:
        size = n - start if n - start < 2 * block else block
        yield start, torch.randn(size, d, generator=generator).mul_(std).add_(mean)
        start += size


def weighted_row_sums(
    source: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, n: int
) -> torch.Tensor:
    """(n, d) float32 with ``out[rows[e]] += weights[e] * source[ids[e]]`` for every entry e.

    The one kernel behind every "row = weighted sum of source rows" method (mean, FOCUS,
    WECHSEL, OFA). Entries are grouped by output row and summed by ``embedding_bag`` (one fused
    gather-multiply-add pass, float32) over the distinct source rows converted to float32 a
    block of columns at a time, so memory stays bounded (``BAG_ELEMENTS`` converted values)
    whatever the vocabulary and however many rows are mixed. Agrees with gather-then-
    ``index_add_`` to float32 rounding (the fused multiply-add rounds once, not twice).
    """
    d = source.shape[1]
    out = torch.zeros(n, d, dtype=torch.float32)
    if len(ids) == 0 or n == 0:
        return out
    order = torch.argsort(rows, stable=True)  # bags must be contiguous; keep each row's entry order
    rows, ids, weights = rows[order], ids[order], weights[order].float()
    uniq, local = torch.unique(ids, return_inverse=True)
    offsets = torch.zeros(n, dtype=torch.long)
    offsets[1:] = torch.bincount(rows, minlength=n)[:-1].cumsum(0)
    width = max(1, min(d, BAG_ELEMENTS // max(len(uniq), 1)))
    for c in range(0, d, width):
        block = source[:, c : c + width].index_select(0, uniq).float()
        out[:, c : c + width] = torch.nn.functional.embedding_bag(
            local, block, offsets, mode="sum", per_sample_weights=weights
        )
    return out


def combine_rows(
    source: torch.Tensor,
    indices: Sequence[Sequence[int]],
    weights: Sequence[Sequence[float]] | None = None,
) -> Rows:
    """Rows that are weighted sums of source rows: ``out[i] = sum_j w[i][j] * source[indices[i][j]]``.

    ``weights=None`` means a plain mean. Empty index lists give ``ok=False``.
    """
    lengths = np.fromiter((len(ix) for ix in indices), dtype=np.int64, count=len(indices))
    ids = np.fromiter((int(j) for ix in indices for j in ix), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(indices)), lengths)
    if weights is None:
        w = 1.0 / np.repeat(np.maximum(lengths, 1), lengths)
    else:
        w = np.fromiter((float(x) for ws in weights for x in ws), dtype=np.float64, count=int(lengths.sum()))
    out = weighted_row_sums(source, torch.from_numpy(rows), torch.from_numpy(ids), torch.from_numpy(w).float(), len(indices))
    return Rows(out, torch.from_numpy(lengths > 0))
