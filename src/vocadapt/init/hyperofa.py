"""``hyperofa`` (Özeren, Liu, Schütze 2025): a hypernetwork maps word sets to OFA coordinates.

Same factorized space and same word sets as OFA (:mod:`vocadapt.init.ofa`), but a new token's
coordinates come from a BiLSTM over the vectors of the words that contain it
(:mod:`vocadapt.hypernet`), trained on the source tokens' true coordinates, instead of a convex
combination of its nearest source tokens. Order: overlap copied (framework) -> tokens with at
least one word predicted (coordinates @ P) -> the rest get the fallback (framework).

``--hypernet DIR`` uses a saved network (``vocadapt hypernet train``); it is refused when it
was trained for another model (matrix fingerprints differ), another rank, or other vectors.
A network trained with ``--base mean`` predicts residuals over the FVT mean of each token's
source pieces (rows = mean + residual), so it starts from ``mean`` and learns what word vectors
add to it.
``--tune-steps N --tune-corpus FILE...`` runs the LM stage (:mod:`vocadapt.hypernet.lm`) on
that network before predicting, in a scratch folder (save it with ``vocadapt hypernet tune``
to reuse it).
Without it, ``--vectors FILE`` trains one on the fly with the ``hypernet train`` defaults (and
``--rank`` / ``--steps``), in a temporary directory. A model with an untied head needs a
hypernetwork that predicts the head too (``--matrix auto``, the default); several ``--hypernet``
directories may be given, one per matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from vocadapt.errors import VocadaptError
from vocadapt.init.context import InitContext, Rows
from vocadapt.init.registry import register

log = logging.getLogger("vocadapt")


DEFAULT_TUNE_STEPS = 30


@dataclass
class HyperOfaConfig:
    hypernet: list[str] | None = field(default=None, metadata={"help": "hypernetwork directories from `vocadapt hypernet train` (one, or one per matrix)"})
    vectors: str | None = field(default=None, metadata={"help": "multilingual word vectors ('lang:word' keys); default: the file the hypernetwork was trained with"})
    target_langs: list[str] | None = field(default=None, metadata={"help": "languages whose words give target word sets (default: all keys, as OFA)"})
    rank: str | None = field(default=None, metadata={"help": "factorization rank for on-the-fly training (default 100); with --hypernet: must match it"})
    steps: int = field(default=600, metadata={"help": "optimizer steps for on-the-fly training (early stopping applies)"})
    hidden: int = field(default=256, metadata={"help": "BiLSTM hidden size for on-the-fly training"})
    base: str = field(default="mean", metadata={"help": "on-the-fly training: mean (predict the residual over the FVT mean; measured best) | none (predict rows, the paper's); a saved --hypernet carries its own"})
    tune_steps: int | None = field(default=None, metadata={"help": "LM stage before predicting: train the hypernetwork N steps through the model's loss on --tune-corpus (default: 30 with --tune-corpus, the measured best; 0: off)"})
    tune_corpus: list[str] | None = field(default=None, metadata={"help": "target-language text files for the LM stage (--tune-steps)"})
    warn_no_lm_stage: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rank is not None and self.rank != "full" and not (str(self.rank).isdigit() and int(self.rank) > 0):
            raise ValueError(f"rank must be a positive integer or 'full', not {self.rank!r}")
        if self.steps < 1 or self.hidden < 1:
            raise ValueError("steps and hidden must be at least 1")
        if self.base not in ("none", "mean"):
            raise ValueError(f"base must be none or mean, not {self.base!r}")
        if self.tune_steps is None:
            # The measured best (docs/hyperofa.md): --base mean plus 30 LM-stage steps. Without
            # target text there is no LM stage, and init says so (an explicit 0 is a choice).
            self.tune_steps = DEFAULT_TUNE_STEPS if self.tune_corpus else 0
            self.warn_no_lm_stage = not self.tune_corpus
        if self.tune_steps < 0:
            raise ValueError(f"tune_steps must be 0 or more, not {self.tune_steps}")
        if self.tune_steps and not self.tune_corpus:
            raise ValueError("tune_steps needs tune_corpus (target-language text files for the LM stage)")


@contextmanager
def _scratch() -> Iterator[str]:
    """A scratch folder for a hypernetwork trained or tuned inside init. A Ctrl-C there drops the
    engine's "checkpoint saved in <scratch>" line: the folder is deleted and init writes nothing."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory(prefix="vocadapt-hypernet-") as tmp:
            yield tmp
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None


