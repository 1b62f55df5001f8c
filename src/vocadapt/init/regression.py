"""``regression`` (Lee & Hur): a linear map from a helper's token features into the LLM's space.

The helper is a language-specific model whose tokenizer becomes the LLM's new tokenizer (it is
the init's target, ``vocadapt init LLM HELPER_DIR OUT --method regression``). Its input
embeddings are the features X (|V_t| x p) of the target tokens. Common tokens C (canonical
match, the alignment's copied ids) keep the LLM's rows; on them we fit, in float64,

    Y_C ~ (X_C - mean_x) W + b          W: p x d, b = mean_y (an intercept, not penalized)

and give every other token ``(X_v - mean_x) W + b``. The intercept is there because embedding
matrices are not centred (LLM rows share a large common direction); without it the map has to
spend a feature direction rebuilding that mean, and a ridge would shrink it. Each matrix gets
its own map: the untied head of the LLM is fitted from the helper's untied head when it has one,
else from its input embeddings.

Ridge: ``--ridge VALUE`` adds ``VALUE x mean eigenvalue of X_c^T X_c`` to the normal equations
(0: plain least squares, the paper's); ``--ridge auto`` (default) fits on 90% of C (seeded
split), picks the value with the lowest squared error on the other 10%, and refits on all of C.
The solve goes through the eigendecomposition of the p x p Gram matrix, accumulated in blocks,
so the whole ridge path costs one decomposition and memory stays p x (p + d).

``--base none`` (default) is the paper's plain map; with a helper model it is the best init we
measured (docs/regression.md). ``--base mean`` fits the *residual* over the FVT mean instead:
Y_C - mean(pieces) ~ X W + b, new rows = mean(pieces of v) + X_v W + b, so a large ridge falls
back to ``mean``; it is the better choice for weak features that miss many tokens (fastText
below min-count). A common token's own decomposition is itself, so its training base is built
from its sub-pieces (the source BPE merge that produced it, else its text split in two), the
same kind of multi-piece mean a new token gets.

Features without a helper model: ``--features FILE`` (static vectors keyed by target token
strings, e.g. from ``vocadapt vectors train``) or ``--features-corpus TEXT...`` (fastText
trained on target text tokenized by the target tokenizer, FOCUS's path), so regression works
with any target tokenizer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vocadapt.errors import VocadaptError
from vocadapt.init.context import InitContext, Rows, combine_rows
from vocadapt.init.registry import register

log = logging.getLogger("vocadapt")

MIN_COMMON = 20  # fewer shared tokens than this cannot say anything about a map
RIDGE_GRID = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1e3, 1e4)  # 1e4: W ~ 0, i.e. the base alone
_BLOCK = 8192


@dataclass
class RegressionConfig:
    ridge: str = field(default="auto", metadata={"help": "auto (held-out choice on the common tokens) or a value >= 0, relative to the mean eigenvalue of X^T X (0: plain least squares)"})
    base: str = field(default="none", metadata={"help": "none: the paper's plain map; mean: fit the residual over the FVT mean of the pieces (falls back to mean where features are missing)"})
    features: str | None = field(default=None, metadata={"help": "static vectors for the target tokens, keyed by token strings (e.g. `vocadapt vectors train`), instead of a helper model; use with --fallback mean"})
    features_corpus: list[str] | None = field(default=None, metadata={"help": "target-language text to train fastText token vectors on (FOCUS's path), instead of a helper model; use with --fallback mean"})
    dim: int = field(default=100, metadata={"help": "fastText dimension when training on --features-corpus"})
    epochs: int = field(default=3, metadata={"help": "fastText epochs when training"})
    min_count: int = field(default=10, metadata={"help": "fastText minCount: rarer tokens get no features (fallback)"})
    threads: int = field(default=1, metadata={"help": "fastText training threads; 1 (default) is reproducible"})
    intercept: bool = field(default=True, metadata={"help": "fit the offset b (unpenalized); off: a token with average features gets exactly the base (the FVT mean with --base mean, 0 with none)"})
    holdout: float = field(default=0.1, metadata={"help": "fraction of the common tokens held out to choose the ridge and report R^2 / cosine"})

    def __post_init__(self) -> None:
        if self.ridge != "auto":
            try:
                value = float(self.ridge)
            except ValueError:
                raise ValueError(f"ridge must be 'auto' or a number >= 0, not {self.ridge!r}") from None
            if not value >= 0:
                raise ValueError(f"ridge must be 'auto' or a number >= 0, not {self.ridge!r}")
        if self.base not in ("mean", "none"):
            raise ValueError(f"base must be 'mean' or 'none', not {self.base!r}")
        if self.features and self.features_corpus:
            raise ValueError("give either features or features_corpus, not both")
        if not 0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), not {self.holdout}")
        if min(self.dim, self.epochs, self.min_count, self.threads) < 1:
            raise ValueError("dim, epochs, min_count and threads must be >= 1")


# ------------------------------------------------------------------------------------------------
# Features
# ------------------------------------------------------------------------------------------------


def target_features(ctx: InitContext, config: RegressionConfig, matrix: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(|V_t| x p float32 features, (|V_t|,) bool mask of tokens that have them, description)."""
    n = ctx.alignment.target_size
    if config.features or config.features_corpus:
        from vocadapt.init.focus import FocusConfig, aux_token_vectors

        aux = FocusConfig(
            aux_corpus=config.features_corpus, aux_vectors=config.features, dim=config.dim,
            epochs=config.epochs, min_count=config.min_count, threads=config.threads,
        )
        x, has = ctx.cached("regression/vectors", lambda: aux_token_vectors(ctx, aux))
        what = f"vectors {config.features}" if config.features else "fastText on --features-corpus"
        return x, has, what
    from vocadapt.io.checkpoint import Checkpoint

    if ctx.target_dir is None or not (ctx.target_dir / "config.json").is_file():
        raise VocadaptError(
            "regression needs features for the target tokens: give a helper model (HF directory or .gguf whose "
            "tokenizer is the target) as TARGET, or --features FILE / --features-corpus TEXT...; "
            "`vocadapt helper train` makes a helper"
        )
    helper = ctx.cached("regression/helper", lambda: Checkpoint(ctx.target_dir))
    name = helper.vocab.output if matrix == "output" and not helper.vocab.tied and helper.vocab.output else helper.vocab.input
    x = ctx.cached(f"regression/helper/{name}", lambda: helper.read(name))
    if x.shape[0] < n:
        raise VocadaptError(f"helper {ctx.target_dir}: {name!r} has {x.shape[0]} rows but its tokenizer has {n} ids")
    x = x[:n].float()
    has = torch.isfinite(x).all(1) & (x.abs().sum(1) > 0)
    return x, has, f"helper {'head' if name != helper.vocab.input else 'input embedding'} ({name})"


