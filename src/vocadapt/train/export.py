"""The trained model as a standard Hugging Face directory, streamed from the input checkpoint.

Only the trained tensors are written anew (in the checkpoint's dtype); shards that hold none of
them are copied byte for byte by :func:`vocadapt.io.checkpoint.write_checkpoint`. Tokenizer
files come from the input model; ``vocadapt.json`` records the init method the input came
from, the steps and tokens seen, and the training data's fingerprint.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vocadapt.errors import VocadaptError

if TYPE_CHECKING:
    from vocadapt.train.lm import EmbeddingTask


def init_method(model_dir: Path) -> str | None:
    """The init method behind a model directory (None for a model vocadapt did not make)."""
    return ((init_provenance(model_dir) or {}).get("config") or {}).get("method")


def init_provenance(model_dir: Path) -> dict | None:
    """The ``vocadapt init`` record behind a model directory, looking through earlier trainings."""
    from vocadapt.provenance import read_provenance

    prov = read_provenance(model_dir) or {}
    if prov.get("step") == "train":
        return (prov.get("results") or {}).get("init_provenance")
    return prov if prov.get("step") == "init" else None


def trained_tensors(task: "EmbeddingTask", model) -> dict[str, torch.Tensor]:
    """Checkpoint tensor name -> trained tensor (model dtype) for everything that trained."""
    ck = task.ckpt
    out = {ck.vocab.input: model.get_input_embeddings().weight}
    head_trains = task.config.trainable != "embeddings" or ck.vocab.tied
    if ck.vocab.output and head_trains:
        out[ck.vocab.output] = model.get_output_embeddings().weight
    if task.config.layer_indices:
        from vocadapt.model import decoder_layers

        layers = decoder_layers(model)
        wanted = {id(p) for i in task.config.layer_indices for p in layers[i].parameters()}
        for name, p in model.named_parameters():
            if id(p) in wanted:
                if name not in ck.tensors:
                    raise VocadaptError(f"trained tensor {name!r} has no counterpart in {ck.path}; cannot export")
                out[name] = p
    return out


@torch.no_grad()
def export_model(task: "EmbeddingTask", model, out_dir: Path, state: dict) -> None:
    """Write the model into the staging directory ``out_dir`` (see the module docstring)."""
    from vocadapt.io.checkpoint import TOKENIZER_FILES, write_checkpoint
    from vocadapt.provenance import write_provenance

    ck = task.ckpt
    replacements = {
        name: t.detach().to("cpu", ck.tensors[name].torch_dtype).contiguous()
        for name, t in trained_tensors(task, model).items()
    }
    write_checkpoint(ck, out_dir, replacements, {})
    for name in sorted(TOKENIZER_FILES):
        if (ck.path / name).is_file():
            shutil.copyfile(ck.path / name, out_dir / name)
    write_provenance(
        out_dir, "train", asdict(task.config),
        inputs={"model": ck.path, **{f"corpus_{i}": p for i, p in enumerate(task.corpus_paths)}},
        results={
            "init_method": init_method(ck.path),
            "init_provenance": init_provenance(ck.path),
            "steps": state["step"],
            "tokens": state["tokens"],
            "data_fingerprint": task.data.key,
            "trained_tensors": sorted(replacements),
            "metrics": state.get("metrics") or {},
            # how many new rows the batches showed the model (a row never shown learns nothing of its token)
            **({"coverage": task.coverage} if task.coverage else {}),
            # what `teacher_dtype: auto` became on this machine (it depends on the hardware)
            **({"teacher_dtype": str(next(task.teacher.parameters()).dtype).removeprefix("torch.")}
               if task.teacher is not None else {}),
        },
    )
