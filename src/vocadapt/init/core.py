"""``init_embeddings``: give a model a new tokenizer and initialize its new rows.

The run, end to end: open the source checkpoint lazily, load both tokenizers, align the
vocabularies, then for each vocabulary matrix (input embedding; untied head; MLM bias) copy the
overlapping rows exactly, ask the method for the new rows, fill rows it has no signal for with
the seeded fallback, pad, and stream the checkpoint into a staging directory that is renamed
into place only when everything is written.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vocadapt.errors import VocadaptError
from vocadapt.init.context import (
    BLOCK_ROWS, InitContext, Rows, column_stats, combine_rows, finite_rows, random_row_blocks,
)
from vocadapt.init.registry import get_method
from vocadapt.io.atomic import atomic_dir
from vocadapt.io.checkpoint import Checkpoint, resolve_model_dir, write_checkpoint
from vocadapt.io.safetensors_stream import TensorInfo, read_header, write_file
from vocadapt.progress import model_name, step
from vocadapt.provenance import write_provenance
from vocadapt.tokenizer.align import align_vocabularies, check_mapping, read_mapping
from vocadapt.tokenizer.canonical import vocab_size
from vocadapt.tokenizer.load import load_tokenizer


FALLBACKS = ("random", "mean")
log = logging.getLogger("vocadapt")


@dataclass
class InitReport:
    """What ``init_embeddings`` did: where, how many rows of each kind, per matrix."""

    out_dir: Path
    method: str
    source_rows: int
    target_rows: int
    alignment: dict[str, int]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)  # the method's own figures (e.g. regression fit quality)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


def _check_finite(t: torch.Tensor, name: str) -> None:
    """One-line error naming the rows with NaN/inf; checked in blocks (no full-size mask)."""
    bad_rows, n_bad = [], 0
    for start in range(0, t.shape[0], BLOCK_ROWS):
        block = t[start : start + BLOCK_ROWS].reshape(min(BLOCK_ROWS, t.shape[0] - start), -1)
        rows_ok = finite_rows(block)
        if not bool(rows_ok.all()):
            bad = torch.nonzero(~rows_ok).flatten()
            n_bad += int((~torch.isfinite(block[bad])).sum())
            bad_rows.extend((bad + start).tolist())
    if n_bad:
        raise VocadaptError(
            f"source tensor {name!r} has {n_bad} NaN/inf values in {len(bad_rows)} rows (first: {bad_rows[:5]})"
        )


def _assemble(
    source: torch.Tensor,
    ctx: InitContext,
    rows: Rows,
    n_rows: int,
    fallback_salt: str,
    fallback: str = "random",
) -> tuple[torch.Tensor, dict[str, int]]:
    """Build the target matrix (n_rows x d, source dtype) from copies, method rows, fallback.

    Rows without signal get ``fallback``: "random" (seeded N(mean, std), as the papers do) or
    "mean" (the FVT mean of the token's decomposition where it has one, random otherwise).
    Every row is written straight into the output in blocks, in the source dtype: no float32
    matrix of all new rows (a second vocabulary-sized matrix at 128k) is ever built.
    """
    a = ctx.alignment
    new_ids = torch.as_tensor(a.new_ids, dtype=torch.long)
    n_new, d = len(new_ids), source.shape[1]
    where = rows.positions
    if rows.ok.shape != (n_new,) or rows.values.shape[1:] != (d,) or (rows.where is None and len(rows.values) != n_new):
        raise RuntimeError(
            f"method returned {tuple(rows.values.shape)} rows and {tuple(rows.ok.shape)} flags, expected {(n_new, d)}"
        )
    ok = rows.ok.clone()
    if rows.where is not None:
        has_row = torch.zeros(n_new, dtype=torch.bool)
        has_row[where] = True
        if bool((ok & ~has_row).any()):
            raise RuntimeError("method marked new tokens ok that it returned no row for")
    values = rows.values.float()
    out = torch.empty(n_rows, d, dtype=source.dtype)
    copied = torch.as_tensor(a.copied_ids, dtype=torch.long)
    copied_from = torch.as_tensor(a.copy_from[a.copied_ids], dtype=torch.long)
    # Scatter in blocks: a whole-vocabulary gather would double the matrix in memory.
    for start in range(0, len(copied), BLOCK_ROWS):
        out[copied[start : start + BLOCK_ROWS]] = source[copied_from[start : start + BLOCK_ROWS]]
    for start in range(0, len(values), BLOCK_ROWS):
        block = values[start : start + BLOCK_ROWS]
        at = where[start : start + BLOCK_ROWS]
        # A method may produce a non-finite row on degenerate input; treat it as "no signal".
        ok[at] &= finite_rows(block)
        out[new_ids[at]] = block.to(source.dtype)  # rows that are not ok are overwritten below
    # Fallback and padding both need the source's column statistics: one pass over the matrix.
    source_stats = functools.cache(lambda: column_stats(source))
    missing = torch.nonzero(~ok).flatten()
    n_mean = 0
    if fallback == "mean" and len(missing):
        decompositions = ctx.decompositions
        mean_rows = combine_rows(source, [decompositions[int(i)] for i in missing])
        out[new_ids[missing[mean_rows.ok]]] = mean_rows.values[mean_rows.ok].to(source.dtype)
        n_mean = int(mean_rows.ok.sum())
        missing = missing[~mean_rows.ok]
    n_fallback = len(missing)
    if n_fallback:
        mean, std = source_stats()
        for start, block in random_row_blocks(n_fallback, mean, std, ctx.generator(fallback_salt)):
            out[new_ids[missing[start : start + len(block)]]] = block.to(source.dtype)
    if n_rows > a.target_size:  # padding rows: never produced by the tokenizer; mean keeps them harmless
        mean, _ = source_stats()
        out[a.target_size :] = mean.to(source.dtype)
    counts = {
        "copied": len(copied), "computed": int(ok.sum()), "fallback_mean": n_mean, "fallback": n_fallback,
        "padding": n_rows - a.target_size,
    }
    return out, counts


def init_embeddings(
    source_model: str | Path,
    target_tokenizer: str | Path,
    out_dir: str | Path,
    method: str = "mean",
    *,
    seed: int = 0,
    pad_to_multiple_of: int | None = None,
    overwrite: bool = False,
    options: dict[str, Any] | None = None,
    fallback: str = "random",
) -> InitReport:
    """Write ``out_dir``: ``source_model`` with ``target_tokenizer`` and initialized new rows.

    ``source_model`` is an HF model directory (safetensors) or a ``.gguf`` file; ``target_tokenizer``
    a tokenizer directory or ``tokenizer.json``; ``method`` a registered init method (see
    ``vocadapt methods``) with its ``options``. ``fallback`` fills rows the method has no signal
    for: "random" (the papers' choice) or "mean" (FVT mean of the decomposition, else random).
    The output loads with ``from_pretrained``.
    """
    if fallback not in FALLBACKS:
        raise VocadaptError(f"fallback must be one of {', '.join(FALLBACKS)}, not {fallback!r}")
    started = time.perf_counter()
    spec = get_method(method)
    config = spec.make_config(options)
    ckpt = Checkpoint(source_model)
    if Path(target_tokenizer).exists():  # a helper model as the target (regression) may be a .gguf or a run dir
        target_tokenizer = resolve_model_dir(target_tokenizer)
    src_tok = load_tokenizer(ckpt.path, "source model's tokenizer")
    tgt_tok = load_tokenizer(target_tokenizer, "target tokenizer")
    n_src = vocab_size(src_tok)
    if n_src > ckpt.embedding_rows:
        raise VocadaptError(
            f"source tokenizer has ids up to {n_src - 1} but the model's embedding has {ckpt.embedding_rows} rows: "
            "tokenizer and model do not match"
        )
    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise VocadaptError(f"pad_to_multiple_of must be >= 1, not {pad_to_multiple_of}")
    target_dir = Path(target_tokenizer) if Path(target_tokenizer).is_dir() else None
    mapping = read_mapping(target_dir)
    if mapping:
        check_mapping(mapping, src_tok, tgt_tok, target_dir / "vocab_mapping.json")
    alignment = align_vocabularies(src_tok, tgt_tok, mapping=mapping)
    if alignment.copied_ids.size == 0:
        # Not fatal for every method (random needs nothing), but worth saying.
        log.warning("target vocabulary shares no token with the source; nothing is copied")
    n_rows = alignment.target_size
    if mapping and all(new == old for new, old in mapping.items()) and len(mapping) >= n_src:
        # An extension of this very tokenizer (``tokenizer extend``): the model's padding rows
        # past its tokenizer (Qwen: 151,936 rows for 151,665 ids) are kept, and new tokens that
        # fit in them need no new rows.
        n_rows = max(n_rows, ckpt.embedding_rows)
    if pad_to_multiple_of:
        n_rows = -(-n_rows // pad_to_multiple_of) * pad_to_multiple_of

    ctx = InitContext(src_tok, tgt_tok, alignment, seed=seed, source_model=ckpt.path, target_dir=target_dir)
    config_updates: dict[str, Any] = {"vocab_size": n_rows}
    for role in ("bos", "eos", "pad"):
        tid = getattr(tgt_tok, f"{role}_token_id", None)
        if isinstance(tid, int) and f"{role}_token_id" in ckpt.config:
            config_updates[f"{role}_token_id"] = tid

    step(f"init {method}: {model_name(ckpt.path)} with the {model_name(target_tokenizer)} tokenizer, "
         f"{int((alignment.copy_from < 0).sum())} new rows of {n_rows}")
    with atomic_dir(out_dir, overwrite=overwrite) as staging:
        replacements, counts = _new_vocab_tensors(ckpt, ctx, spec, config, n_src, n_rows, staging, fallback)
        step(f"init {method}: writing {out_dir}")
        write_checkpoint(ckpt, staging, replacements, config_updates)
        for spill in staging.glob(".spill-*.safetensors"):
            spill.unlink()
        _save_tokenizer(tgt_tok, src_tok, staging)
        report = InitReport(
            out_dir=Path(out_dir),
            method=method,
            source_rows=ckpt.embedding_rows,
            target_rows=n_rows,
            alignment=alignment.summary(),
            counts=counts,
            seconds=round(time.perf_counter() - started, 3),
            stats=ctx.stats,
        )
        write_provenance(
            staging,
            "init",
            {"method": method, "options": config, "seed": seed, "pad_to_multiple_of": pad_to_multiple_of, "fallback": fallback},
            inputs={"source_model": ckpt.path, "target_tokenizer": target_tokenizer},
            results={"counts": counts, "alignment": report.alignment, "seconds": report.seconds, "tied": ckpt.vocab.tied,
                     **({"method_stats": ctx.stats} if ctx.stats else {})},
        )
    return report


def _new_vocab_tensors(
    ckpt: Checkpoint, ctx: InitContext, spec: Any, config: Any, n_src: int, n_rows: int, staging: Path, fallback: str
) -> tuple[dict[str, TensorInfo], dict[str, dict[str, int]]]:
    """Compute every vocabulary tensor, one matrix at a time, spilling each finished one to disk.

    Spilling keeps peak memory at one matrix's working set (source rows, the method's float32
    rows, the new matrix) instead of holding the finished input embedding while the head is
    computed; the checkpoint writer then streams the spilled bytes like any other tensor.
    """
    replacements: dict[str, TensorInfo] = {}
    counts: dict[str, dict[str, int]] = {}

    def spill(name: str, tensor: torch.Tensor) -> None:
        path = staging / f".spill-{len(replacements)}.safetensors"
        write_file(path, [("t", tensor)])
        replacements[name] = read_header(path)[0]["t"]

    matrices = [("input", ckpt.vocab.input)]
    if not ckpt.vocab.tied and ckpt.vocab.output:
        matrices.append(("output", ckpt.vocab.output))
    for matrix, name in matrices:
        source = ckpt.read(name)
        if source.shape[0] < n_src:
            raise VocadaptError(f"{name!r} has {source.shape[0]} rows but the tokenizer has {n_src} ids")
        _check_finite(source, name)
        ctx.matrix = matrix
        rows = spec.fn(ctx, source, config)
        new, counts[matrix] = _assemble(source, ctx, rows, n_rows, f"fallback/{matrix}", fallback)
        del source, rows
        spill(name, new)
        del new
    if ckpt.vocab.tied and ckpt.vocab.output:  # a tied checkpoint that stores the head anyway
        replacements[ckpt.vocab.output] = replacements[ckpt.vocab.input]
    if ckpt.vocab.output_bias:
        bias = ckpt.read(ckpt.vocab.output_bias)
        _check_finite(bias, ckpt.vocab.output_bias)
        # The MLM bias is a scalar per token: the mean rule for every method (copies, then means).
        ctx.matrix = "output_bias"
        b_rows = combine_rows(bias[:, None], ctx.decompositions)
        b, counts["output_bias"] = _assemble(bias[:, None], ctx, b_rows, n_rows, "fallback/output_bias")
        spill(ckpt.vocab.output_bias, b[:, 0].contiguous())
    return replacements, counts


def _save_tokenizer(tgt_tok: Any, src_tok: Any, dest: Path) -> None:
    """Save the target tokenizer; carry the source's chat template when the target has none."""
    if not getattr(tgt_tok, "chat_template", None) and getattr(src_tok, "chat_template", None):
        tgt_tok.chat_template = src_tok.chat_template
    tgt_tok.save_pretrained(str(dest))


__all__ = ["InitReport", "init_embeddings", "load_tokenizer"]