def common_tokens(ctx: InitContext) -> np.ndarray:
    """Target ids of ordinary tokens copied from the source (canonical match or explicit mapping)."""
    a = ctx.alignment
    return np.asarray([t for t in a.copied_ids if a.how[t] in ("canonical", "mapping")], dtype=np.int64)


def sub_pieces(ctx: InitContext, target_ids: np.ndarray) -> list[list[int]]:
    """Source ids that spell each common token *without* the token itself (see
    :func:`vocadapt.tokenizer.align.leave_one_out_pieces`)."""
    from vocadapt.tokenizer.align import leave_one_out_pieces

    a = ctx.alignment
    return leave_one_out_pieces(ctx.source_tokenizer, [int(a.copy_from[t]) for t in target_ids],
                                [a.target_tokens[int(t)] for t in target_ids])


# ------------------------------------------------------------------------------------------------
# Ridge regression through the Gram matrix
# ------------------------------------------------------------------------------------------------


@dataclass
class RidgePath:
    """Centred least squares on (X, Y), solvable for any ridge from one p x p eigendecomposition."""

    mean_x: torch.Tensor  # (p,)
    mean_y: torch.Tensor  # (d,)
    vecs: torch.Tensor  # (p, p) eigenvectors of Xc^T Xc
    evals: torch.Tensor  # (p,)
    rotated: torch.Tensor  # (p, d) vecs^T Xc^T Yc
    n: int

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, intercept: bool = True) -> RidgePath:
        x64, n = x.double(), x.shape[0]
        mean_x = x64.mean(0)
        mean_y = torch.zeros(y.shape[1], dtype=torch.float64)
        if intercept:
            for s in range(0, n, _BLOCK):
                mean_y += y[s : s + _BLOCK].double().sum(0)
            mean_y /= max(n, 1)
        gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        xty = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
        for s in range(0, n, _BLOCK):
            xc = x64[s : s + _BLOCK] - mean_x
            gram += xc.T @ xc
            xty += xc.T @ (y[s : s + _BLOCK].double() - mean_y)
        evals, vecs = torch.linalg.eigh(gram)
        return cls(mean_x, mean_y, vecs, evals.clamp_min(0), vecs.T @ xty, n)

    def scale(self) -> float:
        """Mean eigenvalue of Xc^T Xc: the unit of the relative ridge."""
        return float(self.evals.mean().clamp_min(1e-30))

    def weights(self, ridge: float) -> torch.Tensor:
        """(p, d) float64 W for a relative ridge (0: minimum-norm least squares)."""
        lam = ridge * self.scale()
        denom = self.evals + lam
        keep = denom > self.evals.max() * 1e-12  # drop null directions of a rank-deficient X
        inv = torch.where(keep, 1.0 / denom.clamp_min(1e-300), torch.zeros_like(denom))
        return self.vecs @ (self.rotated * inv[:, None])

    def predict(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (x.double() - self.mean_x) @ w + self.mean_y


def fit_quality(pred: torch.Tensor, true: torch.Tensor) -> tuple[float, float]:
    """(R^2 over all coordinates, mean row cosine) of predicted vs true rows."""
    pred, true = pred.double(), true.double()
    sse = float(((pred - true) ** 2).sum())
    sst = float(((true - true.mean(0)) ** 2).sum())
    cos = torch.nn.functional.cosine_similarity(pred, true, dim=1)
    return 1.0 - sse / max(sst, 1e-30), float(cos.mean())


def choose_ridge(
    x: torch.Tensor, y: torch.Tensor, base: torch.Tensor | None, config: RegressionConfig, generator: torch.Generator
) -> tuple[float, dict[str, Any]]:
    """The ridge to use and held-out statistics (fitted on a seeded split of the common tokens).

    ``y`` is the regression target (the residual over ``base`` when there is one); R^2 and
    cosine are reported on the *full* rows (base + prediction vs the LLM's row).
    """
    n, p = x.shape
    n_val = max(2, int(round(config.holdout * n)))
    perm = torch.randperm(n, generator=generator)
    val, tr = perm[:n_val], perm[n_val:]
    path = RidgePath.fit(x[tr], y[tr], config.intercept)
    grid = RIDGE_GRID if config.ridge == "auto" else (float(config.ridge),)
    if config.ridge == "auto" and len(tr) <= p:
        grid = tuple(r for r in grid if r > 0)  # least squares is underdetermined: some ridge is needed
    errors = {}
    for r in grid:
        errors[r] = float(((path.predict(x[val], path.weights(r)) - y[val].double()) ** 2).sum())
    ridge = min(errors, key=errors.get)
    pred = path.predict(x[val], path.weights(ridge))
    true = y[val].double()
    stats: dict[str, Any] = {"heldout": n_val, "train": len(tr)}
    if base is not None:
        b = base[val].double()
        stats["r2_heldout"], stats["cosine_heldout"] = fit_quality(pred + b, true + b)
        stats["base_r2_heldout"], stats["base_cosine_heldout"] = fit_quality(b, true + b)
    else:
        stats["r2_heldout"], stats["cosine_heldout"] = fit_quality(pred, true)
    if config.ridge == "auto":
        stats["ridge_path"] = {f"{r:g}": round(e / max(float((true ** 2).sum()), 1e-30), 6) for r, e in errors.items()}
    return ridge, stats


# ------------------------------------------------------------------------------------------------
# The method
# ------------------------------------------------------------------------------------------------


@register("regression", config=RegressionConfig, paper="Lee & Hur 2024, linearized embedding transfer")
def regression_init(ctx: InitContext, source: torch.Tensor, config: RegressionConfig) -> Rows:
    """Least-squares map from a helper model's (or static) token features, fitted on shared tokens."""
    a = ctx.alignment
    x, has, what = target_features(ctx, config, ctx.matrix)
    p = x.shape[1]
    common_all = common_tokens(ctx)
    usable = has[torch.as_tensor(common_all, dtype=torch.long)].numpy() if len(common_all) else np.zeros(0, dtype=bool)
    base_new = base_common = None
    if config.base == "mean":
        pieces_all = ctx.cached("regression/sub_pieces", lambda: sub_pieces(ctx, common_all))
        usable &= np.asarray([bool(pc) for pc in pieces_all], dtype=bool)
        pieces = [pc for pc, ok in zip(pieces_all, usable) if ok]
    common = common_all[usable]
    if len(common) < MIN_COMMON:
        raise VocadaptError(
            f"regression: the target shares only {len(common)} ordinary tokens with the LLM that have features "
            f"(of {a.target_size} target tokens; {MIN_COMMON} needed to fit a map); this helper's vocabulary has "
            "almost nothing in common with the LLM's: use --method mean or focus"
        )
    if config.ridge != "auto" and float(config.ridge) == 0 and len(common) - 1 - max(2, int(round(config.holdout * len(common)))) < p:
        raise VocadaptError(
            f"regression: {len(common)} common tokens for {p} feature dimensions: plain least squares is "
            "underdetermined; give --ridge auto or a ridge such as --ridge 0.01"
        )
    y = source[torch.as_tensor(a.copy_from[common], dtype=torch.long)].double()
    if config.base == "mean":
        base_common = combine_rows(source, pieces).values.double()
        y = y - base_common
    xc = x[torch.as_tensor(common, dtype=torch.long)]
    ridge, stats = choose_ridge(xc, y, base_common, config, ctx.generator(f"regression/split/{ctx.matrix}"))
    path = RidgePath.fit(xc, y, config.intercept)  # refit on every common token with the chosen ridge
    w = path.weights(ridge)

    new = torch.as_tensor(ctx.new_ids, dtype=torch.long)
    featured = has[new].clone() if len(new) else torch.zeros(0, dtype=torch.bool)
    ok = featured.clone()
    values = torch.zeros(len(new), source.shape[1])
    n_base_only = 0
    if config.base == "mean":
        base_rows = combine_rows(source, ctx.decompositions)
        base_new = base_rows.values
        # A token without features (e.g. rarer than fastText's min_count) still has the fit's
        # expectation: its mean plus the average residual (the intercept), not random noise.
        base_only = base_rows.ok & ~featured
        values[base_only] = (base_new[base_only].double() + path.mean_y).float()
        n_base_only = int(base_only.sum())
        ok = base_rows.ok.clone()  # no decomposition: nothing to add the residual to; fallback
        featured &= base_rows.ok
    idx = torch.nonzero(featured).flatten()
    for s in range(0, len(idx), _BLOCK):
        part = idx[s : s + _BLOCK]
        rows = path.predict(x[new[part]], w)
        if base_new is not None:
            rows = rows + base_new[part].double()
        values[part] = rows.float()
    stats = {
        "features": what, "feature_dim": p, "common_tokens": len(common), "ridge": ridge,
        "base": config.base, "computed": int(featured.sum()), "base_only": n_base_only,
        "no_features": int((~has[new]).sum()) if len(new) else 0, **stats,
    }
    ctx.stats.setdefault("regression", {})[ctx.matrix] = stats
    extra = f" (FVT mean alone: R^2 {stats['base_r2_heldout']:.3f}, cosine {stats['base_cosine_heldout']:.3f})" if base_common is not None else ""
    log.info(
        "regression %s: %d common tokens, %d features (%s), ridge %g; held-out R^2 %.3f, mean cosine %.3f%s; %d of %d new rows computed",
        ctx.matrix, len(common), p, what, ridge, stats["r2_heldout"], stats["cosine_heldout"], extra, int(featured.sum()), len(new),
    )
    if n_base_only:
        log.info("regression %s: %d new tokens without features got their FVT mean plus the mean residual", ctx.matrix, n_base_only)
    from vocadapt.init._similarity import check_signal

    check_signal("regression", len(new), ok, "no decomposition" if config.base == "mean" else "no features for the token")
    return Rows(values, ok)
