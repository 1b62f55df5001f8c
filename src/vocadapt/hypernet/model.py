"""The HyperOFA hypernetwork and its loss.

word ids (B, L) -> frozen word-vector table (B, L, dim) -> BiLSTM (packed, so padding is never
read) -> [final forward state ; final backward state] (B, 2H) -> Linear(2H, 2k') -> GELU ->
Dropout -> Linear(2k', k') with k' = k output coordinates (or 2k when the untied head's
coordinates are predicted too: input block first, then head block).

The network predicts *normalized* coordinates: each target block divided by its mean |value|
(``scale``, a buffer saved with the weights). So the L1 term is HyperOFA's
L1(pred, target) / mean|target| and the output layer works at unit scale even though the
SVD coordinates U_k are tiny (each column has norm 1 over the whole vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class NetShape:
    """Architecture: what the saved config must hold to rebuild the network."""

    word_dim: int
    out_dim: int  # k, or 2k with head coordinates (blocks of ``block`` columns)
    block: int  # columns per target block (k)
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.4


class HyperNet(nn.Module):
    """Word set -> normalized OFA coordinates. ``table`` is frozen and not part of the saved weights."""

    def __init__(self, shape: NetShape, table: torch.Tensor | None = None):
        super().__init__()
        self.shape = shape
        t = table if table is not None else torch.zeros(1, shape.word_dim)
        self.table = nn.Embedding.from_pretrained(t.float(), freeze=True)
        self.lstm = nn.LSTM(
            shape.word_dim, shape.hidden, num_layers=shape.layers, batch_first=True, bidirectional=True,
            dropout=shape.dropout if shape.layers > 1 else 0.0,
        )
        self.mlp = nn.Sequential(
            nn.Linear(2 * shape.hidden, 2 * shape.out_dim), nn.GELU(), nn.Dropout(shape.dropout),
            nn.Linear(2 * shape.out_dim, shape.out_dim),
        )
        self.register_buffer("scale", torch.ones(shape.out_dim))  # mean |target| per column's block

    def set_table(self, table: torch.Tensor) -> None:
        """Swap in the word vectors of another vocabulary's word sets (e.g. the target's)."""
        self.table = nn.Embedding.from_pretrained(table.float().to(self.scale.device), freeze=True)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, L) word ids, (B,) lengths >= 1 -> (B, out_dim) normalized coordinates."""
        x = self.table(words)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        # h: (layers * 2, B, H); the last layer's forward and backward final states
        return self.mlp(torch.cat([h[-2], h[-1]], dim=-1))

    def coordinates(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, out_dim) coordinates in the SVD space (normalization undone)."""
        return self(words, lengths) * self.scale

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights to save: everything but the word-vector table."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("table.")}


@dataclass
class LossWeights:
    infonce: float = 0.1
    l1: float = 0.9
    temperature: float = 0.25


def set_loss(pred: torch.Tensor, target: torch.Tensor, block: int, w: LossWeights) -> torch.Tensor:
    """(B,) per-item loss: w.infonce * InfoNCE + w.l1 * mean |pred - target| (normalized units).

    InfoNCE: cross-entropy of cos(pred_i, target_j) / T over the batch, the true target as the
    class (in-batch negatives); averaged over target blocks (input, head) so each space counts
    the same. With one item there are no negatives and the term is 0.
    """
    l1 = (pred - target).abs().mean(dim=1)
    if w.infonce == 0 or len(pred) < 2:
        return w.l1 * l1
    nce = torch.zeros_like(l1)
    n_blocks = pred.shape[1] // block
    labels = torch.arange(len(pred), device=pred.device)
    for b in range(n_blocks):
        p = F.normalize(pred[:, b * block : (b + 1) * block], dim=1)
        t = F.normalize(target[:, b * block : (b + 1) * block], dim=1)
        nce = nce + F.cross_entropy(p @ t.T / w.temperature, labels, reduction="none") / n_blocks
    return w.infonce * nce + w.l1 * l1
