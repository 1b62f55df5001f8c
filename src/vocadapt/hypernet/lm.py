"""Second stage: train the hypernetwork through the frozen LLM's own next-token loss.

No OFA-family method does this (ZeTT trains its own hypernetwork with the LM loss). After the
reconstruction stage the hypernetwork has learned to imitate *source* rows; here it learns
what makes the *target* text predictable. The model is the one ``vocadapt init --method
hyperofa --hypernet DIR`` wrote (target vocabulary; copied, predicted and fallback rows). Its
body, copied rows and fallback rows stay frozen; the rows of the tokens the hypernetwork
predicted are its predictions, so the gradient of the LM loss flows only into the hypernetwork
(LSTM, MLP), never into the model.

The approximation that makes it feasible on a CPU: recomputing all |V_new| predictions every
step would cost a full pass of the hypernetwork per step. Instead each step recomputes, with
gradient, the rows of the predicted tokens that occur in the batch plus ``sample_new`` others
(the sample carries the softmax's gradient to tokens the batch does not contain: as LM-head
rows every token gets gradient from every position); every other predicted row is read from a
cache of detached predictions. The cache (the model's own embedding matrix) is refreshed with
the current hypernetwork at every evaluation and before export. So rows not in a step's batch
or sample are up to ``eval_every`` steps stale in the softmax's normalizer, which only shifts
the loss of the tokens that are trained.

The output is a new hypernetwork directory (``objective: lm``), usable like any other:
``vocadapt init SRC TGT OUT --method hyperofa --hypernet DIR``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vocadapt.errors import VocadaptError
from vocadapt.train.engine import GlobalBatch
from vocadapt.train.lm import EmbeddingTask, TrainConfig

log = logging.getLogger("vocadapt")


@dataclass
class LmStageConfig(TrainConfig):
    """Settings of ``vocadapt hypernet tune`` (the LM stage); data and loop settings as ``vocadapt train``."""

    sample_new: int = field(default=256, metadata={"help": "predicted tokens absent from a step's batch whose rows are also recomputed with gradient"})
    vectors: str | None = field(default=None, metadata={"help": "word vectors (default: the file the hypernetwork was trained with)"})
    target_langs: list[str] | None = field(default=None, metadata={"help": "languages whose words give target word sets (as for init)"})
    steps: int = field(default=50, metadata={"help": "optimizer steps"})
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate of the hypernetwork"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    seq_len: int = field(default=256, metadata={"help": "tokens per training block"})
    batch_size: int = field(default=8, metadata={"help": "blocks per optimizer step"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sample_new < 0:
            raise ValueError(f"sample_new must be 0 or more, not {self.sample_new}")


class LmStage(nn.Module):
    """The frozen LLM plus the trainable hypernetwork; ``cache_*`` are the LLM's own matrices."""

    def __init__(self, llm, net, primitives: dict[str, torch.Tensor], matrices: list[str]):
        super().__init__()
        self.llm, self.net = llm, net
        self.tied = llm.get_output_embeddings() is None or llm.get_output_embeddings().weight is llm.get_input_embeddings().weight
        self.blocks = list(matrices)  # the hypernetwork's output blocks, in order
        # matrices whose predicted rows the hypernetwork owns here (a tied head is the input)
        self.matrices = [m for m in matrices if m == "input" or not self.tied]
        for m in self.matrices:
            self.register_buffer(f"p_{m}", primitives[m].clone())
        self.k = net.shape.block

    def weight(self, matrix: str) -> torch.Tensor:
        mod = self.llm.get_input_embeddings() if matrix == "input" else self.llm.get_output_embeddings()
        return mod.weight

    def set_base(self, slot: torch.Tensor, base: dict[str, torch.Tensor]) -> None:
        """A ``--base mean`` network: predicted rows are ``base[matrix][slot[token]]`` + residual."""
        self.register_buffer("slot", slot)
        for m in self.matrices:
            self.register_buffer(f"base_{m}", base[m])

    def rows(self, coords: torch.Tensor, matrix: str, tokens: torch.Tensor) -> torch.Tensor:
        """(n, d) rows of ``matrix`` for ``tokens`` from (n, out_dim) coordinates: that block @ P (+ base)."""
        i = self.blocks.index(matrix)
        out = coords[:, i * self.k : (i + 1) * self.k] @ getattr(self, f"p_{matrix}")
        if hasattr(self, "slot"):
            out = out + getattr(self, f"base_{matrix}")[self.slot[tokens]]
        return out


