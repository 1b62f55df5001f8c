"""How well the hypernetwork reconstructs source rows it never saw, next to OFA.

For each validation token (held out of training) and each predicted matrix:

* ``hyperofa``: the network's coordinates times P;
* ``ofa``: OFA's prediction for the same token as if it were new — its token vector (mean of its
  words' vectors), cosine to the *training* tokens' vectors, top-k, softmax(sim / T), convex
  combination of their coordinates, times P (:func:`vocadapt.init._similarity.topk_softmax`);
* ``rank_k``: the token's own coordinates times P — the best any method in the factorized space
  can reach (the SVD truncation error).

Metrics against the true rows: mean cosine and mean absolute error per value (L1 / d), and that
error relative to mean |row value|. This is the paper's claim made measurable: a hypernetwork
is not limited to convex combinations of k known rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

OFA_TOP_K, OFA_TEMPERATURE = 10, 0.1  # init.ofa's defaults


def row_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    cos = torch.nn.functional.cosine_similarity(pred, true, dim=1)
    l1 = (pred - true).abs().mean(1)
    return {"cosine": float(cos.mean()), "l1": float(l1.mean()), "l1_relative": float(l1.mean() / true.abs().mean())}


@torch.no_grad()
def reconstruction_report(model, data, config) -> dict[str, Any]:
    """{"tokens": n_val, matrix: {"hyperofa": metrics, "ofa": metrics, "rank_k": metrics}}."""
    from vocadapt.hypernet.data import validation_batches
    from vocadapt.init._similarity import sparse_combine, topk_softmax

    was = model.training
    model.eval()
    val = data.val
    if len(val) == 0:
        return {"tokens": 0}
    dev = next(model.parameters()).device
    coords = torch.zeros(len(val), model.shape.out_dim)
    pos = {int(t): i for i, t in enumerate(val)}
    for batch in validation_batches(data.sets, val, config):
        c = model.coordinates(batch.words.to(dev), batch.lengths).float().cpu()
        coords[[pos[int(t)] for t in batch.tokens]] = c
    model.train(was)
    # OFA: token vectors = mean word vector of each token's full word set
    table = torch.from_numpy(data.sets.table)

    def token_vectors(tokens: np.ndarray) -> torch.Tensor:
        out = torch.zeros(len(tokens), table.shape[1])
        for i, t in enumerate(tokens):
            out[i] = table[torch.from_numpy(data.sets.words(int(t)))].mean(0)
        return out

    idx, w = topk_softmax(token_vectors(val), token_vectors(data.train), OFA_TOP_K, OFA_TEMPERATURE)
    train_ids = torch.from_numpy(data.train)
    report: dict[str, Any] = {"tokens": len(val), "train_tokens": len(data.train), "rank": data.k}
    for b, m in enumerate(data.matrices):
        block = slice(b * data.k, (b + 1) * data.k)
        f = data.coords[:, block]
        p = data.primitives[m]
        true = data.rows[m][torch.from_numpy(val)]
        ofa_coords = sparse_combine(f[train_ids], idx, w)
        pred = coords[:, block] @ p
        report[m] = {"ofa": row_metrics(ofa_coords @ p, true), "rank_k": row_metrics(f[torch.from_numpy(val)] @ p, true)}
        if data.base is not None:
            # the FVT mean of the leave-one-out pieces: the baseline the residual has to improve
            base = data.base[m][torch.from_numpy(val)]
            pred = pred + base
            report[m]["fvt_mean"] = row_metrics(base, true)
        report[m]["hyperofa"] = row_metrics(pred, true)
    return report


def format_report(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"reconstruction of {report.get('tokens', 0)} held-out source tokens (rank {report.get('rank')}):"]
    for m in ("input", "output"):
        if m in report:
            for name in ("hyperofa", "ofa", "fvt_mean", "rank_k"):
                if name not in report[m]:
                    continue
                r = report[m][name]
                lines.append(f"  {m:6s} {name:9s} cosine {r['cosine']:.4f}  L1 {r['l1']:.5f}  (relative {r['l1_relative']:.3f})")
    return "\n".join(lines)
