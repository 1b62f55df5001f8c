"""Train only the embedding rows that ``vocadapt init`` did not copy (``--trainable new-rows``).

The rows to train come from the init provenance: ``vocadapt.json`` names the source model and
target tokenizer the init read; aligning them again gives exactly the target ids it copied (the
count is checked against the one it recorded). The embedding matrix is then parametrized:
``weight = frozen.index_copy(0, new_ids, new_rows)``, where ``new_rows`` (n_new, d) is the only
trainable tensor. Copied rows are never touched, so they stay bit-identical, and the optimizer
holds state for the new rows only. A tied head shares the very same parametrization.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.nn.utils import parametrize

from vocadapt.errors import VocadaptError

log = logging.getLogger("vocadapt")


class RowSubset(torch.nn.Module):
    """Parametrization of a (V, d) matrix whose rows ``ids`` come from a trainable (n, d) tensor."""

    def __init__(self, weight: torch.Tensor, ids: torch.Tensor):
        super().__init__()
        self.register_buffer("ids", ids.to(weight.device), persistent=False)
        self.rows = torch.nn.Parameter(weight.detach()[self.ids].clone())

    def forward(self, frozen: torch.Tensor) -> torch.Tensor:
        return frozen.index_copy(0, self.ids, self.rows.to(frozen.dtype))


def new_row_ids(model_dir: Path, tokenizer) -> torch.Tensor:
    """Target ids that ``vocadapt init`` did not copy from the source model (int64, sorted)."""
    from vocadapt.tokenizer.align import align_vocabularies, read_mapping
    from vocadapt.tokenizer.load import load_tokenizer

    from vocadapt.train.export import init_provenance

    prov = init_provenance(model_dir) or {}  # a trained model carries its init's record forward
    if prov.get("step") != "init":
        raise VocadaptError(
            f"--trainable new-rows needs a model made by `vocadapt init` (its vocadapt.json says which rows "
            f"were copied); {model_dir} has no init provenance: use --trainable embeddings+head"
        )
    inputs = prov.get("inputs", {})
    source = Path(inputs.get("source_model", {}).get("path", ""))
    target = Path(inputs.get("target_tokenizer", {}).get("path", ""))
    if not source.exists():
        raise VocadaptError(
            f"--trainable new-rows: the source model the init read is gone ({source}); it is needed to tell "
            "copied rows from new ones"
        )
    src_tok = load_tokenizer(source, "the init's source tokenizer")
    mapping = read_mapping(target if target.is_dir() else None)
    alignment = align_vocabularies(src_tok, tokenizer, mapping=mapping, decompose=False)
    recorded = (prov.get("results") or {}).get("alignment", {}).get("copied")
    copied = int((alignment.copy_from >= 0).sum())
    if recorded is not None and recorded != copied:
        raise VocadaptError(
            f"--trainable new-rows: the init recorded {recorded} copied rows but aligning {source} with the "
            f"model's tokenizer gives {copied}; the source model changed since the init"
        )
    if alignment.new_ids.size == 0:
        raise VocadaptError(f"--trainable new-rows: every row of {model_dir} was copied by init; nothing to train")
    return torch.from_numpy(alignment.new_ids.astype("int64"))


def train_new_rows(model, ids: torch.Tensor) -> int:
    """Make only rows ``ids`` (see :func:`new_row_ids`) of the input embedding (and head) trainable."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    sub = RowSubset(emb.weight, ids)
    parametrize.register_parametrization(emb, "weight", sub, unsafe=True)
    if tied:
        parametrize.register_parametrization(head, "weight", sub, unsafe=True)
    elif head is not None:
        parametrize.register_parametrization(head, "weight", RowSubset(head.weight, ids), unsafe=True)
    log.info("training %d new rows of %d (copied rows frozen)", ids.numel(), emb.weight.shape[0])
    return int(ids.numel())
