"""Embedding-only continued pretraining (LEP stage 1): the causal-LM task of the engine.

The model's body stays frozen; what trains is chosen by ``trainable``:

* ``embeddings+head`` (default, the paper's setting): input embedding and LM head; a tied model
  has one matrix and trains it once.
* ``embeddings``: the input embedding only (an untied head stays frozen).
* ``new-rows``: only the rows of tokens that ``vocadapt init`` did not copy from the source
  model; copied rows stay bit-identical (see :mod:`vocadapt.train.rows`).
  ``copied_lr`` between 0 and 1 is the middle way for the other sets: the copied rows train at
  that fraction of the learning rate, and weight decay pulls them back to the source model's.
* ``layers:0,1,-2,-1``: embeddings + head + those decoder layers (Yamaguchi et al.);
  ``layers_lr`` below 1 trains the layers at that fraction of the learning rate.

Loss: next-token cross entropy summed over the non-padding labels of a micro-batch (the engine
divides by the tokens of the whole global batch). Evaluation: bits per byte of held-out text
with the project's :func:`vocadapt.evaluate.bpb.bits_per_byte`.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vocadapt.errors import VocadaptError
from vocadapt.model import decoder_layers
from vocadapt.train.engine import GlobalBatch, OptimConfig, Task

log = logging.getLogger("vocadapt")

_TRAINABLE = ("embeddings+head", "embeddings", "new-rows")
_OBJECTIVES = ("lm", "distill", "lm+distill")
_BLOCK_ORDERS = ("random", "coverage")
_LAYERS = re.compile(r"^layers:(-?\d+)(,-?\d+)*$")


@dataclass
class TrainConfig(OptimConfig):
    """Settings of ``vocadapt train`` (embedding-only continued pretraining)."""

    trainable: str = field(default="embeddings+head", metadata={
        "help": "what trains: embeddings+head | embeddings | new-rows | layers:0,1,-2,-1 (embeddings+head+those layers)"})
    copied_lr: float = field(default=1.0, metadata={
        "help": "learning-rate multiplier for the embedding rows init copied from the source model (0: frozen, "
                "1: like the new rows); below 1 their weight decay pulls them back to the source model's"})
    layers_lr: float = field(default=1.0, metadata={
        "help": "learning-rate multiplier for the decoder layers of --trainable layers:... (1: the embeddings' rate)"})
    seq_len: int = field(default=512, metadata={"help": "tokens per training block"})
    batch_size: int = field(default=16, metadata={"help": "blocks per optimizer step (the global batch, over all processes)"})
    batch_tokens: int = field(default=0, metadata={"help": "tokens per optimizer step; if set, batch_size = batch_tokens // seq_len"})
    block_order: str = field(default="random", metadata={
        "help": "order of the training blocks: random (a seeded permutation per epoch) | coverage (the first epoch "
                "opens with the blocks that show the most new tokens not shown yet; later epochs random)"})
    eval_max_docs: int = field(default=200, metadata={"help": "held-out documents scored for bits per byte at each evaluation"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward (less memory, slower)"})
    dtype: str = field(default="float32", metadata={"help": "weights dtype: float32 (with bf16 autocast on GPU) | bfloat16 | float16"})
    text_field: str = field(default="text", metadata={"help": "JSONL field holding the text"})
    heldout_overlap: str = field(default="error", metadata={
        "help": "held-out documents that also occur in the training text: error | drop (score only the others)"})
    objective: str = field(default="lm", metadata={
        "help": "loss: lm (next-token) | distill (match the original model's chunk likelihoods, ALM) | lm+distill"})
    teacher: str = field(default="", metadata={
        "help": "distillation teacher: the original model with its own tokenizer (default: the model `vocadapt init` started from)"})
    teacher_dtype: str = field(default="auto", metadata={
        "help": "teacher weights dtype: auto (bfloat16 on a GPU or CPU with native bf16, else float32) | float32 | bfloat16 | float16"})
    distill_loss: str = field(default="binary-kl", metadata={
        "help": "per-chunk distance: binary-kl (ALM's binarised loss) | abs (|log p_teacher - log p_student|)"})
    distill_temperature: float = field(default=100.0, metadata={
        "help": "binary-kl temperature: chunk probabilities exp(logp / T), kept away from 0"})
    distill_weight: float = field(default=1.0, metadata={
        "help": "weight of the distillation term in lm+distill (the LM term has weight 1)"})
    distill_hidden: str = field(default="none", metadata={
        "help": "also match the final hidden state at each chunk's end (ALM's latents term): none | last"})
    distill_hidden_weight: float = field(default=1.0, metadata={
        "help": "weight of the hidden-state term (squared error over the teacher's mean squared norm)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trainable not in _TRAINABLE and not _LAYERS.match(self.trainable):
            raise ValueError(
                f"trainable must be one of {', '.join(_TRAINABLE)} or layers:I,J,... (e.g. layers:0,-1), not {self.trainable!r}"
            )
        if not 0.0 <= self.copied_lr <= 1.0:
            raise ValueError(f"copied_lr must be between 0 and 1, not {self.copied_lr}")
        if self.trainable == "new-rows" and self.copied_lr != 1.0:
            raise ValueError("trainable new-rows freezes the copied rows already; copied_lr applies to "
                             "embeddings+head, embeddings and layers:...")
        if not 0.0 < self.layers_lr <= 1.0:
            raise ValueError(f"layers_lr must be above 0 and at most 1, not {self.layers_lr}")
        if self.layers_lr != 1.0 and not self.layer_indices:
            raise ValueError(f"layers_lr applies to trainable layers:..., not {self.trainable}")
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, not {self.seq_len}")
        if self.batch_tokens < 0:
            raise ValueError(f"batch_tokens must be 0 or more, not {self.batch_tokens}")
        if self.batch_tokens:
            if self.batch_tokens < self.seq_len:
                raise ValueError(f"batch_tokens ({self.batch_tokens}) is less than one block of seq_len={self.seq_len}")
            self.batch_size = self.batch_tokens // self.seq_len
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.block_order not in _BLOCK_ORDERS:
            raise ValueError(f"block_order must be one of {', '.join(_BLOCK_ORDERS)}, not {self.block_order!r}")
        if self.eval_max_docs < 1:
            raise ValueError(f"eval_max_docs must be at least 1, not {self.eval_max_docs}")
        if self.heldout_overlap not in ("error", "drop"):
            raise ValueError(f"heldout_overlap must be error or drop, not {self.heldout_overlap!r}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, not {self.dtype!r}")
        if self.objective not in _OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(_OBJECTIVES)}, not {self.objective!r}")
        if self.teacher_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"teacher_dtype must be auto, float32, bfloat16 or float16, not {self.teacher_dtype!r}")
        from vocadapt.train.distill import DIFFS, HIDDEN

        if self.distill_loss not in DIFFS:
            raise ValueError(f"distill_loss must be one of {', '.join(DIFFS)}, not {self.distill_loss!r}")
        if not self.distill_temperature > 0:
            raise ValueError(f"distill_temperature must be above 0, not {self.distill_temperature}")
        if not self.distill_weight > 0:
            raise ValueError(f"distill_weight must be above 0, not {self.distill_weight}")
        if self.distill_hidden not in HIDDEN:
            raise ValueError(f"distill_hidden must be one of {', '.join(HIDDEN)}, not {self.distill_hidden!r}")
        if not self.distill_hidden_weight > 0:
            raise ValueError(f"distill_hidden_weight must be above 0, not {self.distill_hidden_weight}")
        if self.distill_hidden != "none" and not self.distills:
            raise ValueError(f"distill_hidden {self.distill_hidden} needs objective distill or lm+distill, not {self.objective}")

    @property
    def distills(self) -> bool:
        return "distill" in self.objective

    @property
    def row_subset(self) -> float | None:
        """The copied rows' learning-rate multiplier when rows train apart (None: one matrix)."""
        return 0.0 if self.trainable == "new-rows" else (self.copied_lr if self.copied_lr < 1.0 else None)

    @property
    def layer_indices(self) -> list[int]:
        return [int(x) for x in self.trainable.split(":", 1)[1].split(",")] if self.trainable.startswith("layers:") else []


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path  # run_dir / "model": the trained model as a standard HF directory
    steps: int
    tokens: int
    tokens_per_s: float
    final_bpb: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    model_step: int | None = None  # the step whose weights model_dir holds: the last, or the best (--export-model)
    new_rows_seen: float | None = None  # share of the new rows the batches showed (None: no init provenance)


