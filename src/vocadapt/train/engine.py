"""One training loop on Hugging Face Accelerate for every vocadapt task.

A :class:`Task` says what to train (model, trainable parameters, batches, loss, evaluation,
export); :func:`run` does the rest: AdamW over the trainable parameters only, warmup + decay
schedule, gradient accumulation, clipping, mixed precision, evaluation, checkpoints, exact
resume, Ctrl-C, logs. The same code runs in one CPU process, on one GPU, or under
``accelerate launch`` on many processes (DDP, FSDP and DeepSpeed through Accelerate's config).

Equal updates for any number of processes: a global step is one :class:`GlobalBatch` built from
the step number alone, split into ``grad_accum x world_size`` micro-batches. Each micro-batch
contributes ``loss_sum / n_items * world_size``; DDP averages gradients over ranks, so the
update is the gradient of the mean loss per item over the whole global batch, whatever the
split. Gradients are synchronized only on the last micro-step (``accelerator.no_sync``).
"""

from __future__ import annotations

import abc
import json
import logging
import math
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from vocadapt.errors import VocadaptError

log = logging.getLogger("vocadapt")

LOG_FILE = "train_log.jsonl"
STATE_FILE = "trainer_state.json"
CHECKPOINTS = "checkpoints"

_SCHEDULES = ("cosine", "linear", "constant")
_PRECISIONS = ("auto", "no", "bf16", "fp16")
# Fields of OptimConfig that may differ on --resume: they change what is logged or kept, not
# the numbers the run computes.
_RESUMABLE = {"eval_every", "save_every", "keep_checkpoints", "patience", "export_model", "progress"}
_EXPORTS = ("auto", "best", "last")
BEST = "best"  # run_dir/best/: the export of the evaluation with the lowest val_loss, and its state


