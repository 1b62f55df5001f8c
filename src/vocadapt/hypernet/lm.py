"""Second stage: train the hypernetwork through the frozen LLM's own next-token loss.

No OFA-family method does this (ZeTT trains its own hypernetwork with the LM loss). After the
reconstruction stage the hypernetwork has learned to imitate *source* rows; here it learns
what makes the *target* text predictable. The model is the one ``vocadapt init --method
hyperofa --hypernet DIR`` wrote (target vocabulary; copied, predicted and fallback rows). Its
body, copied rows and fallback rows stay frozen; the rows of the tokens the hypernetwork
predicted are its predictions, so the gradient of the LM loss flows only into the hypernetwork
(LSTM, MLP), never into the model.

Every step recomputes *every* predicted row with gradient, from the same fixed word sample
that ``init`` reads (so the stage trains exactly the function the init will evaluate). The
hypernetwork's activations are not kept: each bucket of tokens runs under activation
checkpointing and is recomputed in the backward pass, so memory stays at one bucket's worth
whatever the vocabulary. Why not only the rows of the tokens in the batch (plus a sample), as
an earlier version did: every row is an LM-head row, so the softmax's normalizer involves all of
them, and with the others frozen at stale values the network learns to raise the rows of the
tokens it sees against the ones it does not. Training loss fell faster than row training's while
held-out bits per byte *rose* (SmolLM2 -> 16k Russian BPE, 30 steps: 2.086 -> 2.253, against
1.857 for row training on the same batches); at export every row moves and the advantage is
gone. The exact computation costs ~one hypernetwork pass over the new vocabulary per step.

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
from vocadapt.train.lm import EmbeddingTask, TrainConfig

log = logging.getLogger("vocadapt")


@dataclass
class LmStageConfig(TrainConfig):
    """Settings of ``vocadapt hypernet tune`` (the LM stage); data and loop settings as ``vocadapt train``."""

    start: str = field(default="base", metadata={"help": "a --base mean network: base (start exactly at mean: a per-coordinate gate on the residual starts at 0 and is learned) | network (start from the reconstruction's residual)"})
    gate_lr: float = field(default=1e-1, metadata={"help": "peak learning rate of the residual gate (start: base); Adam moves it about this much per step"})
    vectors: str | None = field(default=None, metadata={"help": "word vectors (default: the file the hypernetwork was trained with)"})
    target_langs: list[str] | None = field(default=None, metadata={"help": "languages whose words give target word sets (as for init)"})
    steps: int = field(default=50, metadata={"help": "optimizer steps"})
    # 1e-2 / 1e-1: the best of 1e-3, 3e-3, 1e-2 (gate 10x) for 30 steps on SmolLM2 -> Russian (docs/hyperofa.md)
    lr: float = field(default=1e-2, metadata={"help": "peak learning rate of the hypernetwork"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    seq_len: int = field(default=256, metadata={"help": "tokens per training block"})
    batch_size: int = field(default=8, metadata={"help": "blocks per optimizer step"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.start not in ("base", "network"):
            raise ValueError(f"start must be base or network, not {self.start!r}")
        if not self.gate_lr > 0:
            raise ValueError(f"gate_lr must be > 0, not {self.gate_lr}")


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

    def set_base(self, base: dict[str, torch.Tensor], gated: bool) -> None:
        """A ``--base mean`` network: predicted rows are ``base[matrix]`` (one row per predicted
        token, in the task's order) + residual.

        ``gated``: the residual's coordinates are multiplied by a learned per-coordinate gate
        that starts at 0, so the stage starts exactly at ``mean`` and every step it takes is
        the LM loss's choice. Why: the reconstruction's residual, learned on the source
        vocabulary, *raises* the target text's loss (on SmolLM2 -> Russian, bits per byte grow
        monotonically with its scale), and a stage that starts there spends its steps undoing
        it. With the gate at 0 the network's weights get no gradient until the gate moves,
        which is why the gate has its own, larger learning rate (ReZero's trick).
        """
        for m in self.matrices:
            self.register_buffer(f"base_{m}", base[m])
        if gated:
            self.gate = nn.Parameter(torch.zeros(self.net.shape.out_dim))

    def rows(self, coords: torch.Tensor, matrix: str) -> torch.Tensor:
        """(n, d) rows of ``matrix`` from the (n, out_dim) coordinates of every predicted token: that block @ P (+ base)."""
        i = self.blocks.index(matrix)
        if hasattr(self, "gate"):
            coords = coords * self.gate
        out = coords[:, i * self.k : (i + 1) * self.k] @ getattr(self, f"p_{matrix}")
        if hasattr(self, f"base_{matrix}"):
            out = out + getattr(self, f"base_{matrix}")
        return out


class LmStageTask(EmbeddingTask):
    """Next-token loss of the frozen model, gradient into the hypernetwork only."""

    name = "hypernet-lm"

    def __init__(self, model_dir: Path, hypernet, corpus: list[Path], config: LmStageConfig, eval_texts, run_dir: Path):
        super().__init__(model_dir, corpus, config, eval_texts)
        from vocadapt.hypernet.data import WordSets, validation_batches
        from vocadapt.hypernet.train import HypernetConfig
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
        if hypernet.base == "mean":  # a residual needs a mean to add to, as at init
            owned &= np.fromiter((bool(a.decompositions.get(int(t))) for t in new), dtype=bool, count=len(new))
        if not owned.any():
            raise VocadaptError(f"no new token of {model_dir} has a word in {path}: nothing for the hypernetwork to predict")
        # The word sample init reads (same seed, same max_words), fixed: the checkpointed
        # recomputation in the backward pass sees the same inputs as the forward. The rows the
        # hypernetwork owns are kept in the order of these batches.
        cfg = HypernetConfig(vectors=hypernet.record["vectors"], max_words=int(hypernet.record["max_words"]), seed=config.seed, progress=False)
        self.batches = list(validation_batches(self.sets, new[owned], cfg))
        self.predicted = torch.cat([b.tokens for b in self.batches])
        # rows = FVT mean of the source pieces (fixed) + the network's residual, as at init
        self.base = self._base_rows(hypernet, [a.decompositions[int(t)] for t in self.predicted]) if hypernet.base == "mean" else None
        self.gated = self.base is not None and config.start == "base"
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
            model.set_base(self.base, gated=self.gated)
        dev = accelerator.device
        # no refresh here: every step replaces all predicted rows, evaluation and export refresh
        self.inputs = [(b.words.to(dev), b.lengths) for b in self.batches]
        self.tokens = self.predicted.to(dev)
        return model.to(dev)

    def param_groups(self, model) -> list[dict]:
        groups = [{"params": [p for p in model.net.parameters() if p.requires_grad], "weight_decay": self.config.weight_decay}]
        if hasattr(model, "gate"):
            groups.append({"params": [model.gate], "lr": self.config.gate_lr, "weight_decay": 0.0})
        return groups

    @staticmethod
    def net_state(model: LmStage) -> dict[str, torch.Tensor]:
        """The network's weights to save, the gate folded into its output layer.

        coordinates = (W h + b) * scale * gate = (diag(gate) W h + gate * b) * scale, so the
        saved network has the format of any other and needs no gate to be loaded.
        """
        state = {k: v.detach().float().cpu().clone() for k, v in model.net.trainable_state().items()}
        if hasattr(model, "gate"):
            last = len(model.net.mlp) - 1
            g = model.gate.detach().float().cpu()
            state[f"mlp.{last}.weight"] *= g[:, None]
            state[f"mlp.{last}.bias"] *= g
        return state

    @torch.no_grad()
    def refresh(self, model: LmStage) -> None:
        """Write the current predictions of every predicted row into the model (for evaluation and export)."""
        was = model.net.training
        model.net.eval()
        for m, (tok, rows) in self.predicted_rows(model).items():
            w = model.weight(m)
            w[tok] = rows.to(w.dtype)
        model.net.train(was)

    def predicted_rows(self, model: LmStage) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per owned matrix: (token ids, their rows now), with gradient into the network when enabled."""
        from torch.utils.checkpoint import checkpoint

        coords = []
        for words, lengths in self.inputs:
            if torch.is_grad_enabled():
                coords.append(checkpoint(model.net.coordinates, words, lengths, use_reentrant=False))
            else:
                coords.append(model.net.coordinates(words, lengths))
        c = torch.cat(coords)
        return {m: (self.tokens, model.rows(c, m)) for m in model.matrices}

    def loss_sum(self, model: LmStage, micro) -> torch.Tensor:
        dev = model.weight("input").device
        ids, labels = micro["input_ids"].to(dev), micro["labels"].to(dev)
        weights = {m: model.weight(m).detach() for m in ("input", "output") if m == "input" or not model.tied}
        for m, (tok, rows) in self.predicted_rows(model).items():
            # out-of-place: copied and fallback rows stay frozen, the predicted ones carry gradient
            weights[m] = weights[m].index_copy(0, tok, rows.to(weights[m].dtype))
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
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net_state(model).items()}
        for m, p in self.hn.primitives.items():
            tensors[f"primitives.{m}"] = p.contiguous()
        save_file(tensors, str(out_dir / WEIGHTS_FILE))
        record = {**self.hn.record, "objective": "lm", "lm_stage": {
            "from": str(self.hn.path), "model": str(self.model_dir), "steps": state.get("step"), "tokens": state.get("tokens"),
            "metrics": state.get("metrics"), "predicted_rows": len(self.predicted), "start": self.start_label(model)}}
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
        return {**base, "hypernet": fingerprint(self.hn.path / "hypernet.safetensors"),
                "start": "base" if self.gated else "network", "gate_lr": self.config.gate_lr}

    def start_label(self, model: LmStage) -> dict[str, Any]:
        """Where the stage started, and for a gated one how far the gate moved (mean |gate| 0: still mean)."""
        if not hasattr(model, "gate"):
            return {"from": "network"}
        g = model.gate.detach().abs()
        return {"from": "base", "gate_mean_abs": round(float(g.mean()), 4), "gate_max_abs": round(float(g.max()), 4)}


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
    return TuneResult(out_dir, r.steps, r.tokens, r.seconds, r.model_metrics)


__all__ = ["LmStageConfig", "LmStageTask", "TuneResult", "tune_hypernet"]