class LmStageTask(EmbeddingTask):
    """Next-token loss of the frozen model, gradient into the hypernetwork only."""

    name = "hypernet-lm"

    def __init__(self, model_dir: Path, hypernet, corpus: list[Path], config: LmStageConfig, eval_texts, run_dir: Path):
        super().__init__(model_dir, corpus, config, eval_texts)
        from vocadapt.hypernet.data import WordSets
        from vocadapt.init.ofa import word_sets
        from vocadapt.provenance import fingerprint
        from vocadapt.tokenizer.align import align_vocabularies
        from vocadapt.tokenizer.load import load_tokenizer
        from vocadapt.vectors.io import load_vectors

        self.hn, self.run_dir = hypernet, Path(run_dir)
        path = config.vectors or hypernet.record["vectors"]
        if fingerprint(path) != hypernet.record["vectors_fingerprint"]:
            raise VocadaptError(f"{path} is not the word-vector file {hypernet.path} was trained with ({hypernet.record['vectors']})")
        src_tok = load_tokenizer(hypernet.record["source_model"], "the hypernetwork's source model tokenizer")
        a = align_vocabularies(src_tok, self.tokenizer, decompose=hypernet.base == "mean")
        _, vectors, inc = word_sets(self.tokenizer, load_vectors(path), config.target_langs, "target", "hyperofa")
        self.sets = WordSets.from_incidence(inc, vectors)
        new = np.asarray(a.new_ids, dtype=np.int64)
        owned = self.sets.has_words()[new]
        self.base: dict[str, torch.Tensor] | None = None
        if hypernet.base == "mean":
            # rows = FVT mean of the source pieces (fixed) + the network's residual, as at init
            pieces = [a.decompositions.get(int(t), []) for t in new]
            owned &= np.fromiter((len(p) > 0 for p in pieces), dtype=bool, count=len(new))
            self.base = self._base_rows(hypernet, [p for p, o in zip(pieces, owned) if o])
        self.predicted = new[owned]  # the rows the hypernetwork owns
        if len(self.predicted) == 0:
            raise VocadaptError(f"no new token of {model_dir} has a word in {path}: nothing for the hypernetwork to predict")
        self._is_pred = np.zeros(len(self.sets.lengths), bool)
        self._is_pred[self.predicted] = True
        log.info("hypernet LM stage: %d predicted rows (of %d new tokens)", len(self.predicted), len(new))

    @staticmethod
    def _base_rows(hypernet, pieces: list[list[int]]) -> dict[str, torch.Tensor]:
        from vocadapt.init.context import combine_rows
        from vocadapt.io.checkpoint import Checkpoint

        ckpt = Checkpoint(hypernet.record["source_model"])
        names = {"input": ckpt.vocab.input, "output": ckpt.vocab.output or ckpt.vocab.input}
        return {m: combine_rows(ckpt.read(names[m]).float(), pieces).values for m in hypernet.matrices}

    def setup(self, accelerator) -> nn.Module:
        llm = super().setup(accelerator)
        llm.requires_grad_(False)
        net = self.hn.net
        net.set_table(torch.from_numpy(self.sets.table))
        # No dropout while the LM drives the rows (and train mode kept for cuDNN's RNN backward).
        net.lstm.dropout = 0.0
        for m in net.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        net.requires_grad_(True)
        net.table.weight.requires_grad_(False)
        model = LmStage(llm, net, self.hn.primitives, self.hn.matrices)
        if self.base is not None:
            slot = torch.full((len(self.sets.lengths),), -1, dtype=torch.long)
            slot[torch.from_numpy(self.predicted)] = torch.arange(len(self.predicted))
            model.set_base(slot, self.base)
        model = model.to(accelerator.device)
        self.refresh(model)
        return model

    def param_groups(self, model) -> list[dict]:
        return [{"params": [p for p in model.net.parameters() if p.requires_grad], "weight_decay": self.config.weight_decay}]

    @torch.no_grad()
    def refresh(self, model: LmStage) -> None:
        """Write the current predictions of every predicted row into the model (the cache)."""
        from vocadapt.hypernet.train import HypernetConfig, validation_batches

        was = model.net.training
        model.net.eval()
        cfg = HypernetConfig(vectors=self.hn.record["vectors"], max_words=int(self.hn.record["max_words"]), seed=self.config.seed, progress=False)
        dev = next(model.net.parameters()).device
        for batch in validation_batches(self.sets, self.predicted, cfg):
            coords = model.net.coordinates(batch.words.to(dev), batch.lengths)
            for m in model.matrices:
                w = model.weight(m)
                tok = batch.tokens.to(dev)
                w[tok] = model.rows(coords, m, tok).to(w.dtype)
        model.net.train(was)

    def global_batch(self, step: int) -> GlobalBatch:
        from vocadapt.hypernet.data import make_batch

        gb = super().global_batch(step)
        rng = np.random.default_rng([self.config.seed, step, 0x11])
        for row in gb.micro:
            for micro in row:
                present = np.unique(micro["input_ids"].numpy())
                present = present[(present < len(self._is_pred)) & self._is_pred[np.minimum(present, len(self._is_pred) - 1)]]
                others = np.setdiff1d(self.predicted, present, assume_unique=True)
                extra = rng.choice(others, min(self.config.sample_new, len(others)), replace=False) if len(others) else others
                tokens = np.concatenate([present, np.sort(extra)])
                micro["sets"] = make_batch(self.sets, tokens, rng, int(self.hn.record["max_words"])) if len(tokens) else None
        return gb

    def loss_sum(self, model: LmStage, micro) -> torch.Tensor:
        dev = model.weight("input").device
        ids, labels = micro["input_ids"].to(dev), micro["labels"].to(dev)
        weights = {m: model.weight(m).detach() for m in ("input", "output") if m == "input" or not model.tied}
        sets = micro["sets"]
        if sets is not None:
            coords = model.net.coordinates(sets.words.to(dev), sets.lengths)
            tok = sets.tokens.to(dev)
            for m in model.matrices:
                # out-of-place: the cached rows stay detached, the recomputed ones carry gradient
                weights[m] = weights[m].index_copy(0, tok, model.rows(coords, m, tok).to(weights[m].dtype))
        w_in = weights["input"]
        w_out = w_in if model.tied else weights["output"]
        base = getattr(model.llm, model.llm.base_model_prefix)
        hidden = base(inputs_embeds=nn.functional.embedding(ids, w_in)).last_hidden_state
        logits = hidden[:, :-1] @ w_out.T
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100, reduction="sum")

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        self.refresh(model)
        return super().evaluate(model.llm)

    def export(self, model, out_dir: Path) -> None:
        state = self.run_state
        from safetensors.torch import save_file

        from vocadapt.hypernet.train import CONFIG_FILE, QUALITY_FILE, WEIGHTS_FILE
        from vocadapt.provenance import write_provenance

        self.refresh(model)
        out_dir = Path(out_dir)
        tensors = {f"net.{k}": v.detach().float().cpu().contiguous() for k, v in model.net.trainable_state().items()}
        for m, p in self.hn.primitives.items():
            tensors[f"primitives.{m}"] = p.contiguous()
        save_file(tensors, str(out_dir / WEIGHTS_FILE))
        record = {**self.hn.record, "objective": "lm", "lm_stage": {
            "from": str(self.hn.path), "model": str(self.model_dir), "steps": state.get("step"), "tokens": state.get("tokens"),
            "metrics": state.get("metrics"), "predicted_rows": len(self.predicted)}}
        (out_dir / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if (self.hn.path / QUALITY_FILE).is_file():  # the reconstruction figures of the stage it started from
            (out_dir / QUALITY_FILE).write_text((self.hn.path / QUALITY_FILE).read_text(encoding="utf-8"), encoding="utf-8")
        if (self.run_dir / "train_log.jsonl").is_file():
            (out_dir / "train_log.jsonl").write_text((self.run_dir / "train_log.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
        write_provenance(out_dir, "hypernet.tune", self.config, inputs={"hypernet": self.hn.path, "model": self.model_dir},
                         results={**state, "predicted_rows": len(self.predicted)})

    def settings(self) -> dict:
        from vocadapt.provenance import fingerprint

        base = super().settings()
        return {**base, "hypernet": fingerprint(self.hn.path / "hypernet.safetensors"), "sample_new": self.config.sample_new}


@dataclass
class TuneResult:
    out_dir: Path  # run directory; the tuned hypernetwork is out_dir / "model"
    steps: int
    tokens: int
    seconds: float
    metrics: dict[str, Any]


def tune_hypernet(hypernet_dir: str | Path, model_dir: str | Path, corpus, out_dir: str | Path,
                  config: LmStageConfig | None = None, *, eval_text=None, resume: bool = False) -> TuneResult:
    """Train ``hypernet_dir``'s network through ``model_dir``'s LM loss on ``corpus``.

    ``model_dir``: the output of ``vocadapt init ... --method hyperofa --hypernet hypernet_dir``.
    ``eval_text``: held-out text files or strings (bits per byte at each evaluation).
    """
    from vocadapt.corpus import read_texts
    from vocadapt.hypernet.train import load_hypernet
    from vocadapt.train.engine import run

    config = config or LmStageConfig()
    corpus = [corpus] if isinstance(corpus, (str, Path)) else list(corpus)
    texts = None
    if eval_text is not None:
        items = [eval_text] if isinstance(eval_text, (str, Path)) else list(eval_text)
        texts = items if all(isinstance(t, str) and not Path(t).exists() for t in items) else read_texts(items, text_field=config.text_field)
    out_dir = Path(out_dir)
    if not resume and out_dir.exists() and any(out_dir.iterdir()):
        raise VocadaptError(f"output directory exists and is not empty: {out_dir} (use --resume to continue it, or another --out)")
    hn = load_hypernet(hypernet_dir)
    task = LmStageTask(Path(model_dir), hn, corpus, config, texts, out_dir)
    r = run(task, config, out_dir, resume=resume)
    return TuneResult(out_dir, r.steps, r.tokens, r.seconds, r.metrics)


__all__ = ["LmStageConfig", "LmStageTask", "TuneResult", "tune_hypernet"]