@dataclass
class OptimConfig:
    """Optimizer, schedule and loop settings shared by every training task."""

    steps: int = field(default=200, metadata={"help": "optimizer steps (global batches)"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warmup steps from 0 to lr"})
    schedule: str = field(default="cosine", metadata={"help": "decay after warmup: cosine | linear | constant"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final lr as a fraction of lr (cosine, linear)"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per process and step (same update, less memory)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0: off)"})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 on a GPU, fp32 on CPU) | no | bf16 | fp16"})
    seed: int = field(default=0, metadata={"help": "seed for data order and initialization"})
    eval_every: int = field(default=25, metadata={"help": "evaluate every K steps (also at step 0 and at the end; 0: only those)"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every K steps (0: only at the end and on Ctrl-C)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept (older ones are deleted)"})
    patience: int = field(default=0, metadata={"help": "stop after this many evaluations without a better val_loss (0: off)"})
    export_model: str = field(default="auto", metadata={
        "help": "the model RUN_DIR/model holds: best (the evaluation with the lowest val_loss) | last (the final "
                "step's) | auto (best with --patience, else last)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be above 0, not {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be 0 or more, not {self.warmup_steps}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(_SCHEDULES)}, not {self.schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be between 0 and 1, not {self.min_lr_ratio}")
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be at least 1, not {self.grad_accum}")
        if self.mixed_precision not in _PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {', '.join(_PRECISIONS)}, not {self.mixed_precision!r}")
        for name in ("eval_every", "save_every", "patience", "max_grad_norm", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be at least 1, not {self.keep_checkpoints}")
        if self.export_model not in _EXPORTS:
            raise ValueError(f"export_model must be one of {', '.join(_EXPORTS)}, not {self.export_model!r}")

    @property
    def exports_best(self) -> bool:
        """Whether RUN_DIR/model is the best evaluation's model: early stopping stops *after* the
        best (--patience evaluations later), so exporting the stop's weights would hand over a
        model the run itself measured as worse (as `load_best_model_at_end` in HF's Trainer)."""
        return self.export_model == "best" or (self.export_model == "auto" and self.patience > 0)

    @property
    def val_loss_needed_by(self) -> str | None:
        """The option that needs a ``val_loss`` from every evaluation (for its error), or None."""
        return "--patience" if self.patience else "--export-model best" if self.exports_best else None

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` for optimizer step ``step`` (0-based): warmup, then the schedule."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.schedule == "constant":
            return 1.0
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if self.schedule == "cosine" else 1 - progress
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * decay


@dataclass
class GlobalBatch:
    """One optimizer step's data, identical on every rank.

    ``micro[k][r]``: micro-batch ``k`` (of ``grad_accum``) for rank ``r`` (of ``world_size``);
    ``n_items``: loss items (e.g. predicted tokens) in the whole global step; ``n_tokens``:
    input tokens in the whole global step, for throughput.
    """

    micro: list[list[Any]]
    n_items: int
    n_tokens: int


@dataclass
class RunResult:
    run_dir: Path
    steps: int  # optimizer steps done in total (including those before a resume)
    tokens: int  # input tokens seen in total
    seconds: float  # training time of this invocation (evaluation excluded)
    tokens_per_s: float  # throughput of this invocation
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation
    stopped_early: bool = False
    model_step: int | None = None  # the step whose weights run_dir/model holds (the best one with exports_best)
    model_metrics: dict[str, float] = field(default_factory=dict)  # that step's evaluation


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run`, after the checkpoint of ``step`` was saved in ``checkpoint``."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; checkpoint saved in {checkpoint} (resume with --resume)")
        self.step, self.checkpoint = step, Path(checkpoint)


class Task(abc.ABC):
    """What a training task implements; :func:`run` calls these."""

    name: str = "task"

    @abc.abstractmethod
    def setup(self, accelerator) -> torch.nn.Module:
        """Build or load the model; trainable parameters have ``requires_grad``, the rest not."""

    def param_groups(self, model: torch.nn.Module) -> list[dict]:
        """Parameter groups for AdamW: only trainable parameters (default: one group)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    @abc.abstractmethod
    def global_batch(self, step: int) -> GlobalBatch:
        """The batch of ``step``, built from (seed, step) alone so that a resume sees the same data."""

    @abc.abstractmethod
    def loss_sum(self, model: torch.nn.Module, micro: Any) -> torch.Tensor:
        """Scalar: the SUM of per-item losses of one micro-batch."""

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Held-out metrics on the main process (e.g. ``{"bpb": .., "val_loss": ..}``)."""
        return {}

    #: Set by :func:`run` before each export: ``{"step", "tokens", "metrics"}`` of the run at
    #: that point, for the artifact's provenance.
    run_state: dict = {}

    @abc.abstractmethod
    def export(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Write the task's artifact into the (empty, staging) directory ``out_dir``."""

    def settings(self) -> dict:
        """Task settings that must be equal when a run is resumed."""
        return {}


def _resolve_precision(choice: str) -> str | None:
    """Accelerate's mixed_precision for ``choice``; None leaves it to `accelerate launch`/config."""
    import os

    if choice != "auto":
        return choice
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None  # chosen by `accelerate launch --mixed_precision` or `accelerate config`
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _launched_processes() -> int:
    """Processes started by `torchrun` / `accelerate launch --multi_gpu` (their WORLD_SIZE), else 1."""
    import os

    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _cpu_group() -> bool:
    """Whether launched processes must be told cpu=True: without a GPU, Accelerate joins them into
    one (gloo) group only then; otherwise each trains alone as rank 0 of 1, all in one run folder."""
    return _launched_processes() > 1 and not torch.accelerator.is_available()


def process_state():
    """Accelerate's ``PartialState`` for code that runs before :func:`run` (e.g. main process first)."""
    from accelerate import PartialState

    return PartialState(cpu=_cpu_group())


def _accelerator(mixed_precision: str | None):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and mixed_precision is not None and state.get("_mixed_precision") != mixed_precision:
        # A second run in the same process with another precision (tests, notebooks): Accelerate
        # keeps one global state and refuses to change it; start it afresh, keeping the process group.
        AcceleratorState._reset_state()
    launched = _launched_processes()
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=_cpu_group())
    if launched > 1 and accelerator.num_processes != launched:
        raise VocadaptError(
            f"{launched} processes were launched (WORLD_SIZE) but Accelerate joined {accelerator.num_processes}; "
            "launch with `torchrun --nproc_per_node N` or `accelerate launch --multi_gpu --num_processes N`"
        )
    return accelerator


def run_settings(task: Task, config: OptimConfig) -> dict:
    """What a resumed run must share with the run it continues."""
    optim = {k: v for k, v in asdict(config).items() if k not in _RESUMABLE and k in {f.name for f in fields(OptimConfig)}}
    return {**optim, **task.settings()}


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("step-") and (d / STATE_FILE).is_file())


def _check_resume(run_dir: Path, settings: dict, world_size: int) -> Path:
    ckpts = checkpoint_dirs(run_dir)
    if not ckpts:
        raise VocadaptError(f"nothing to resume in {run_dir}: no checkpoint under {run_dir / CHECKPOINTS}")
    latest = ckpts[-1]
    saved = json.loads((latest / STATE_FILE).read_text(encoding="utf-8"))
    old = saved.get("settings", {})
    for key in sorted(set(old) | set(settings)):
        if json.dumps(old.get(key), sort_keys=True) != json.dumps(settings.get(key), sort_keys=True):
            raise VocadaptError(
                f"cannot resume {run_dir}: setting {key!r} was {old.get(key)!r}, now {settings.get(key)!r} "
                "(use the same settings, or a new --out)"
            )
    if saved.get("world_size") not in (None, world_size):
        log.info("resuming a run made with %s processes on %s (same global batch)", saved["world_size"], world_size)
    return latest


def _append_log(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _truncate_log(path: Path, after_step: int) -> None:
    """Drop rows logged after ``after_step`` (they came after the checkpoint being resumed)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [r for r in rows if json.loads(r).get("step", 0) <= after_step]
    path.write_text("".join(r + "\n" for r in kept), encoding="utf-8")


def run(task: Task, config: OptimConfig, run_dir: str | Path, *, resume: bool = False) -> RunResult:
    """Train ``task`` for ``config.steps`` optimizer steps; logs and checkpoints under ``run_dir``.

    ``run_dir`` gets ``train_log.jsonl``, ``checkpoints/step-NNNNNN/`` (Accelerate state of the
    trainable parameters, optimizer, scheduler, RNG, plus ``trainer_state.json`` and the task's
    export in ``model/``) and the final export in ``model/``. With ``resume`` the run continues
    from its latest checkpoint, refusing other settings. Ctrl-C saves a checkpoint and raises
    :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) with the resume hint; a Ctrl-C during
    the optimizer update waits for the step to be counted, so checkpoint N holds step N's weights.
    """
    from accelerate.utils import set_seed

    run_dir = Path(run_dir)
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise VocadaptError(f"run directory exists and is not empty: {run_dir} (use --resume to continue it, or another --out)")
    accelerator = _accelerator(_resolve_precision(config.mixed_precision))
    world = accelerator.num_processes
    settings = run_settings(task, config)
    latest = _check_resume(run_dir, settings, world) if resume else None
    # Parameters a task initializes randomly (and dropout) draw from the global generator:
    # seed it the same on every rank so they agree.
    set_seed(config.seed)
    model = task.setup(accelerator)
    groups = task.param_groups(model)
    trainable = [p for g in groups for p in g["params"]]
    if not trainable:
        raise VocadaptError(f"{task.name}: no trainable parameters")
    if any(not p.requires_grad for p in trainable):
        raise VocadaptError(f"{task.name}: param_groups returned a frozen parameter")
    # The fused kernel (one pass over param, grad and both moments) where torch has one for these
    # tensors: on CPU the default is the per-tensor loop, ~130 ms a step on SmolLM2's 28M-row
    # embedding, the gap that made this engine look slower than `Trainer` (which uses fused).
    optimizer = torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), weight_decay=config.weight_decay,
        fused=_fused_ok(trainable),
    )
    # The scheduler is not prepared: Accelerate would step it once per process.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    trainable_names = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}

    def keep_trainable(models, weights, output_dir):
        # Checkpoints hold only what changes; the frozen weights are in the input model.
        for i, sd in enumerate(weights):
            weights[i] = {k: v for k, v in sd.items() if _strip_prefix(k) in trainable_names}

    accelerator.register_save_state_pre_hook(keep_trainable)

    log_path = run_dir / LOG_FILE
    ctrl_c = _CtrlC(world)
    ctrl_c.install()
    try:
        return _loop(task, config, run_dir, accelerator, model, optimizer, scheduler, trainable, settings, latest,
                     log_path, ctrl_c)
    finally:
        ctrl_c.restore()


def _loop(task, config, run_dir, accelerator, model, optimizer, scheduler, trainable, settings, latest, log_path,
          ctrl_c) -> RunResult:
    world = accelerator.num_processes
    step, tokens = 0, 0
    # evaluated_at: the step of the last finished evaluation, so that a resume from a checkpoint
    # saved during that step's evaluation runs it (absent in checkpoints older than this field).
    # best, best_step, best_metrics: the evaluation with the lowest val_loss so far (bad_evals: those
    # since), tracked whenever there is a val_loss, so that --patience may be set on a resume.
    history: dict[str, Any] = {"best": None, "best_step": None, "best_metrics": None, "bad_evals": 0,
                               "evaluated_at": None}
    if latest is not None:
        saved = json.loads((latest / STATE_FILE).read_text(encoding="utf-8"))
        accelerator.load_state(str(latest), strict=False)
        step, tokens = int(saved["step"]), int(saved["tokens"])
        history.pop("evaluated_at")
        history.update(saved.get("history", {}))
        if accelerator.is_main_process:
            with ctrl_c.deferred():  # the log is rewritten: not half of it
                _truncate_log(log_path, step)
        log.info("resumed %s at step %d (%d tokens seen)", run_dir, step, tokens)
    elif accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    metrics: dict[str, float] = dict(history.get("metrics") or {})
    stop = False

    def due(at: int) -> bool:
        """Whether step ``at`` ends with an evaluation (step 0 is evaluated before training)."""
        return at == 0 or at == config.steps or bool(config.eval_every and at % config.eval_every == 0)

    def evaluate_now() -> bool:
        """Evaluate on the main process, log, and say (on every rank) whether to stop early."""
        nonlocal metrics
        decision: list[Any] = [False, metrics, None]  # stop, metrics, error (raised on every rank)
        if accelerator.is_main_process:
            with accelerator.autocast():
                found = {k: float(v) for k, v in task.evaluate(accelerator.unwrap_model(model)).items()}
            if config.val_loss_needed_by and "val_loss" not in found:
                decision[2] = (f"{task.name}: {config.val_loss_needed_by} watches the held-out val_loss, but this run's evaluation has none "
                               "(give it held-out text to score)")
            else:
                # The log row and the bookkeeping (and the best model's export) together: a resume
                # must not find a logged evaluation that patience never counted.
                with ctrl_c.deferred():
                    metrics = found
                    if metrics:
                        _append_log(log_path, {"step": step, "tokens": tokens, **metrics})
                    history["metrics"] = metrics
                    if "val_loss" in metrics:
                        if history["best"] is None or metrics["val_loss"] < history["best"]:
                            history.update(best=metrics["val_loss"], best_step=step, best_metrics=metrics, bad_evals=0)
                            if config.exports_best:
                                save_best()
                        else:
                            history["bad_evals"] += 1
                            decision[0] = bool(config.patience) and history["bad_evals"] >= config.patience
                    history["evaluated_at"] = step
                    decision[1] = metrics
        if world > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(decision)  # every rank returns the same metrics and stops together
        if decision[2]:
            raise VocadaptError(decision[2])
        metrics = decision[1]
        return decision[0]

    def export_into(folder: Path) -> dict:
        """Export this step's model into ``folder/model`` (whole or not at all); returns its state,
        for the caller's ``folder/trainer_state.json``, written last to mark the folder complete."""
        from vocadapt.io.atomic import atomic_dir

        state = {"step": step, "tokens": tokens, "metrics": metrics}
        task.run_state = state
        with atomic_dir(folder / "model", overwrite=True) as tmp:
            task.export(accelerator.unwrap_model(model), tmp)
        return state

    def save_best() -> None:
        """The best evaluation so far: run_dir/best, its state removed first so that a crash
        mid-export never pairs the old state with the new weights (see _best_export)."""
        (run_dir / BEST / STATE_FILE).unlink(missing_ok=True)
        state = export_into(run_dir / BEST)
        (run_dir / BEST / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    def save() -> Path:
        ckpt = run_dir / CHECKPOINTS / f"step-{step:06d}"
        accelerator.save_state(str(ckpt))
        if accelerator.is_main_process:
            state = export_into(ckpt)
            # trainer_state.json last: its presence marks a complete checkpoint.
            record = {**state, "settings": settings, "world_size": world, "history": history, "task": task.name}
            (ckpt / STATE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            for old in checkpoint_dirs(run_dir)[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return ckpt

    bar = None
    if config.progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc=f"training {task.name}", unit="step")
    train_seconds, run_tokens = 0.0, 0
    last_saved = step if latest is not None else -1
    model.train()
    try:
        if latest is None:
            stop = evaluate_now()
        elif due(step) and history.get("evaluated_at", step) != step:
            # The checkpoint was saved by a Ctrl-C during this step's evaluation: run it now, and
            # save again at the end (that checkpoint's export has the metrics before it).
            stop = evaluate_now()
            last_saved = -1
        elif config.patience and history["bad_evals"] >= config.patience:
            stop = True  # the checkpoint was saved by a Ctrl-C after the evaluation that stopped the run
        while step < config.steps and not stop:
            ctrl_c.boundary(accelerator)
            t0 = time.perf_counter()
            batch = task.global_batch(step)
            if len(batch.micro) != config.grad_accum or any(len(m) != world for m in batch.micro):
                raise VocadaptError(
                    f"{task.name}: global batch has {len(batch.micro)}x{len(batch.micro[0]) if batch.micro else 0} "
                    f"micro-batches, expected grad_accum x processes = {config.grad_accum}x{world}"
                )
            total = torch.zeros((), device=accelerator.device, dtype=torch.float64)
            for k, per_rank in enumerate(batch.micro):
                sync = k == len(batch.micro) - 1
                with nullcontext() if sync else accelerator.no_sync(model):
                    with accelerator.autocast():
                        loss_sum = task.loss_sum(model, per_rank[accelerator.process_index])
                    accelerator.backward(loss_sum / batch.n_items * world)
                total += loss_sum.detach().double()
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            # The update and its count are one: a Ctrl-C between optimizer.step() and step += 1
            # would save the weights of step N+1 in the checkpoint of step N.
            with ctrl_c.deferred():
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss = float(accelerator.reduce(total, reduction="sum")) / batch.n_items
                step += 1
                tokens += batch.n_tokens
                run_tokens += batch.n_tokens
                dt = time.perf_counter() - t0
                train_seconds += dt
                if accelerator.is_main_process:
                    tps = run_tokens / max(train_seconds, 1e-9)
                    _append_log(log_path, {"step": step, "loss": loss, "lr": lr, "tokens": tokens,
                                           "tokens_per_s": tps, "seconds": train_seconds})
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}")
            if not math.isfinite(loss):
                raise VocadaptError(f"{task.name}: loss is {loss} at step {step}; lower --lr or check the data")
            if due(step):
                stop = evaluate_now()
            if config.save_every and step % config.save_every == 0 and step < config.steps:
                with ctrl_c.deferred():
                    save()
                    last_saved = step
        if stop and step < config.steps:
            log.info("%s: stopped early at step %d (val_loss did not improve in %d evaluations)", task.name, step, config.patience)
            if not due(step):
                evaluate_now()
        ctrl_c.boundary(accelerator)
        with ctrl_c.deferred():
            ckpt = save() if step != last_saved else checkpoint_dirs(run_dir)[-1]
            last_saved = step
        # The model handed over: the last step's, or the best evaluation's (decided on the main
        # process, which wrote it, and told to the others so that every rank reports the same).
        chosen: list[Any] = [step, metrics]
        if accelerator.is_main_process and config.exports_best and history["best_step"] not in (None, step):
            if _best_export(run_dir, history) is not None:
                chosen = [history["best_step"], history["best_metrics"]]
        if world > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(chosen)
        model_step, model_metrics = chosen
        if accelerator.is_main_process:
            source = ckpt / "model"
            if model_step != step:
                source = run_dir / BEST / "model"
                log.info("%s: %s is the model of step %d (best val_loss %.4f), not of the last step %d",
                         task.name, run_dir / "model", model_step, history["best"], step)
            final = run_dir / "model"
            tmp = run_dir / ".model.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp)
            with ctrl_c.deferred():
                if final.exists():
                    shutil.rmtree(final)
                tmp.rename(final)
        accelerator.wait_for_everyone()
    except KeyboardInterrupt:
        # From here a Ctrl-C is only recorded: the checkpoint below is what the message promises.
        ctrl_c.close()
        if bar is not None:
            bar.close()
        ckpt = save() if step != last_saved else checkpoint_dirs(run_dir)[-1]
        raise TrainingInterrupted(step, ckpt) from None
    if bar is not None:
        bar.close()
    return RunResult(run_dir=run_dir, steps=step, tokens=tokens, seconds=train_seconds,
                     tokens_per_s=run_tokens / max(train_seconds, 1e-9), metrics=metrics,
                     stopped_early=stop and step < config.steps, model_step=model_step, model_metrics=model_metrics)


def _best_export(run_dir: Path, history: dict) -> Path | None:
    """run_dir/best/model if it holds the best evaluation's weights, else None (with a warning).

    Checked by the step in run_dir/best/trainer_state.json, written with the export.

    It may not: a resume from a checkpoint older than the best export replays the steps after it,
    and if those (on other hardware, say) no longer reach that val_loss, the export is from a
    timeline the run no longer has; the last step's model is then the honest one to hand over.
    """
    state_file = run_dir / BEST / STATE_FILE
    best_step = history.get("best_step")
    if best_step is None:
        return None
    if state_file.is_file() and json.loads(state_file.read_text(encoding="utf-8")).get("step") == best_step:
        return run_dir / BEST / "model"
    log.warning("%s holds no export of the best evaluation (step %s); exporting the last step's model instead",
                run_dir / BEST, best_step)
    return None


class _CtrlC:
    """Ctrl-C (SIGINT) during :func:`run`: at once between updates, never inside one.

    One process: Ctrl-C raises ``KeyboardInterrupt`` at once (the step's forward and backward
    change no weight), except inside :meth:`deferred` sections (the optimizer update with its
    step count, a log row with its bookkeeping, a checkpoint), where it is recorded and raised as
    the section ends. Several processes: it is always recorded, and every rank stops at the next
    step boundary together (:meth:`boundary`): a rank raising alone would leave the others waiting
    in a collective, and ranks would save different steps. After :meth:`close` it is only recorded.
    Installed only over Python's default handler, in the main thread: a process started with
    SIGINT ignored (a background job) keeps ignoring it.
    """

    def __init__(self, world: int):
        self.every_rank = world > 1
        self.depth = 0
        self.pending = False
        self.closing = False
        self._installed = False

    def install(self) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True

    def restore(self) -> None:
        import signal

        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._installed = False

    def close(self) -> None:
        self.closing = True

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - the signal module's signature
        if self.depth or self.every_rank or self.closing:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def deferred(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending and not (self.every_rank or self.closing):
            self.pending = False
            raise KeyboardInterrupt

    def boundary(self, accelerator) -> None:
        """Several processes: raise ``KeyboardInterrupt`` on every rank if any rank got a Ctrl-C."""
        if self.every_rank:
            flag = torch.tensor(float(self.pending), device=accelerator.device)
            if float(accelerator.reduce(flag, reduction="sum")) > 0:
                raise KeyboardInterrupt


def _fused_ok(params: list[torch.Tensor]) -> bool | None:
    """True when torch's fused AdamW supports every parameter (CPU or CUDA, floating point)."""
    if all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params):
        return True
    return None


def _strip_prefix(name: str) -> str:
    """State-dict key of a wrapped model (DDP ``module.``, compiled ``_orig_mod.``) as the bare model names it."""
    for prefix in ("module.", "_orig_mod."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name
