"""Train only the embedding rows that ``vocadapt init`` did not copy (``--trainable new-rows``),
or the copied ones at a lower learning rate (``--copied-lr``).

The rows to train come from the init provenance: ``vocadapt.json`` names the source model and
target tokenizer the init read; aligning them again gives exactly the target ids it copied (the
count is checked against the one it recorded). The embedding matrix is then parametrized:
``weight = frozen.index_copy(0, new_ids, new_rows)``, where ``new_rows`` (n_new, d) is the only
trainable tensor. Copied rows are never touched, so they stay bit-identical, and the optimizer
holds state for the new rows only. A tied head shares the very same parametrization.

``--copied-lr S`` (0 < S < 1) keeps the copied rows trainable, slower:
``weight = (frozen + S * delta).index_copy(0, new_ids, new_rows)`` with ``delta`` (V, d)
starting at zero (the new rows overwrite its rows, so only the copied ones train). Adam's step
is about the learning rate whatever the gradient's scale, so a copied row moves S times as far
per step as a new row; and AdamW's weight decay pulls ``delta`` to zero, i.e. a copied row back
to the source model's, not to the origin.
Why: with one tied matrix, the rows that make the output favour the new tokens are also the input
rows through which the frozen body reads every old token. Training them at the full rate forgets
what the source model knew of text the new tokens do not cover (docs/distill.md, "Copied rows
at a tenth of the learning rate").
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.nn.utils import parametrize

from vocadapt.errors import VocadaptError

log = logging.getLogger("vocadapt")


class RowSubset(torch.nn.Module):
    """Parametrization of a (V, d) matrix whose rows ``ids`` come from a trainable (n, d) tensor.

    The other (copied) rows are the frozen ones, or with ``scale`` > 0 the frozen ones plus
    ``scale`` x a trainable offset that starts at zero (``--copied-lr``). The new rows overwrite
    the offset's, so those get no gradient and stay zero."""

    def __init__(self, weight: torch.Tensor, ids: torch.Tensor, scale: float = 0.0):
        super().__init__()
        self.register_buffer("ids", ids.to(weight.device), persistent=False)
        self.rows = torch.nn.Parameter(weight.detach()[self.ids].clone())
        self.scale = float(scale)
        self.delta = torch.nn.Parameter(torch.zeros_like(weight.detach())) if self.scale else None

    def forward(self, frozen: torch.Tensor) -> torch.Tensor:
        if self.delta is not None:
            frozen = frozen + (self.scale * self.delta).to(frozen.dtype)
        return frozen.index_copy(0, self.ids, self.rows.to(frozen.dtype))


def new_row_ids(model_dir: Path, tokenizer) -> torch.Tensor:
    """Target ids that ``vocadapt init`` did not copy from the source model (int64, sorted)."""
    from vocadapt.tokenizer.align import align_vocabularies, read_mapping
    from vocadapt.tokenizer.load import load_tokenizer

    from vocadapt.train.export import init_provenance

    prov = init_provenance(model_dir) or {}  # a trained model carries its init's record forward
    if prov.get("step") != "init":
        raise VocadaptError(
            f"--trainable new-rows and --copied-lr need a model made by `vocadapt init` (its vocadapt.json says which rows "
            f"were copied); {model_dir} has no init provenance: use --trainable embeddings+head and --copied-lr 1"
        )
    inputs = prov.get("inputs", {})
    source = Path(inputs.get("source_model", {}).get("path", ""))
    target = Path(inputs.get("target_tokenizer", {}).get("path", ""))
    if not source.exists():
        raise VocadaptError(
            f"new rows: the source model the init read is gone ({source}); it is needed to tell "
            "copied rows from new ones"
        )
    src_tok = load_tokenizer(source, "the init's source tokenizer")
    mapping = read_mapping(target if target.is_dir() else None)
    alignment = align_vocabularies(src_tok, tokenizer, mapping=mapping, decompose=False)
    recorded = (prov.get("results") or {}).get("alignment", {}).get("copied")
    copied = int((alignment.copy_from >= 0).sum())
    if recorded is not None and recorded != copied:
        raise VocadaptError(
            f"new rows: the init recorded {recorded} copied rows but aligning {source} with the "
            f"model's tokenizer gives {copied}; the source model changed since the init"
        )
    if alignment.new_ids.size == 0:
        raise VocadaptError(f"new rows: every row of {model_dir} was copied by init; nothing to train")
    return torch.from_numpy(alignment.new_ids.astype("int64"))


def train_new_rows(model, ids: torch.Tensor, copied_lr: float = 0.0, head: bool = True) -> int:
    """Make rows ``ids`` (see :func:`new_row_ids`) of the input embedding (and of an untied head
    when ``head``) trainable; the copied rows stay frozen (``copied_lr`` 0) or train at
    ``copied_lr`` times the learning rate (see :class:`RowSubset`). A tied head is the same
    matrix and follows the embedding."""
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    tied = out is not None and out.weight is emb.weight
    sub = RowSubset(emb.weight, ids, copied_lr)
    parametrize.register_parametrization(emb, "weight", sub, unsafe=True)
    if tied:
        parametrize.register_parametrization(out, "weight", sub, unsafe=True)
    elif out is not None and head:
        parametrize.register_parametrization(out, "weight", RowSubset(out.weight, ids, copied_lr), unsafe=True)
    copied = "frozen" if copied_lr == 0 else f"at {copied_lr:g} x the learning rate"
    log.info("training %d new rows of %d (copied rows %s)", ids.numel(), emb.weight.shape[0], copied)
    return int(ids.numel())
