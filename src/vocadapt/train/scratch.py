"""``vocadapt helper train``: a small causal LM trained from scratch with the target tokenizer.

Linear-regression transfer (``vocadapt init --method regression``) needs a helper model whose
tokenizer is the new one; when none exists for the language, the seed paper's answer is to train
one. This is that: a Llama-architecture model (a few layers, small hidden size) trained on the
target corpus by the shared engine (:mod:`vocadapt.train.engine`), same data pipeline, batches,
schedule, checkpoints and ``--resume`` as ``vocadapt train``. The output run directory holds the
helper as a standard HF directory in ``model/`` (the run directory itself is accepted wherever a
model directory is).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vocadapt.errors import VocadaptError
from vocadapt.train.engine import OptimConfig
from vocadapt.train.lm import EmbeddingTask

log = logging.getLogger("vocadapt")


@dataclass
class HelperConfig(OptimConfig):
    """Settings of ``vocadapt helper train``: the model's size and the from-scratch schedule."""

    steps: int = field(default=300, metadata={"help": "optimizer steps (global batches)"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (from scratch: higher than fine-tuning)"})
    warmup_steps: int = field(default=30, metadata={"help": "linear warmup steps from 0 to lr"})
    hidden_size: int = field(default=256, metadata={"help": "model width (also the regression's feature dimension)"})
    layers: int = field(default=4, metadata={"help": "decoder layers"})
    heads: int = field(default=4, metadata={"help": "attention heads (hidden_size must divide by it)"})
    intermediate_size: int = field(default=0, metadata={"help": "MLP width (0: 8/3 x hidden_size, rounded up to 64)"})
    tie_embeddings: bool = field(default=True, metadata={"help": "tie the head to the input embedding (untied: the regression also gets a head map from the helper's head)"})
    seq_len: int = field(default=256, metadata={"help": "tokens per training block"})
    batch_size: int = field(default=16, metadata={"help": "blocks per optimizer step (the global batch)"})
    eval_max_docs: int = field(default=100, metadata={"help": "held-out documents scored for bits per byte at each evaluation"})
    text_field: str = field(default="text", metadata={"help": "JSONL field holding the text"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.hidden_size, self.layers, self.heads, self.batch_size) < 1:
            raise ValueError("hidden_size, layers, heads and batch_size must be at least 1")
        if self.hidden_size % self.heads or (self.hidden_size // self.heads) % 2:
            raise ValueError(f"hidden_size {self.hidden_size} must split into {self.heads} heads of an even size")
        if self.intermediate_size < 0:
            raise ValueError(f"intermediate_size must be 0 (auto) or more, not {self.intermediate_size}")
        if self.seq_len < 2 or self.eval_max_docs < 1:
            raise ValueError("seq_len must be at least 2 and eval_max_docs at least 1")

    @property
    def mlp_size(self) -> int:
        return self.intermediate_size or -(-(8 * self.hidden_size // 3) // 64) * 64


@dataclass
class HelperResult:
    run_dir: Path
    model_dir: Path
    steps: int
    tokens: int
    parameters: int
    seconds: float
    final_bpb: float | None


class HelperTask(EmbeddingTask):
    """Causal-LM training of every parameter of a freshly initialized small Llama.

    Data, batches, loss and evaluation are :class:`EmbeddingTask`'s; only the model (built from a
    config, not loaded), the trainable set (everything) and the export differ.
    """

    name = "helper"

    def __init__(self, tokenizer_path: Path, corpus: list[Path], config: HelperConfig, eval_texts: list[str] | None):
        from vocadapt.tokenizer.load import load_tokenizer
        from vocadapt.train.data import PackedBlocks, check_heldout, tokenize_corpus

        self.tokenizer_path = Path(tokenizer_path)
        self.tokenizer = load_tokenizer(tokenizer_path, "target tokenizer")
        self.config = config
        self.corpus_paths = [Path(p) for p in corpus]
        self.data = tokenize_corpus(self.tokenizer, self.corpus_paths, text_field=config.text_field, progress=config.progress)
        if self.data.n_tokens < config.seq_len:
            raise VocadaptError(f"corpus has {self.data.n_tokens} tokens, less than one block of seq_len={config.seq_len}: give more text")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.blocks = PackedBlocks(self.data, config.seq_len, pad_id=pad)
        self.eval_texts = list(eval_texts or [])[: config.eval_max_docs]
        if self.eval_texts:
            check_heldout(self.data, list(eval_texts or []))
        self.world = 1
        log.info("helper data: %d documents, %d tokens, %d blocks of %d", self.data.n_docs, self.data.n_tokens, len(self.blocks), config.seq_len)

    def model_config(self):
        from transformers import LlamaConfig

        from vocadapt.tokenizer.canonical import vocab_size

        cfg, tok = self.config, self.tokenizer
        return LlamaConfig(
            vocab_size=vocab_size(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.mlp_size,
            num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
            max_position_embeddings=max(2048, cfg.seq_len), tie_word_embeddings=cfg.tie_embeddings,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            architectures=["LlamaForCausalLM"],
        )

    def setup(self, accelerator) -> torch.nn.Module:
        from transformers import LlamaForCausalLM

        cfg = self.config
        self.world = accelerator.num_processes
        if cfg.batch_size % (cfg.grad_accum * self.world):
            raise VocadaptError(
                f"batch_size {cfg.batch_size} is not divisible by grad_accum x processes = {cfg.grad_accum * self.world}"
            )
        model = LlamaForCausalLM(self.model_config())  # weights from the engine's seeded global generator
        model.train()
        return model.to(accelerator.device)

    def export(self, model, out_dir: Path) -> None:
        from vocadapt.provenance import write_provenance

        state = self.run_state
        model.save_pretrained(out_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(str(out_dir))
        write_provenance(
            out_dir, "helper", asdict(self.config),
            inputs={"tokenizer": self.tokenizer_path, **{f"corpus_{i}": p for i, p in enumerate(self.corpus_paths)}},
            results={
                "steps": state["step"], "tokens": state["tokens"], "parameters": sum(p.numel() for p in model.parameters()),
                "data_fingerprint": self.data.key, "metrics": state.get("metrics") or {},
            },
        )

    @property
    def layers_lr(self) -> float:
        return 1.0  # from scratch: every weight is new, one rate

    def settings(self) -> dict:
        from vocadapt.provenance import fingerprint

        cfg = asdict(self.config)
        keep = ("hidden_size", "layers", "heads", "intermediate_size", "tie_embeddings", "seq_len", "batch_size", "text_field")
        return {**{k: cfg[k] for k in keep}, "tokenizer": fingerprint(self.tokenizer_path), "data": self.data.key}


def train_helper(target_tokenizer: str | Path, corpus, out: str | Path, config: HelperConfig | None = None, *,
                 eval_text=None, resume: bool = False) -> HelperResult:
    """Train a small causal LM from scratch with ``target_tokenizer`` on ``corpus``.

    ``corpus``: text files, directories, ``.gz`` or JSONL (one path or a list); ``eval_text``:
    optional held-out text (files), scored in bits per byte during training. Writes the run
    directory ``out`` (log, checkpoints) with the helper as an HF directory in ``out/model``;
    ``out`` itself can be passed to ``vocadapt init ... --method regression``.
    """
    import math
    import time

    from vocadapt.corpus import read_texts
    from vocadapt.train.engine import run

    config = config or HelperConfig()
    corpus = [corpus] if isinstance(corpus, (str, Path)) else list(corpus)
    out = Path(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise VocadaptError(f"run directory exists and is not empty: {out} (use --resume to continue it, or another --out)")
    texts = None
    if eval_text is not None:
        texts = read_texts([eval_text] if isinstance(eval_text, (str, Path)) else list(eval_text), text_field=config.text_field)
    started = time.perf_counter()
    task = HelperTask(Path(target_tokenizer), corpus, config, texts)
    result = run(task, config, out, resume=resume)
    seconds = time.perf_counter() - started
    from vocadapt.io.checkpoint import Checkpoint

    params = sum(math.prod(t.shape) for t in Checkpoint(out / "model").tensors.values())
    log.info("helper: %d steps, %d tokens in %.0f s -> %s", result.steps, result.tokens, seconds, out / "model")
    return HelperResult(out, out / "model", result.steps, result.tokens, params, round(seconds, 1), result.model_metrics.get("bpb"))
