"""Checkpoint I/O for vocabulary surgery, without ever materializing the model.

:class:`Checkpoint` opens an HF model directory (sharded or single-file safetensors, or a
``.gguf`` file converted once into the cache), finds the vocabulary-sized tensors through the
architecture table in ``_data/architectures.json`` and the config's tying flag, and reads only
those. :func:`write_checkpoint` writes the adapted model: shards without a changed tensor are
copied file by file, shards with one are re-streamed with the new tensors, the index and the
config are updated, and everything goes to a temporary directory renamed at the end.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from vocadapt.errors import VocadaptError
from vocadapt.io.safetensors_stream import TensorInfo, read_header, read_tensor, write_file

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

# Files that describe the tokenizer; the adapted model gets the target tokenizer's instead.
TOKENIZER_FILES = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
    "vocab_mapping.json",
}


def vocab_config(config: dict[str, Any]) -> dict[str, Any]:
    """The (sub)config that holds ``vocab_size``: multimodal configs nest it in ``text_config``."""
    nested = config.get("text_config")
    return nested if isinstance(nested, dict) and "vocab_size" in nested else config


@cache
def architectures() -> dict[str, dict[str, Any]]:
    text = resources.files("vocadapt").joinpath("_data/architectures.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


@dataclass(frozen=True)
class VocabTensors:
    """The names of the vocabulary-sized tensors of one checkpoint; tying is data, not code."""

    input: str
    output: str | None  # None: the head is tied to the input embedding and not stored apart
    output_bias: str | None  # MLM decoder bias (BERT/RoBERTa), vocab-sized and 1-D
    tied: bool

    def names(self) -> list[str]:
        return [n for n in (self.input, self.output, self.output_bias) if n]


class Checkpoint:
    """A lazily read HF model directory: config, tensor locations, vocabulary tensors."""

    def __init__(self, path: str | Path):
        path = resolve_model_dir(path)
        if not (path / "config.json").is_file():
            raise VocadaptError(f"not a Hugging Face model directory (no config.json): {path}")
        self.path = path
        self.config: dict[str, Any] = read_config(path)
        self.tensors: dict[str, TensorInfo] = {}
        self.files: list[Path] = []
        self.index: dict[str, Any] | None = None
        if (path / INDEX_FILE).is_file():
            self.index = _read_json(path / INDEX_FILE)
            if not isinstance(self.index.get("weight_map"), dict):
                raise VocadaptError(f"{path / INDEX_FILE}: no weight_map: not a safetensors index")
            shard_names = sorted(set(self.index["weight_map"].values()))
            self.files = [path / s for s in shard_names]
        elif (path / SINGLE_FILE).is_file():
            self.files = [path / SINGLE_FILE]
        else:
            bins = sorted(path.glob("*.bin"))
            hint = " (PyTorch .bin weights: re-save with safe_serialization=True)" if bins else ""
            raise VocadaptError(f"no safetensors weights in {path}{hint}")
        for f in self.files:
            if not f.is_file():
                raise VocadaptError(f"shard listed in {INDEX_FILE} is missing: {f}")
            infos, _ = read_header(f)
            self.tensors.update(infos)
        self.vocab = self._find_vocab_tensors()
        check_config_matches(path, self.text_config, self.vocab.input, self.tensors[self.vocab.input])

    # -- what the config says ----------------------------------------------------------------
    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", "unknown"))

    @property
    def text_config(self) -> dict[str, Any]:
        return vocab_config(self.config)

    def _find_vocab_tensors(self) -> VocabTensors:
        table = architectures()
        entry = table.get(self.model_type)

        def first(names: list[str]) -> str | None:
            return next((n for n in names if n in self.tensors), None)

        if entry is None:
            # Unknown model_type: try every known layout before giving up.
            candidates = sorted({n for e in table.values() for n in e["input"]})
            found = first(candidates)
            if found is None:
                raise VocadaptError(
                    f"unknown architecture {self.model_type!r}: looked for an input embedding among "
                    f"{', '.join(candidates)}; none is in the checkpoint"
                )
            entry = next(e for e in table.values() if found in e["input"])
        inp = first(entry["input"])
        if inp is None:
            raise VocadaptError(
                f"{self.model_type}: input embedding not found; looked for {', '.join(entry['input'])}"
            )
        out = first(entry.get("output", []))
        bias = first(entry.get("output_bias", []))
        tied = bool(self.text_config.get("tie_word_embeddings", self.config.get("tie_word_embeddings", entry["tied_default"])))
        if not tied and out is None:
            raise VocadaptError(
                f"{self.model_type}: config says the head is untied but no head tensor was found; "
                f"looked for {', '.join(entry.get('output', []))}"
            )
        # A tied checkpoint may still store the head (a duplicate); it is rewritten alongside.
        return VocabTensors(input=inp, output=out, output_bias=bias, tied=tied)

    # -- tensors -----------------------------------------------------------------------------
    @property
    def embedding_rows(self) -> int:
        return self.tensors[self.vocab.input].shape[0]

    @property
    def hidden_size(self) -> int:
        return self.tensors[self.vocab.input].shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors[self.vocab.input].torch_dtype

    def read(self, name: str) -> torch.Tensor:
        """Read one tensor (and only it) in its stored dtype."""
        if name not in self.tensors:
            raise VocadaptError(f"tensor {name!r} not in checkpoint {self.path}")
        return read_tensor(self.tensors[name])

    def non_weight_files(self) -> list[Path]:
        """Files to carry over besides weights and tokenizer files (generation config, README...)."""
        skip = {f.name for f in self.files} | {INDEX_FILE, "config.json", "vocadapt.json"} | TOKENIZER_FILES
        return [f for f in sorted(self.path.iterdir()) if f.is_file() and f.name not in skip and not f.name.startswith(".")]


def check_config_matches(model_dir: Path, config: dict[str, Any], name: str, embedding: TensorInfo) -> None:
    """The config must describe the input embedding ``name``: a mismatch means mixed-up files,
    and would otherwise surface (as a cryptic shape error) only after minutes of work."""
    if len(embedding.shape) != 2:
        raise VocadaptError(f"{embedding.file}: {name} is not a matrix but has shape {list(embedding.shape)}")
    rows, width = embedding.shape
    config = vocab_config(config)
    vocab = config.get("vocab_size")
    if isinstance(vocab, int) and vocab != rows:
        raise VocadaptError(
            f"{Path(model_dir) / 'config.json'} does not match the weights: vocab_size is {vocab} but {name} has {rows} rows"
        )
    # Models whose embedding width differs from the hidden size say so in the config.
    if not any(k in config for k in ("embedding_size", "word_embed_proj_dim", "embed_dim")):
        hidden = next((config[k] for k in ("hidden_size", "n_embd", "d_model") if isinstance(config.get(k), int)), None)
        if hidden is not None and hidden != width:
            raise VocadaptError(
                f"{Path(model_dir) / 'config.json'} does not match the weights: hidden size is {hidden} but {name} is {width} wide"
            )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise VocadaptError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise VocadaptError(f"{path}: expected a JSON object")
    return data


def read_config(model_dir: Path) -> dict[str, Any]:
    """``config.json`` of a model directory, with one-line errors for a missing or broken file."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise VocadaptError(f"not a Hugging Face model directory (no config.json): {model_dir}")
    return _read_json(path)


