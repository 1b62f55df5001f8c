"""``mean`` (FVT): a new token's row is the mean of the rows of its source decomposition.

Fast Vocabulary Transfer (Gee et al. 2022) and the initialization of the LEP paper (Tikhomirov
& Chernyshev 2024). The decomposition is the token's *text* re-encoded with the source tokenizer
(see :mod:`vocadapt.tokenizer.align`), done separately for the input embedding and the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vocadapt.init.context import InitContext, Rows, combine_rows
from vocadapt.init.registry import register


@dataclass
class MeanConfig:
    weighting: str = field(
        default="uniform",
        metadata={"help": "uniform: plain mean of the pieces; length: weight pieces by their byte length"},
    )

    def __post_init__(self) -> None:
        if self.weighting not in ("uniform", "length"):
            raise ValueError(f"weighting must be 'uniform' or 'length', not {self.weighting!r}")


@register("mean", config=MeanConfig, paper="Gee et al. 2022, FVT; Tikhomirov & Chernyshev 2024, LEP")
def mean_init(ctx: InitContext, source: torch.Tensor, config: MeanConfig) -> Rows:
    """Mean of the source rows of each new token's decomposition (FVT)."""
    pieces = ctx.decompositions
    if config.weighting == "uniform":
        return combine_rows(source, pieces)
    lengths = ctx.cached("source_piece_bytes", lambda: _piece_bytes(ctx))
    weights = []
    for ids in pieces:
        w = [float(max(lengths[i], 1)) for i in ids]
        s = sum(w) or 1.0
        weights.append([x / s for x in w])
    return combine_rows(source, pieces, weights)


def _piece_bytes(ctx: InitContext) -> list[int]:
    from vocadapt.tokenizer.canonical import canonical_vocab

    return [len(t.surface()) if t is not None else 1 for t in canonical_vocab(ctx.source_tokenizer)]
