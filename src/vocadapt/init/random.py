"""``random``: every new row from N(mean, std) of the source rows, per dimension.

The baseline every method falls back to. Drawing from the source distribution (rather than
N(0, 0.02)) keeps new rows at the scale the model's first layer norm expects.
"""

from __future__ import annotations

import torch

from vocadapt.init.context import InitContext, Rows
from vocadapt.init.registry import NoConfig, register


@register("random", paper="baseline (per-dimension normal, as in FOCUS/WECHSEL fallbacks)")
def random_init(ctx: InitContext, source: torch.Tensor, config: NoConfig) -> Rows:
    """Per-dimension N(mean, std) of the source rows for every new token."""
    n = len(ctx.new_ids)
    # ok=False hands every row to the framework's seeded fallback, which is exactly this method.
    # No rows at all: a vocabulary of zeros would only be overwritten.
    return Rows.subset(torch.zeros(0, source.shape[1]), torch.zeros(n, dtype=torch.bool))