def next_token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross entropy of each position's next token; labels -100 are skipped.

    Shift the labels, not the logits: slicing the logits copies a batch x seq x vocab tensor
    (200 MB at 4 x 256 x 49k) forward and again for its gradient."""
    target = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=-100,
                                             reduction="sum")


class EmbeddingTask(Task):
    """Continued pretraining of a causal LM with only the embeddings (and chosen extras) trainable."""

    name = "embeddings"
    # Distillation state; None unless the objective distils (subclasses such as the helper's
    # from-scratch task never do).
    teacher_dir = aligner = teacher = None
    coverage: dict[str, Any] | None = None  # see _coverage (the helper's from-scratch task has none)

    def __init__(self, model_dir: Path, corpus: list[Path], config: TrainConfig, eval_texts: list[str] | None):
        from vocadapt.model import load_model
        from vocadapt.io.checkpoint import Checkpoint
        from vocadapt.train.data import PackedBlocks, check_heldout, overlaps, tokenize_corpus

        self.model_dir = Path(model_dir)
        self.ckpt = Checkpoint(self.model_dir)  # finds the embeddings, or says which names it looked for
        self.config = config
        self._load_model = load_model
        from vocadapt.tokenizer.load import load_tokenizer

        self.tokenizer = load_tokenizer(self.model_dir, f"the tokenizer of {self.model_dir}")
        from vocadapt.train.rows import new_row_ids

        try:  # the rows init did not copy: what --trainable new-rows, --copied-lr and coverage are about
            self.new_ids = new_row_ids(self.model_dir, self.tokenizer)
        except VocadaptError:
            if config.row_subset is not None:
                raise
            self.new_ids = None  # not made by `vocadapt init`: no new rows to tell apart
        n_layers = self.ckpt.text_config.get("num_hidden_layers", self.ckpt.text_config.get("n_layer"))
        for i in config.layer_indices:
            if isinstance(n_layers, int) and not -n_layers <= i < n_layers:
                raise VocadaptError(f"--trainable {config.trainable}: layer {i} does not exist (the model has {n_layers})")
        self.corpus_paths = [Path(p) for p in corpus]
        from vocadapt.train.engine import process_state

        # Under `accelerate launch` the main process tokenizes (and caches) first; the others read the cache.
        with process_state().main_process_first():
            self.data = tokenize_corpus(self.tokenizer, self.corpus_paths, text_field=config.text_field,
                                        progress=config.progress)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        cover = None
        if config.block_order == "coverage":
            cover = self.new_ids.numpy() if self.new_ids is not None else np.arange(len(self.tokenizer))
        self.blocks = PackedBlocks(self.data, config.seq_len, pad_id=pad, cover=cover)
        eval_texts = list(eval_texts or [])
        if eval_texts and config.heldout_overlap == "drop":
            hits = overlaps(self.data, eval_texts)
            if any(hits):
                log.info("held-out text: %d of %d documents also occur in the training text; scoring the other %d",
                         sum(hits), len(hits), len(hits) - sum(hits))
            eval_texts = [t for t, hit in zip(eval_texts, hits) if not hit]
            if not eval_texts:
                raise VocadaptError("every held-out document also occurs in the training text: nothing left to score")
        elif eval_texts:
            check_heldout(self.data, eval_texts)
        self.eval_texts = eval_texts[: config.eval_max_docs]
        self.coverage = self._coverage()
        self.world = 1
        if config.distills:
            self._prepare_teacher()
        log.info("training data: %d documents, %d tokens, %d blocks of %d (%.0f%% filled)",
                 self.data.n_docs, self.data.n_tokens, len(self.blocks), config.seq_len, 100 * self.blocks.fill)

    def _coverage(self) -> dict[str, Any] | None:
        """Which of the new rows this run's batches show the model, known before it starts (the
        batches depend on seed and step alone). A row no batch shows learns nothing about its own
        token: an input row gets no gradient, a tied or trained head row only the push-down of
        other tokens' softmax. And a mean-init row is not predicted: tied, its logit is the mean
        of its pieces' logits, never above the best of them (docs/distill.md, "Why the copy
        fails"). None for a model `vocadapt init` did not make (no new rows to count)."""
        if self.new_ids is None:
            return None
        cfg, new = self.config, self.new_ids.numpy()
        counts = self.blocks.token_counts(cfg.steps * cfg.batch_size, cfg.seed, minlength=int(new.max()) + 1)[new]
        out: dict[str, Any] = {"new_rows": int(new.size), "new_rows_seen": int((counts > 0).sum()),
                               "new_rows_seen_5x": int((counts >= 5).sum())}
        msg = (f"the {cfg.steps} steps show the model {out['new_rows_seen']:,} of its {new.size:,} new tokens "
               f"({out['new_rows_seen'] / new.size:.0%}; {out['new_rows_seen_5x']:,} at least 5 times)")
        if self.eval_texts:
            shown = np.full(int(new.max()) + 1, -1)  # id -> times shown; -1: not a new row
            shown[new] = counts
            held = np.fromiter(itertools.chain.from_iterable(self.tokenizer(self.eval_texts, add_special_tokens=False)["input_ids"]),
                               dtype=np.int64)  # one batched call: the fast tokenizer encodes the texts in parallel
            held = shown[held[held < shown.size]]
            held = held[held >= 0]
            if held.size:
                out["heldout_new_unseen"] = float((held == 0).mean())
                msg += f"; {out['heldout_new_unseen']:.0%} of the new tokens in the held-out text are ones it never sees"
        if out["new_rows_seen"] < new.size / 2:
            # most rows will not learn their token: say what would change that
            hint = "" if cfg.block_order == "coverage" else "--block-order coverage, "
            log.warning("%s: most new rows learn nothing about their own token; %smore --steps or a larger --batch-size "
                        "show more of them, and a vocabulary with fewer new tokens shows each one more often", msg, hint)
        else:
            log.info("%s", msg)
        return out

    def _prepare_teacher(self) -> None:
        """Resolve the distillation teacher and build the chunk aligner (the model loads in setup)."""
        from vocadapt.model import check_model_dir, start_token_id
        from vocadapt.tokenizer.load import load_tokenizer
        from vocadapt.train.distill import ChunkAligner, teacher_dir_from

        teacher = self.config.teacher or teacher_dir_from(self.model_dir)
        if not teacher:
            raise VocadaptError(
                f"--objective {self.config.objective} needs a teacher: {self.model_dir} does not record the model "
                "`vocadapt init` started from; pass --teacher ORIGINAL_MODEL_DIR"
            )
        self.teacher_dir = check_model_dir(teacher)
        t_tok = load_tokenizer(self.teacher_dir, f"the teacher's tokenizer ({self.teacher_dir})")
        self.aligner = ChunkAligner(self.tokenizer, t_tok, start_token_id(self.tokenizer), start_token_id(t_tok))
        log.info("distilling from %s (%s)", self.teacher_dir, self.config.objective)

    # -- model --------------------------------------------------------------------------------
    def setup(self, accelerator) -> torch.nn.Module:
        cfg = self.config
        self.world = accelerator.num_processes
        per_step = cfg.grad_accum * self.world
        if cfg.batch_size % per_step:
            raise VocadaptError(
                f"batch_size {cfg.batch_size} is not divisible by grad_accum x processes = {per_step}; "
                "choose a batch size that splits evenly"
            )
        model, _ = self._load_model(self.model_dir, dtype=cfg.dtype)
        if model.get_input_embeddings().weight.shape[0] < len(self.tokenizer):
            raise VocadaptError(
                f"{self.model_dir}: the tokenizer has {len(self.tokenizer)} tokens but the embedding only "
                f"{model.get_input_embeddings().weight.shape[0]} rows"
            )
        model.requires_grad_(False)
        self._mark_trainable(model)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        model.train()
        if self.teacher_dir is not None:
            dtype = resolve_teacher_dtype(cfg.teacher_dtype, accelerator.device)
            log.info("teacher weights in %s", dtype)
            teacher, _ = self._load_model(self.teacher_dir, dtype=dtype)
            # Frozen and outside the optimizer, DDP and checkpoints: it only scores text.
            self.teacher = teacher.requires_grad_(False).eval().to(accelerator.device)
        return model.to(accelerator.device)

    def _mark_trainable(self, model) -> None:
        cfg = self.config
        if cfg.row_subset is not None:
            from vocadapt.train.rows import train_new_rows

            train_new_rows(model, self.new_ids, cfg.row_subset, head=cfg.trainable != "embeddings")
        else:
            model.get_input_embeddings().weight.requires_grad_(True)
            if cfg.trainable != "embeddings":
                model.get_output_embeddings().weight.requires_grad_(True)
        if cfg.layer_indices:
            layers = decoder_layers(model)
            for i in cfg.layer_indices:
                if not -len(layers) <= i < len(layers):
                    raise VocadaptError(f"--trainable {cfg.trainable}: layer {i} does not exist (the model has {len(layers)})")
                layers[i].requires_grad_(True)

    @property
    def layers_lr(self) -> float:
        """The decoder layers' learning-rate multiplier (1: one rate for everything)."""
        return self.config.layers_lr

    def param_groups(self, model) -> list[dict]:
        # Embedding matrices get the configured decay, like the paper; so do trained layers'
        # weight matrices, but not their norms and biases (1-D), as usual for AdamW. The layers
        # get their own groups when they train at another rate (--layers-lr): the rate that
        # suits new embedding rows is a large one for pretrained weights. The embeddings' group
        # comes first: the train log reports the first group's rate.
        cfg, scale = self.config, self.layers_lr
        in_layers = {id(p) for layer in decoder_layers(model) for p in layer.parameters()} if scale != 1.0 else set()
        trainable, seen = [], set()
        for _, p in model.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                trainable.append(p)
        groups = []
        for layer in (False, True):
            for decays in (True, False):
                params = [p for p in trainable if (id(p) in in_layers) == layer and (p.ndim >= 2) == decays]
                if params:
                    groups.append({"params": params, "weight_decay": cfg.weight_decay if decays else 0.0,
                                   **({"lr": cfg.lr * scale} if layer else {})})
        return groups

    # -- data ---------------------------------------------------------------------------------
    def global_batch(self, step: int) -> GlobalBatch:
        cfg = self.config
        idx = self.blocks.block_indices(step * cfg.batch_size, cfg.batch_size, cfg.seed)
        if self.aligner is not None:
            return self._distill_batch(idx)
        full = self.blocks.batch(idx)
        micro = [[{key: t[part] for key, t in full.items()} for part in row] for row in self._micro_slices()]
        n_items = int((full["labels"][:, 1:] != -100).sum())
        n_tokens = int((full["labels"] != -100).sum())
        return GlobalBatch(micro=micro, n_items=max(n_items, 1), n_tokens=n_tokens)

    def _micro_slices(self) -> list[list[slice]]:
        """``[k][r]``: the blocks of the global batch that micro-batch ``k`` of rank ``r`` gets."""
        cfg = self.config
        per = cfg.batch_size // (cfg.grad_accum * self.world)
        return [[slice((k * self.world + r) * per, (k * self.world + r + 1) * per) for r in range(self.world)]
                for k in range(cfg.grad_accum)]

    def _distill_batch(self, idx: list[int]) -> GlobalBatch:
        """Student and teacher encodings of the blocks' text, with aligned chunks (see train.distill).

        Items are chunks for ``distill``, predicted tokens for ``lm+distill`` (whose distillation
        sum is rescaled so that each term is a mean over its own items)."""
        cfg = self.config
        spans = self.blocks.spans
        micro = [[{"distill": self.aligner.batch([self.data.ids[spans[b][0]:spans[b][1]] for b in idx[part]])}
                  for part in row] for row in self._micro_slices()]
        flat = [m["distill"] for row in micro for m in row]
        n_chunks = sum(d.n_chunks for d in flat)
        n_lm = sum(int(d.student.mask[:, 1:].sum()) for d in flat)
        n_tokens = sum(int(d.student.mask.sum()) for d in flat)
        if n_chunks == 0:
            raise VocadaptError("distillation: no text span is a token boundary of both tokenizers in this batch")
        lm = cfg.objective == "lm+distill"
        scale = cfg.distill_weight * n_lm / n_chunks if lm else 1.0
        for m in (m for row in micro for m in row):
            m["lm"], m["scale"] = lm, scale
        return GlobalBatch(micro=micro, n_items=max(n_lm if lm else n_chunks, 1), n_tokens=n_tokens)

    def _distill_loss_sum(self, model, micro) -> torch.Tensor:
        from vocadapt.train.distill import chunk_loss, chunk_sums, hidden_loss, token_logprobs

        batch, cfg = micro["distill"], self.config
        device = next(p for p in model.parameters()).device
        hidden = cfg.distill_hidden != "none"
        s_ids, s_chunk = batch.student.ids.to(device), batch.student.chunk.to(device)
        out = model(input_ids=s_ids, output_hidden_states=hidden)
        logits = out.logits
        student = chunk_sums(token_logprobs(logits, s_ids), s_chunk, batch.n_chunks)
        with torch.no_grad():
            t_ids, t_chunk = batch.teacher.ids.to(device), batch.teacher.chunk.to(device)
            t_out = self.teacher(input_ids=t_ids, output_hidden_states=hidden)
            teacher = chunk_sums(token_logprobs(t_out.logits, t_ids), t_chunk, batch.n_chunks)
            t_final = t_out.hidden_states[-1] if hidden else None  # only the final state is compared
            del t_out
        loss = chunk_loss(teacher, student, diff=cfg.distill_loss, temperature=cfg.distill_temperature).sum()
        if hidden:  # "last": the final (normed) state, the one the head reads
            loss = loss + cfg.distill_hidden_weight * hidden_loss(
                out.hidden_states[-1], s_chunk, t_final, t_chunk, batch.n_chunks).sum()
        loss = loss * micro["scale"]
        if micro["lm"]:
            labels = torch.where(batch.student.mask, batch.student.ids, -100).to(device)
            loss = loss + next_token_loss_sum(logits, labels)
        return loss

    def loss_sum(self, model, micro) -> torch.Tensor:
        if "distill" in micro:
            return self._distill_loss_sum(model, micro)
        device = next(p for p in model.parameters()).device
        ids, labels = micro["input_ids"].to(device), micro["labels"].to(device)
        # No attention mask: padding is only at the end of a block and attention is causal, so
        # it cannot change a real token's output, and SDPA keeps its fast unmasked kernel.
        return next_token_loss_sum(model(input_ids=ids).logits, labels)

    # -- evaluation and export ------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        if not self.eval_texts:
            return {}
        from vocadapt.evaluate.bpb import LN2, bits_per_byte

        r = bits_per_byte(model, self.tokenizer, self.eval_texts, max_length=self.config.seq_len)
        return {"bpb": r.bits_per_byte, "val_loss": r.nll_bits * LN2 / max(r.n_tokens, 1)}

    def export(self, model, out_dir: Path) -> None:
        from vocadapt.train.export import export_model

        export_model(self, model, out_dir, self.run_state)

    def settings(self) -> dict:
        from vocadapt.provenance import fingerprint

        cfg = asdict(self.config)
        keep = ("trainable", "seq_len", "batch_size", "dtype", "gradient_checkpointing", "text_field", "heldout_overlap",
                "objective")
        out = {**{k: cfg[k] for k in keep}, "model": fingerprint(self.model_dir), "data": self.data.key}
        if self.config.copied_lr != 1.0:  # absent at 1, so runs from before the option still resume
            out["copied_lr"] = self.config.copied_lr
        if self.config.layers_lr != 1.0:  # likewise
            out["layers_lr"] = self.config.layers_lr
        if self.config.block_order != "random":  # likewise
            out["block_order"] = self.config.block_order
        if self.config.distills:
            out.update({k: cfg[k] for k in ("teacher_dtype", "distill_loss", "distill_temperature", "distill_weight")},
                       teacher=fingerprint(self.teacher_dir))
            if self.config.distill_hidden != "none":  # absent when off, so runs from before the option still resume
                out.update({k: cfg[k] for k in ("distill_hidden", "distill_hidden_weight")})
        return out