def resolve_model_dir(path: str | Path) -> Path:
    """An HF model directory for ``path``: itself, or the cached conversion of a ``.gguf`` file."""
    p = resolve_run_dir(path)
    if not p.exists():
        raise VocadaptError(f"model not found: {p}")
    return _converted_gguf(p) if p.is_file() and p.suffix == ".gguf" else p


def resolve_run_dir(path: str | Path) -> Path:
    """A model directory for ``path``: a training run directory (no ``config.json``, a ``model/``
    inside) stands for its final model; anything else is returned as given."""
    p = Path(path)
    if p.is_dir() and not (p / "config.json").exists() and (p / "model" / "config.json").is_file():
        return p / "model"
    return p


def _converted_gguf(gguf_file: Path) -> Path:
    from vocadapt.cache import cache_dir
    from vocadapt.provenance import content_sha256
    from vocadapt.io.gguf import convert_gguf

    key = content_sha256(gguf_file)[:16]  # whole file: two GGUFs may share their first MiBs
    return convert_gguf(gguf_file, cache_dir() / "converted" / f"{gguf_file.stem}-{key}")


def write_checkpoint(
    src: Checkpoint,
    dest: Path,
    replacements: dict[str, torch.Tensor | TensorInfo],
    config_updates: dict[str, Any],
) -> None:
    """Write ``src`` into the (staging) directory ``dest`` with some tensors replaced.

    Shards that hold no replaced tensor are copied byte for byte; the others are re-streamed.
    A replacement is a tensor in memory or a :class:`TensorInfo` (bytes in another file, e.g. a
    spilled result), so peak memory can stay at a 64 MiB copy buffer.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    unknown = set(replacements) - set(src.tensors)
    if unknown:
        raise VocadaptError(f"cannot replace tensors that are not in the checkpoint: {sorted(unknown)}")
    total = 0
    for shard in src.files:
        infos, meta = read_header(shard)
        if not any(name in replacements for name in infos):
            shutil.copyfile(shard, dest / shard.name)
            total += sum(i.nbytes for i in infos.values())
            continue
        entries = [(name, replacements.get(name, info)) for name, info in infos.items()]
        total += write_file(dest / shard.name, entries, metadata=meta or {"format": "pt"})
    if src.index is not None:
        index = dict(src.index)
        index["metadata"] = {**index.get("metadata", {}), "total_size": total}
        (dest / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")

    config = json.loads(json.dumps(src.config))
    target = vocab_config(config)
    for key, value in config_updates.items():
        if key == "vocab_size":
            target[key] = value
        else:
            config[key] = value
    (dest / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for f in src.non_weight_files():
        shutil.copyfile(f, dest / f.name)
    gen = dest / "generation_config.json"
    if gen.exists():
        g = json.loads(gen.read_text(encoding="utf-8"))
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if key in config_updates and key in g:
                g[key] = config_updates[key]
        gen.write_text(json.dumps(g, indent=2) + "\n", encoding="utf-8")
