"""``focus`` (Dobler & de Melo 2023): sparsemax over overlapping tokens in an auxiliary space.

1. Auxiliary vectors for target *tokens*: fastText CBOW (dim 100, 3 epochs, minCount 10)
   trained on target-language text tokenized by the target tokenizer (cached by hash), or a
   given model (``--aux-vectors``, e.g. from ``vocadapt vectors train``).
2. Anchors: target tokens copied from the source (canonical overlap) that have an aux vector.
3. A new token with an aux vector gets w = sparsemax(cos(aux(new), aux(anchors))) over *all*
   anchors and the row sum_i w_i E_s[anchor_i]; without an aux vector, the random fallback.

The weights do not depend on the matrix, so they are computed once (in blocks of new tokens,
never a dense new x anchors matrix) and reused for the untied head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vocadapt.errors import VocadaptError
from vocadapt.init.context import InitContext, Rows
from vocadapt.init.registry import register


@dataclass
class FocusConfig:
    aux_corpus: list[str] | None = field(
        default=None, metadata={"help": "target-language text (files/folders) to train the auxiliary fastText on"}
    )
    aux_vectors: str | None = field(
        default=None, metadata={"help": "ready auxiliary token vectors (fastText .bin from `vocadapt vectors train`, or any vector file keyed by token strings)"}
    )
    dim: int = field(default=100, metadata={"help": "fastText dimension when training"})
    epochs: int = field(default=3, metadata={"help": "fastText epochs when training"})
    min_count: int = field(default=10, metadata={"help": "fastText minCount: rarer tokens get no aux vector (fallback)"})
    threads: int = field(default=1, metadata={"help": "fastText training threads; 1 (default) is reproducible, more is faster but not"})

    def __post_init__(self) -> None:
        if self.aux_corpus is not None and self.aux_vectors is not None:
            raise ValueError("give either aux_corpus or aux_vectors, not both")
        if min(self.dim, self.epochs, self.min_count, self.threads) < 1:
            raise ValueError("dim, epochs, min_count and threads must be >= 1")


@dataclass
class FocusPlan:
    """Sparse weights for every new token: rows sum_j weights[i, j] * E_s[index[i, j]]."""

    index: torch.Tensor  # (n_new, k) source ids
    weights: torch.Tensor  # (n_new, k) float32, sparsemax output (zeros pad the support)
    ok: torch.Tensor  # (n_new,) bool
    stats: dict[str, int]


def aux_token_vectors(ctx: InitContext, config: FocusConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(target_vocab x dim) auxiliary vectors and a mask of the target ids that have one."""
    from vocadapt.vectors.io import load_vectors
    from vocadapt.vectors.train import token_key, train_token_vectors

    if config.aux_vectors:
        path = config.aux_vectors
    elif config.aux_corpus:
        path = train_token_vectors(
            config.aux_corpus, ctx.target_tokenizer, dim=config.dim, epochs=config.epochs,
            min_count=config.min_count, threads=config.threads, seed=ctx.seed,
        )
    else:
        raise VocadaptError(
            "focus needs auxiliary token vectors: give --aux-corpus TEXT... (target-language text; a fastText "
            "model is trained on it) or --aux-vectors FILE (from `vocadapt vectors train`)"
        )
    wv = load_vectors(path)
    key_to_id: dict[str, int] = {}
    for piece, tid in ctx.target_tokenizer.get_vocab().items():
        key_to_id.setdefault(token_key(piece), tid)
    n = ctx.alignment.target_size  # the target's vocab_size
    out = torch.zeros(n, wv.dim)
    has = torch.zeros(n, dtype=torch.bool)
    rows, ids = [], []
    for i, w in enumerate(wv.words):
        tid = key_to_id.get(w)
        if tid is not None and tid < n and not has[tid]:
            rows.append(i)
            ids.append(tid)
            has[tid] = True
    if not ids:
        raise VocadaptError(
            f"auxiliary vectors {path} cover none of the target tokens: were they trained on text tokenized by this tokenizer?"
        )
    out[torch.as_tensor(ids)] = torch.from_numpy(np.asarray(wv.matrix[np.asarray(rows)], dtype=np.float32))
    has &= out.abs().sum(1) > 0  # fastText gives zeros when nothing is known
    return out, has


def focus_plan(ctx: InitContext, config: FocusConfig) -> FocusPlan:
    from vocadapt.init._similarity import check_signal, sparsemax_weights

    a = ctx.alignment
    aux, has = aux_token_vectors(ctx, config)
    copied = a.copied_ids
    ordinary = np.asarray([a.how[t] in ("canonical", "mapping") for t in copied], dtype=bool)
    anchors = copied[ordinary] if len(copied) else copied
    anchors = anchors[has[torch.as_tensor(anchors, dtype=torch.long)].numpy()] if len(anchors) else anchors
    if len(anchors) == 0:
        raise VocadaptError(
            f"focus needs anchors (target tokens shared with the source that have an auxiliary vector): the target "
            f"vocabulary shares {int(ordinary.sum())} ordinary tokens with the source, none with an aux vector; "
            "use a method that needs no overlap, e.g. --method mean or --method wechsel"
        )
    new = torch.as_tensor(ctx.new_ids, dtype=torch.long)
    ok = has[new] if len(new) else torch.zeros(0, dtype=torch.bool)
    query = new[ok]
    anchor_t = torch.as_tensor(anchors, dtype=torch.long)
    idx, w = sparsemax_weights(aux[query], aux[anchor_t])
    anchor_src = torch.as_tensor(a.copy_from[anchors], dtype=torch.long)
    index = torch.zeros(len(new), idx.shape[1], dtype=torch.long)
    weights = torch.zeros(len(new), idx.shape[1])
    index[ok] = anchor_src[idx]
    weights[ok] = w
    check_signal("focus", len(new), ok, "no auxiliary vector: token rarer than min_count in the aux corpus")
    stats = {"anchors": len(anchors), "new_with_aux": int(ok.sum()), "mean_support": float((w > 0).sum(1).float().mean()) if len(w) else 0.0}
    return FocusPlan(index, weights, ok, stats)


@register("focus", config=FocusConfig, paper="Dobler & de Melo 2023, FOCUS (EMNLP)", extras=("vectors",))
def focus_init(ctx: InitContext, source: torch.Tensor, config: FocusConfig) -> Rows:
    """Sparsemax-weighted mix of overlapping tokens, similarity from target-corpus fastText (FOCUS)."""
    from vocadapt.init._similarity import plan_rows

    plan: FocusPlan = ctx.cached("focus/plan", lambda: focus_plan(ctx, config))
    return plan_rows(source, plan.index, plan.weights, plan.ok)