def _hypernets(ctx: InitContext, config: HyperOfaConfig) -> list:
    from pathlib import Path

    from vocadapt.hypernet.train import HypernetConfig, load_hypernet, train_hypernet

    if config.warn_no_lm_stage:
        log.warning("hyperofa without --tune-corpus predicts rows from word vectors alone, which measured worse than "
                    "`mean` (docs/hyperofa.md); pass --tune-corpus TARGET_TEXT for the LM stage (30 steps by default)")
    if config.tune_steps and ctx.target_dir is None:
        raise VocadaptError("hyperofa: --tune-steps needs the target tokenizer as a directory (the LM stage loads a model with it)")
    if config.hypernet:
        nets = [load_hypernet(p) for p in config.hypernet]
        for hn in nets:
            if config.rank is not None and str(hn.record["rank_option"]) != str(config.rank) and str(hn.rank) != str(config.rank):
                raise VocadaptError(f"hyperofa: {hn.path} was trained for rank {hn.record['rank_option']}, not --rank {config.rank}; train one for that rank")
        if not config.tune_steps:
            return nets
        with _scratch() as tmp:
            return [_tuned(ctx, config, hn.path, Path(tmp) / str(i)) for i, hn in enumerate(nets)]
    if not config.vectors:
        raise VocadaptError("hyperofa needs --hypernet DIR (from `vocadapt hypernet train`) or --vectors FILE to train one on the fly")
    if ctx.source_model is None:
        raise VocadaptError("hyperofa: training on the fly needs the source model directory")
    hc = HypernetConfig(vectors=config.vectors, rank=config.rank or "100", steps=config.steps, hidden=config.hidden, seed=ctx.seed,
                        base=config.base)
    with _scratch() as tmp:
        log.info("hyperofa: training a hypernetwork on the fly (save one with `vocadapt hypernet train` to reuse it)")
        result = train_hypernet(ctx.source_model, Path(tmp) / "run", hc)
        from vocadapt.hypernet.quality import format_report

        log.info("%s", format_report(result.quality))
        if config.tune_steps:
            return [_tuned(ctx, config, Path(tmp) / "run" / "model", Path(tmp) / "tune")]
        return [load_hypernet(Path(tmp) / "run")]  # loaded whole into memory before the directory goes


def _tuned(ctx: InitContext, config: HyperOfaConfig, hn_dir, work):
    """``hypernet tune`` in a scratch folder: init with ``hn_dir`` (fallback mean), the LM stage on
    ``tune_corpus`` for ``tune_steps``, and the tuned network loaded into memory."""
    from vocadapt.hypernet.lm import LmStageConfig, tune_hypernet
    from vocadapt.hypernet.train import load_hypernet
    from vocadapt.init.core import init_embeddings

    options = {"hypernet": [str(hn_dir)], "vectors": config.vectors, "target_langs": config.target_langs}
    log.info("hyperofa: LM stage, %d steps on %s", config.tune_steps, ", ".join(map(str, config.tune_corpus)))
    init_embeddings(ctx.source_model, ctx.target_dir, work / "init", "hyperofa", seed=ctx.seed,
                    options={k: v for k, v in options.items() if v is not None}, fallback="mean")
    r = tune_hypernet(hn_dir, work / "init", config.tune_corpus, work / "lm", LmStageConfig(steps=config.tune_steps, seed=ctx.seed))
    tuned = load_hypernet(work / "lm")
    # keyed like other methods' figures ({method: {part: {figure: value}}}): the part is the LM
    # stage of the network for these matrices
    ctx.stats.setdefault("hyperofa", {})[f"lm stage ({'+'.join(tuned.matrices)})"] = {
        "steps": r.steps, "tokens": r.tokens, "seconds": round(r.seconds, 1), **r.metrics}
    return tuned