def resolve_teacher_dtype(requested: str, device: torch.device) -> str:
    """The teacher's weight dtype for ``--teacher-dtype requested`` on ``device``.

    ``auto`` is bf16 wherever bf16 is fast (:func:`vocadapt.model.frozen_dtype`). The teacher is
    frozen and only scores text, so its precision sets the noise of the distillation target, not of
    any update: on the demo (SmolLM2 teacher, `extend` student, 30 steps, 2-core EPYC with
    AVX512-BF16) bf16 gave the same held-out bits per byte as fp32 to three decimals (man pages
    1.718, fortunes 2.025) and 20% more tokens per second (74 against 62).
    """
    from vocadapt.model import frozen_dtype

    return requested if requested != "auto" else frozen_dtype(device)


def train_embeddings(model_dir: str | Path, corpus, out_dir: str | Path, config: TrainConfig | None = None, *,
                     eval_text=None, resume: bool = False) -> TrainResult:
    """Continue pretraining ``model_dir`` on ``corpus`` with only the embeddings trainable.

    ``corpus``: text files, directories, ``.gz`` or JSONL (one path or a list). ``eval_text``:
    held-out text files (or a list of strings), scored in bits per byte at step 0, every
    ``eval_every`` steps and at the end; refused if any document also occurs in the corpus.
    Writes ``out_dir/train_log.jsonl``, checkpoints and the final model ``out_dir/model``.
    """
    from vocadapt.corpus import read_texts
    from vocadapt.io.checkpoint import resolve_run_dir
    from vocadapt.train.engine import run

    config = config or TrainConfig()
    if isinstance(corpus, (str, Path)):
        corpus = [corpus]
    model_dir = resolve_run_dir(model_dir)
    texts = None
    if eval_text is not None:
        if isinstance(eval_text, (str, Path)):
            eval_text = [eval_text]
        items = list(eval_text)
        texts = items if items and all(isinstance(t, str) and not Path(t).exists() for t in items) else read_texts(
            items, text_field=config.text_field)
    out_dir = Path(out_dir)
    if not resume and out_dir.exists() and any(out_dir.iterdir()):
        raise VocadaptError(f"run directory exists and is not empty: {out_dir} (use --resume to continue it, or another --out)")
    if config.val_loss_needed_by and not texts:
        raise VocadaptError(f"{config.val_loss_needed_by} watches the held-out loss: give held-out text with --eval-text")
    task = EmbeddingTask(model_dir, list(corpus), config, texts)
    result = run(task, config, out_dir, resume=resume)
    return TrainResult(
        run_dir=out_dir, model_dir=out_dir / "model", steps=result.steps, tokens=result.tokens,
        tokens_per_s=result.tokens_per_s, final_bpb=result.model_metrics.get("bpb"), metrics=result.model_metrics,
        stopped_early=result.stopped_early, model_step=result.model_step,
        new_rows_seen=task.coverage["new_rows_seen"] / task.coverage["new_rows"] if task.coverage else None,
    )
