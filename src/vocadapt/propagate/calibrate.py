"""Calibration (LEP stage 3): a short LoRA fine-tune of the propagated instruct model.

Training data is chat-format instruction data (JSONL, one ``{"messages": [{"role", "content"},
...]}`` per line) plus generated copy-task examples (the user asks to repeat a paragraph of
target-language text verbatim; the assistant repeats it), as in Tikhomirov & Chernyshev 2024.
Each conversation is rendered with the model's chat template; the loss is on the assistant
turns only (their tokens, including the end-of-turn token the template writes after them).

The model trains through the shared engine (:func:`vocadapt.train.engine.run`): LoRA adapters
(peft) on the chosen linear layers, optionally the input embedding and the head as well. The
result is merged into a standard HF directory (only the changed tensors are rewritten; the
other shards are copied), or kept as a peft adapter (``keep_adapter``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vocadapt.errors import VocadaptError
from vocadapt.evaluate.copy_task import DEFAULT_PROMPT
from vocadapt.train.engine import GlobalBatch, OptimConfig, Task

log = logging.getLogger("vocadapt")

COPY_ANSWERS = ("auto", "instruct", "text")
# An instruct model's answer to "repeat this" counts as a copy (and becomes a training turn) when
# at least this share of characters match, over the longer text: a preface or a marker fits in
# the rest, a refusal or a paraphrase does not.
MIN_ANSWER_MATCH = 0.5


@dataclass
class CalibrateConfig(OptimConfig):
    """Settings of ``vocadapt calibrate`` (and of a recipe's ``calibrate:`` section)."""

    steps: int = field(default=100, metadata={"help": "optimizer steps (global batches)"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (the paper: 8..32)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "module names that get LoRA adapters (all-linear: every linear layer but the head)"},
    )
    lora_layers: list[int] = field(
        default_factory=list,
        metadata={"help": "only these decoder layers get LoRA (negative: from the end; empty: all). Last layers only "
                          "also makes backward cheap when the embeddings are frozen"},
    )
    train_embeddings: bool = field(default=False, metadata={"help": "also train the input embedding (full rows)"})
    train_head: bool = field(default=False, metadata={"help": "also train the LM head (a tied head trains with the embedding)"})
    embedding_lr: float = field(default=0.0, metadata={"help": "peak learning rate of the trained embedding/head (0: --lr)"})
    copy_examples: int = field(default=200, metadata={"help": "copy-task examples generated from --copy-text paragraphs (0: none)"})
    copy_prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "user turn of a copy example; {text} is the paragraph"})
    copy_chars: list[int] = field(default_factory=lambda: [80, 600], metadata={"help": "paragraph length range in characters"})
    copy_answers: str = field(default="auto", metadata={
        "help": "assistant turn of a copy example: instruct (the original instruct model's own greedy answer, "
                "kept when it holds the copy: the model learns the new vocabulary in the answer style it had, a "
                "preface or marker included) | text (the paragraph itself) | auto (instruct when the instruct "
                "model is known: --teacher, or the one MODEL_DIR was propagated from; else text)"})
    teacher: str = field(default="", metadata={
        "help": "the original instruct model that answers copy examples with --copy-answers instruct "
                "(default: the instruct model MODEL_DIR was propagated from)"})
    max_length: int = field(default=512, metadata={"help": "tokens per conversation (longer ones are cut)"})
    batch_size: int = field(default=8, metadata={"help": "conversations per optimizer step (the global batch)"})
    val_examples: int = field(default=16, metadata={"help": "conversations held out for val_loss"})
    keep_adapter: bool = field(default=False, metadata={"help": "write a peft adapter instead of the merged model"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lora_r < 1 or self.lora_alpha < 1:
            raise ValueError(f"lora_r and lora_alpha must be at least 1, not {self.lora_r} and {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), not {self.lora_dropout}")
        if not self.target_modules:
            raise ValueError("target_modules is empty: name the linear layers that get LoRA (or all-linear)")
        if self.keep_adapter and (self.train_embeddings or self.train_head):
            raise ValueError("keep_adapter stores only the LoRA weights: trained embeddings/head need the merged output")
        if self.embedding_lr < 0:
            raise ValueError(f"embedding_lr must be 0 (the lr) or more, not {self.embedding_lr}")
        if len(self.copy_chars) != 2 or not 0 < self.copy_chars[0] <= self.copy_chars[1]:
            raise ValueError(f"copy_chars must be two lengths MIN MAX, not {self.copy_chars}")
        if "{text}" not in self.copy_prompt:
            raise ValueError("copy_prompt must contain {text}")
        if self.copy_answers not in COPY_ANSWERS:
            raise ValueError(f"copy_answers must be one of {', '.join(COPY_ANSWERS)}, not {self.copy_answers!r}")
        for name in ("copy_examples", "val_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, not {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")


@dataclass
class CalibrateResult:
    run_dir: Path
    model_dir: Path  # run_dir / "model": merged HF model, or the peft adapter
    steps: int
    examples: dict[str, int]  # instruction / copy / validation conversations
    metrics: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def read_conversations(path: str | Path) -> list[list[dict[str, str]]]:
    """Conversations from a JSONL of ``{"messages": [{"role": ..., "content": ...}, ...]}``."""
    from vocadapt.corpus import iter_jsonl_records

    out = []
    for lineno, record in iter_jsonl_records(Path(path)):
        msgs = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs
        ):
            raise VocadaptError(f"{path}:{lineno}: expected {{\"messages\": [{{\"role\": ..., \"content\": ...}}, ...]}}")
        if not any(m["role"] == "assistant" for m in msgs):
            raise VocadaptError(f"{path}:{lineno}: no assistant turn to learn from")
        out.append([{"role": m["role"], "content": m["content"]} for m in msgs])
    return out


def copy_conversations(texts: list[str], n: int, *, prompt: str = DEFAULT_PROMPT, chars: tuple[int, int] = (80, 600),
                       seed: int = 0) -> list[list[dict[str, str]]]:
    """``n`` "repeat this text" conversations over paragraphs of ``texts`` (cycled if fewer)."""
    from vocadapt.evaluate.copy_task import build_copy_items

    _, paragraphs = build_copy_items(texts, n_sentences=0, n_paragraphs=len(texts), seed=seed, paragraph_chars=tuple(chars))
    if n and not paragraphs:
        raise VocadaptError(f"copy text has no paragraph of {chars[0]}-{chars[1]} characters for copy examples")
    return [
        [{"role": "user", "content": prompt.format(text=p)}, {"role": "assistant", "content": p}]
        for p in (paragraphs[i % len(paragraphs)] for i in range(n))
    ]


# Batches of 16: on a 2-core CPU 48 answers took 27 s against 35 s at 8 (48 at once: 25 s);
# larger batches gain little and pad more. Part of the answers' cache key (batching can move a
# greedy answer by a rounding).
_ANSWER_BATCH = 16


def _answers_cache(teacher: str | Path, dtype: str, requests: list[tuple[str, str]]) -> Path | None:
    """The cache file of the instruct model's greedy answers to ``requests`` ((prompt, reference)):
    keyed by the model's content (weights, tokenizer, chat template), the dtype it ran in, the
    requests and the library versions, so any change answers anew. None without a model folder."""
    if not Path(teacher).is_dir():
        return None
    import hashlib

    import transformers

    from vocadapt.cache import cache_dir
    from vocadapt.provenance import fingerprint

    key = json.dumps({"model": fingerprint(teacher), "dtype": dtype, "requests": requests, "batch_size": _ANSWER_BATCH,
                      "torch": torch.__version__, "transformers": transformers.__version__}, ensure_ascii=False)
    return cache_dir() / "answers" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _read_answers(path: Path | None, n: int) -> list[str] | None:
    if path is None:
        return None
    try:
        answers = json.loads(path.read_text(encoding="utf-8"))["answers"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: answer anew (and rewrite it)
    return answers if isinstance(answers, list) and len(answers) == n and all(isinstance(a, str) for a in answers) else None


def instruct_answers(teacher: str | Path, conversations: list[list[dict[str, str]]], *,
                     progress: bool = True, use_cache: bool = True) -> tuple[list[list[dict[str, str]]], int]:
    """The copy conversations answered by the original instruct model ``teacher`` (greedy, its own
    tokenizer), and how many were dropped because the answer did not hold the copy.

    The answers are data that only the instruct model, the prompts and the dtype decide (greedy
    decoding), so they are kept in the cache (``answers/``) and a rerun of the same calibration
    (the demo run again, another ``--steps``) reads them instead of spending minutes generating
    them again; ``use_cache=False`` always generates.

    Training the propagated model on these answers is sequence-level self-distillation: it keeps
    whatever the instruct model writes around a copy (a preface, a marker) instead of learning to
    drop it, which the bare paragraph as the answer would teach.
    """
    from vocadapt.evaluate.copy_task import char_match
    from vocadapt.evaluate.lm import HFLM
    from vocadapt.model import frozen_dtype

    # bf16 where it is fast: the answers are data, not reported scores (frozen_dtype).
    dtype = frozen_dtype("cpu")
    prompts = list(dict.fromkeys(c[0]["content"] for c in conversations))  # copies cycle: answer each once
    refs = {c[0]["content"]: c[1]["content"] for c in conversations}
    cached = _answers_cache(teacher, dtype, [(q, refs[q]) for q in prompts]) if use_cache else None
    gens = _read_answers(cached, len(prompts))
    if gens is None:
        lm = HFLM.from_dir(teacher, dtype=dtype, name="instruct answers", progress=progress, batch_size=_ANSWER_BATCH)
        gens = lm.generate_batched([(lm.chat(q), int(lm.count_tokens(refs[q]) * 1.3) + 16) for q in prompts])
        del lm
        if cached is not None:
            from vocadapt.io.atomic import write_text_atomic

            write_text_atomic(cached, json.dumps({"teacher": str(teacher), "dtype": dtype, "answers": gens},
                                                 ensure_ascii=False) + "\n")
    else:
        log.info("copy examples: the instruct model's %d answers reused from %s", len(gens), cached)
    answers = {q: g.strip() for q, g in zip(prompts, gens) if char_match(g.strip(), refs[q]) >= MIN_ANSWER_MATCH}
    kept = [[c[0], {"role": "assistant", "content": answers[c[0]["content"]]}] for c in conversations
            if c[0]["content"] in answers]
    return kept, len(conversations) - len(kept)


def teacher_from(model_dir: Path) -> Path | None:
    """The instruct model that ``vocadapt propagate`` read to make ``model_dir``."""

    try:
        prov = json.loads((Path(model_dir) / "vocadapt.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    path = ((prov.get("inputs") or {}).get("instruct") or {}).get("path") if prov.get("step") == "propagate" else None
    return Path(path) if path else None


def encode_conversation(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one conversation; labels are -100 except on assistant turns.

    Each assistant turn's tokens are found as the difference between the template rendered up to
    the turn (with the generation prompt) and rendered through it, so any template works whose
    renderings of a conversation's prefixes are prefixes of each other.
    """
    def render(msgs, gen_prompt=False) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen_prompt)

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    full = render(messages)
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before, through = render(messages[:i], True), render(messages[: i + 1])
        if not (before.startswith(done) and through.startswith(before) and full.startswith(through)):
            raise VocadaptError("the chat template does not render a conversation's prefixes as prefixes; cannot mask the assistant turns")
        context = encode(before[len(done):])
        answer = encode(through[len(before):])
        ids += context + answer
        labels += [-100] * len(context) + answer
        done = through
    return ids[:max_length], labels[:max_length]


def collate(items: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask, labels (-100 on padding)."""
    n = max(len(i) for i, _ in items)
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)
    labels = torch.full((len(items), n), -100, dtype=torch.long)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    for r, (i, lab) in enumerate(items):
        ids[r, : len(i)] = torch.tensor(i)
        labels[r, : len(lab)] = torch.tensor(lab)
        mask[r, : len(i)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ------------------------------------------------------------------------------------------------
# The task
# ------------------------------------------------------------------------------------------------


def _lora_targets(target_modules: list[str]) -> str | list[str]:
    return "all-linear" if target_modules == ["all-linear"] else list(target_modules)


class CalibrationTask(Task):
    """LoRA fine-tune on chat conversations, loss on assistant tokens."""

    name = "calibrate"

    def __init__(self, model_dir: Path, conversations: list[list[dict[str, str]]], config: CalibrateConfig,
                 counts: dict[str, int]):
        from vocadapt.io.checkpoint import Checkpoint
        from vocadapt.tokenizer.load import load_tokenizer

        self.model_dir, self.config, self.counts = Path(model_dir), config, counts
        self.ckpt = Checkpoint(self.model_dir)
        self.tokenizer = load_tokenizer(self.model_dir, f"the tokenizer of {self.model_dir}", require_fast=False)
        if not getattr(self.tokenizer, "chat_template", None):
            raise VocadaptError(f"{self.model_dir} has no chat template: calibration trains chat turns (propagate from an instruct model)")
        encoded = [encode_conversation(self.tokenizer, c, config.max_length) for c in conversations]
        encoded = [e for e in encoded if any(x != -100 for x in e[1][1:])]
        if len(encoded) <= config.val_examples:
            raise VocadaptError(f"{len(encoded)} usable conversations: need more than the {config.val_examples} held out")
        order = np.random.default_rng(config.seed).permutation(len(encoded))
        self.val = [encoded[i] for i in order[: config.val_examples]]
        self.train = [encoded[i] for i in order[config.val_examples :]]
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id or 0
        self.world = 1
        self._orders: dict[int, np.ndarray] = {}
        self.counts["validation"] = len(self.val)

    def setup(self, accelerator) -> torch.nn.Module:
        from peft import LoraConfig, get_peft_model

        from vocadapt.model import load_model

        cfg = self.config
        self.world = accelerator.num_processes
        if cfg.batch_size % (cfg.grad_accum * self.world):
            raise VocadaptError(f"batch_size {cfg.batch_size} is not divisible by grad_accum x processes = {cfg.grad_accum * self.world}")
        model, _ = load_model(self.model_dir)
        layers, targets = None, _lora_targets(cfg.target_modules)
        if cfg.lora_layers:
            from vocadapt.model import decoder_layers

            blocks = decoder_layers(model)
            n = len(blocks)
            if any(not -n <= i < n for i in cfg.lora_layers):
                raise VocadaptError(f"--lora-layers {cfg.lora_layers}: the model has {n} decoder layers")
            layers = sorted({i % n for i in cfg.lora_layers})
            if targets == "all-linear":  # peft takes a layer subset only with explicit module names
                targets = sorted({name.rsplit(".", 1)[-1] for name, m in blocks.named_modules() if isinstance(m, torch.nn.Linear)})
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, layers_to_transform=layers, task_type="CAUSAL_LM")
        try:
            model = get_peft_model(model, lora)
        except ValueError as e:
            raise VocadaptError(f"LoRA: {str(e).splitlines()[0]} (set --target-modules)") from None
        if cfg.train_embeddings:
            model.get_input_embeddings().weight.requires_grad_(True)
        if cfg.train_head:
            model.get_output_embeddings().weight.requires_grad_(True)
        model.train()
        return model.to(accelerator.device)

    def param_groups(self, model) -> list[dict]:
        # LoRA matrices without weight decay toward zero would be the usual peft choice too; the
        # embeddings keep the configured decay as in embedding training.
        seen, lora, full = set(), [], []
        for name, p in model.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                (lora if "lora_" in name else full).append(p)
        groups = [{"params": lora, "weight_decay": 0.0}]
        if full:
            # Full embedding rows move under Adam at about lr per step whatever their gradient's
            # size (the tied head gives every row one), so they get their own, usually smaller, lr.
            groups.append({"params": full, "weight_decay": self.config.weight_decay,
                           "lr": self.config.embedding_lr or self.config.lr})
        return groups

    def global_batch(self, step: int) -> GlobalBatch:
        cfg = self.config
        n = len(self.train)
        first = step * cfg.batch_size
        idx = []
        for k in range(first, first + cfg.batch_size):  # a seeded permutation per epoch
            epoch, pos = divmod(k, n)
            if epoch not in self._orders:
                self._orders = {epoch: np.random.default_rng([cfg.seed, epoch]).permutation(n)}
            idx.append(int(self._orders[epoch][pos]))
        items = [self.train[i] for i in idx]
        per = cfg.batch_size // (cfg.grad_accum * self.world)
        micro = [[collate(items[(k * self.world + r) * per:(k * self.world + r + 1) * per], self.pad_id)
                  for r in range(self.world)] for k in range(cfg.grad_accum)]
        n_items = sum(sum(1 for x in lab[1:] if x != -100) for _, lab in items)
        return GlobalBatch(micro=micro, n_items=max(n_items, 1), n_tokens=sum(len(i) for i, _ in items))

    def loss_sum(self, model, micro) -> torch.Tensor:
        device = next(p for p in model.parameters()).device
        batch = {k: v.to(device) for k, v in micro.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"]
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100, reduction="sum"
        )

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        if not self.val:
            return {}
        was_training = model.training
        model.eval()
        total, items = 0.0, 0
        for start in range(0, len(self.val), self.config.batch_size):
            chunk = self.val[start : start + self.config.batch_size]
            total += float(self.loss_sum(model, collate(chunk, self.pad_id)))
            items += sum(sum(1 for x in lab[1:] if x != -100) for _, lab in chunk)
        model.train(was_training)
        return {"val_loss": total / max(items, 1)}

    @torch.no_grad()
    def export(self, model, out_dir: Path) -> None:
        import shutil

        from vocadapt.io.checkpoint import TOKENIZER_FILES, write_checkpoint
        from vocadapt.provenance import write_provenance

        if self.config.keep_adapter:
            model.save_pretrained(str(out_dir))
            self.tokenizer.save_pretrained(str(out_dir))
        else:
            write_checkpoint(self.ckpt, out_dir, merged_tensors(model, self.ckpt), {})
            for name in sorted(TOKENIZER_FILES | {"chat_template.jinja"}):
                if (self.ckpt.path / name).is_file():
                    shutil.copyfile(self.ckpt.path / name, out_dir / name)
        state = self.run_state
        write_provenance(
            out_dir, "calibrate", asdict(self.config), inputs={"model": self.ckpt.path},
            results={"steps": state.get("step"), "tokens": state.get("tokens"), "examples": self.counts,
                     "metrics": state.get("metrics") or {}, "adapter": self.config.keep_adapter},
        )

    def settings(self) -> dict:
        from vocadapt.provenance import fingerprint

        keep = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "lora_layers", "train_embeddings", "train_head", "copy_answers",
                "max_length", "batch_size", "val_examples", "keep_adapter")
        cfg = asdict(self.config)
        return {**{k: cfg[k] for k in keep}, "model": fingerprint(self.model_dir), "examples": self.counts}


def merged_tensors(model, ckpt) -> dict[str, torch.Tensor]:
    """Checkpoint name -> tensor (checkpoint dtype) of every weight the calibration changed:
    W + B A * scale for each LoRA layer, and the trained embedding/head. The model is not
    modified (export also runs at intermediate checkpoints, and training goes on after them)."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    out: dict[str, torch.Tensor] = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            weight = module.get_base_layer().weight
            merged = weight.detach().float() + module.get_delta_weight("default").float()
            out[f"{name}.weight"] = merged
    trained = {ckpt.vocab.input: base.get_input_embeddings().weight}
    if ckpt.vocab.output:
        trained[ckpt.vocab.output] = base.get_output_embeddings().weight
    for name, p in trained.items():
        if p.requires_grad:
            out[name] = p.detach()
    missing = sorted(set(out) - set(ckpt.tensors))
    if missing:
        raise VocadaptError(f"calibrated tensors {missing[:3]} have no counterpart in {ckpt.path}; cannot merge")
    return {n: t.to("cpu", ckpt.tensors[n].torch_dtype).contiguous() for n, t in out.items()}


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


def build_conversations(config: CalibrateConfig, instructions=None, copy_text=None, *,
                        teacher: str | Path | None = None) -> tuple[list, dict[str, int]]:
    """Instruction conversations (JSONL files) plus generated copy examples, with their counts;
    with ``copy_answers: instruct`` the copies are answered by ``teacher`` (the instruct model)."""
    from vocadapt.corpus import read_texts

    if isinstance(instructions, (str, Path)):
        instructions = [instructions]
    if isinstance(copy_text, (str, Path)):
        copy_text = [copy_text]
    convs = [c for path in instructions or [] for c in read_conversations(path)]
    copies = []
    if copy_text and config.copy_examples:
        copies = copy_conversations(read_texts(copy_text), config.copy_examples, prompt=config.copy_prompt,
                                    chars=tuple(config.copy_chars), seed=config.seed)
    counts = {"instructions": len(convs), "copy": len(copies)}
    mode = config.copy_answers
    if mode == "auto":
        mode = "instruct" if teacher is not None and Path(teacher).exists() else "text"
        if copies:
            log.info("copy examples answered by %s (--copy-answers auto)", "the instruct model" if mode == "instruct" else "the text itself")
    if copies and mode == "instruct":
        if teacher is None or not Path(teacher).exists():
            raise VocadaptError(
                f"--copy-answers instruct: the instruct model to answer the copy examples "
                f"{'is gone: ' + str(teacher) if teacher else 'is unknown'}; pass --teacher INSTRUCT_DIR")
        copies, dropped = instruct_answers(teacher, copies, progress=config.progress)
        counts["copy"], counts["copy_dropped"] = len(copies), dropped
        (log.warning if not copies else log.info)(
            "copy examples answered by %s: %d kept, %d dropped (answer not a copy)", teacher, len(copies), dropped)
    if not convs and not copies:
        raise VocadaptError("nothing to calibrate on: give --instructions FILE.jsonl and/or --copy-text TEXT"
                            + (" (the instruct model copied none of the copy examples)" if counts.get("copy_dropped") else ""))
    return convs + copies, counts


def calibrate(model_dir: str | Path, out: str | Path, config: CalibrateConfig | None = None, instructions=None,
              copy_text=None, *, resume: bool = False) -> CalibrateResult:
    """LoRA-calibrate ``model_dir`` (a propagated instruct model) into the run directory ``out``.

    ``instructions``: JSONL file(s) of chat conversations; ``copy_text``: target-language text
    file(s) whose paragraphs become copy-task conversations. Writes ``out/train_log.jsonl``,
    checkpoints, and ``out/model``: the merged HF model (or the adapter with ``keep_adapter``).
    """
    from vocadapt.model import check_model_dir
    from vocadapt.train.engine import run

    config = config or CalibrateConfig()
    out = Path(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise VocadaptError(f"run directory exists and is not empty: {out} (use --resume to continue it, or another --out)")
    # The model first (a run directory stands for its model): a wrong path should fail in a
    # second, not after the instruct model has spent minutes answering the copy prompts.
    model_dir = check_model_dir(model_dir)
    teacher = Path(config.teacher) if config.teacher else teacher_from(model_dir)
    convs, counts = build_conversations(config, instructions, copy_text, teacher=teacher)
    task = CalibrationTask(model_dir, convs, config, counts)
    log.info("calibration data: %d instruction + %d copy conversations (%d held out)",
             counts["instructions"], counts["copy"], counts["validation"])
    result = run(task, config, out, resume=resume)
    return CalibrateResult(run_dir=out, model_dir=out / "model", steps=result.steps, examples=counts, metrics=result.model_metrics)