def _target_sets(ctx: InitContext, config: HyperOfaConfig, hn):
    from vocadapt.hypernet.data import WordSets
    from vocadapt.init.ofa import word_sets
    from vocadapt.provenance import fingerprint
    from vocadapt.vectors.io import load_vectors

    path = config.vectors or hn.record["vectors"]
    fp = fingerprint(path)
    if fp != hn.record["vectors_fingerprint"]:
        raise VocadaptError(
            f"hyperofa: {hn.path} was trained with word vectors {hn.record['vectors']} (fingerprint "
            f"{hn.record['vectors_fingerprint']}), but {path} has fingerprint {fp}; use the same vectors"
        )
    words, vectors, inc = word_sets(ctx.target_tokenizer, load_vectors(path), config.target_langs, "target", "hyperofa")
    sets = WordSets.from_incidence(inc, vectors)
    new = np.asarray(ctx.new_ids, dtype=np.int64)
    ok = sets.has_words()[new] if len(new) else np.zeros(0, bool)
    if len(new) and not ok.any():
        raise VocadaptError(
            f"hyperofa: no word of {path} contains any of the {len(new)} new target tokens: "
            "the vectors do not cover the target language (check --target-langs), or use --method mean"
        )
    return sets, ok


@register("hyperofa", config=HyperOfaConfig, paper="Özeren, Liu, Schütze 2025, HyperOFA", extras=("vectors",))
def hyperofa_init(ctx: InitContext, source: torch.Tensor, config: HyperOfaConfig) -> Rows:
    """A BiLSTM hypernetwork predicts OFA coordinates from the words containing each new token (HyperOFA)."""
    from vocadapt.hypernet.train import matrix_fingerprint

    nets = ctx.cached("hyperofa/nets", lambda: _hypernets(ctx, config))
    hn = next((h for h in nets if ctx.matrix in h.matrices), None)
    if hn is None:
        have = sorted({m for h in nets for m in h.matrices})
        raise VocadaptError(
            f"hyperofa: no hypernetwork predicts the {ctx.matrix} matrix (given: {', '.join(have)}); "
            "the model has an untied head: train with --matrix auto, or add a --matrix output hypernetwork"
        )
    from vocadapt.tokenizer.canonical import vocab_size

    expected = hn.record["model_fingerprints"][ctx.matrix]
    actual = matrix_fingerprint(source[: vocab_size(ctx.source_tokenizer)])
    if actual != expected:
        raise VocadaptError(
            f"hyperofa: {hn.path} was trained for another model: its {ctx.matrix} matrix fingerprint is {expected}, "
            f"this model's is {actual}; train one with `vocadapt hypernet train {ctx.source_model}`"
        )
    sets, ok = ctx.cached(f"hyperofa/sets/{hn.path}", lambda: _target_sets(ctx, config, hn))
    new = np.asarray(ctx.new_ids, dtype=np.int64)
    if hn.base == "mean":
        return _with_base(ctx, source, hn, sets, ok)
    values = hn.predict(sets, new[ok], ctx.matrix, seed=ctx.seed) if ok.any() else torch.zeros(0, source.shape[1])
    log.info("hyperofa: %s: %d of %d new tokens predicted", ctx.matrix, int(ok.sum()), len(new))
    return Rows.subset(values, torch.from_numpy(ok))


def _with_base(ctx: InitContext, source: torch.Tensor, hn, sets, has_words: np.ndarray) -> Rows:
    """A ``--base mean`` network: rows = FVT mean of the token's pieces + the predicted residual.

    A token with pieces but no word gets its mean alone (the residual's best guess without a
    signal is the network's, but it has no input; zero keeps it at ``mean``); a token without
    pieces has nothing to add a residual to and goes to the fallback.
    """
    from vocadapt.init.context import combine_rows

    new = np.asarray(ctx.new_ids, dtype=np.int64)
    base = combine_rows(source, ctx.decompositions)
    has_base = base.ok.numpy()
    both = has_words & has_base
    values = base.values.clone()
    if both.any():
        values[torch.from_numpy(both)] += hn.predict(sets, new[both], ctx.matrix, seed=ctx.seed)
    log.info("hyperofa: %s: %d of %d new tokens got FVT mean + predicted residual, %d the mean alone (no word)",
             ctx.matrix, int(both.sum()), len(new), int((has_base & ~has_words).sum()))
    return Rows(values, base.ok)
