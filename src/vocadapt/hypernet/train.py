"""``vocadapt hypernet train``: fit HyperOFA's hypernetwork on a model's source tokens.

Targets: OFA's factorization of the source model's vocabulary matrices
(:func:`vocadapt.init.ofa.factorize`: E ~ F P, F = U_k), so the network predicts k numbers per
token whatever the model's width (d in the thousands costs nothing extra). For a model with an
untied head the head is factorized too and, by default, one network predicts both coordinate
blocks (2k outputs; ``--matrix input`` or ``output`` trains a network for one matrix only).

Inputs: the token's word set (:mod:`vocadapt.hypernet.data`). Source tokens with at least one
word are split (seeded) into training and validation tokens; the engine
(:func:`vocadapt.train.engine.run`) trains with early stopping on the validation loss, and the
export measures how well the network reconstructs the *validation* rows, which it never saw,
next to OFA's convex combination of the same tokens' nearest training tokens
(:mod:`vocadapt.hypernet.quality`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vocadapt.errors import VocadaptError
from vocadapt.hypernet.data import BucketedBatches, SetBatch, WordSets, make_batch, split_tokens, validation_batches
from vocadapt.hypernet.model import HyperNet, LossWeights, NetShape, set_loss
from vocadapt.train.engine import GlobalBatch, OptimConfig, Task

log = logging.getLogger("vocadapt")

CONFIG_FILE = "hypernet.json"
WEIGHTS_FILE = "hypernet.safetensors"
QUALITY_FILE = "quality.json"
_MATRICES = ("auto", "input", "output")


@dataclass
class HypernetConfig(OptimConfig):
    """Settings of ``vocadapt hypernet train`` (defaults sized for a CPU; the paper's are settable)."""

    vectors: str | None = field(default=None, metadata={"help": "multilingual word vectors with 'lang:word' keys (the same file OFA reads)"})
    rank: str = field(default="100", metadata={"help": "factorization rank k (OFA: 100, 200, 400) or full (k = model width)"})
    matrix: str = field(default="auto", metadata={"help": "what the network predicts: auto (input embedding, plus the head jointly when it is untied) | input | output"})
    hidden: int = field(default=256, metadata={"help": "BiLSTM hidden size per direction (paper: 800-1600; 256 trains in minutes on a CPU)"})
    layers: int = field(default=2, metadata={"help": "BiLSTM layers (paper: 2-4)"})
    dropout: float = field(default=0.4, metadata={"help": "dropout between LSTM layers and in the output MLP"})
    max_words: int = field(default=64, metadata={"help": "words read per token, a shuffled sample (paper: 256; LSTM time grows linearly with it)"})
    batch_size: int = field(default=128, metadata={"help": "tokens per optimizer step (also the InfoNCE negatives; paper: 256)"})
    augment_p: float = field(default=0.5, metadata={"help": "probability of keeping a random 50-100% subset of a word set (> 4 words)"})
    val_fraction: float = field(default=0.1, metadata={"help": "fraction of source tokens held out for validation and the quality report"})
    infonce_weight: float = field(default=0.1, metadata={"help": "weight of the InfoNCE term"})
    l1_weight: float = field(default=0.9, metadata={"help": "weight of the normalized L1 term"})
    temperature: float = field(default=0.25, metadata={"help": "InfoNCE temperature (paper: 0.25-0.5)"})
    source_langs: list[str] | None = field(default=None, metadata={"help": "languages whose words give source word sets (default: all keys, as OFA)"})
    base: str = field(default="none", metadata={"help": "none: predict the rows (HyperOFA); mean: predict the residual over the FVT mean of the token's source pieces (rows = mean + prediction)"})
    # engine settings with hypernetwork defaults
    steps: int = field(default=600, metadata={"help": "optimizer steps (upper bound; early stopping on validation loss)"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (paper: 1e-4 over many more steps)"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warmup steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    eval_every: int = field(default=50, metadata={"help": "validation every K steps"})
    patience: int = field(default=4, metadata={"help": "stop after this many evaluations without a better val_loss (0: off)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank != "full" and not (str(self.rank).isdigit() and int(self.rank) > 0):
            raise ValueError(f"rank must be a positive integer or 'full', not {self.rank!r}")
        if self.matrix not in _MATRICES:
            raise ValueError(f"matrix must be one of {', '.join(_MATRICES)}, not {self.matrix!r}")
        for name in ("hidden", "layers", "max_words", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0 <= self.dropout < 1 or not 0 <= self.augment_p <= 1:
            raise ValueError("dropout must be in [0, 1) and augment_p in [0, 1]")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be between 0 and 1, not {self.val_fraction}")
        if self.infonce_weight < 0 or self.l1_weight < 0 or self.infonce_weight + self.l1_weight == 0:
            raise ValueError("infonce_weight and l1_weight must be >= 0 and not both 0")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, not {self.temperature}")
        if self.base not in ("none", "mean"):
            raise ValueError(f"base must be none or mean, not {self.base!r}")

    @property
    def loss(self) -> LossWeights:
        return LossWeights(self.infonce_weight, self.l1_weight, self.temperature)


def matrix_fingerprint(t: torch.Tensor) -> str:
    """Content hash of a vocabulary matrix (its float32 values): the model a hypernetwork fits."""
    h = hashlib.sha256(str(tuple(t.shape)).encode())
    for s in range(0, t.shape[0], 8192):
        h.update(t[s : s + 8192].float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class SourceData:
    """Everything the reconstruction task needs, derived once from model + vectors."""

    matrices: list[str]  # "input" and/or "output", in output-block order
    rows: dict[str, torch.Tensor]  # the true source rows per matrix (float32)
    coords: torch.Tensor  # (vocab, k * len(matrices)) F blocks side by side
    primitives: dict[str, torch.Tensor]  # P per matrix (k x d)
    k: int
    fingerprints: dict[str, str]  # per matrix
    sets: WordSets
    train: np.ndarray
    val: np.ndarray
    vectors_fingerprint: str
    # what the network learns: ``coords``, or with --base mean the residual's coordinates
    # ``coords - base @ pinv(P)``, base being per matrix the FVT mean of each source token's
    # leave-one-out pieces (n x d)
    target: torch.Tensor
    base: dict[str, torch.Tensor] | None = None


def prepare_source(model_dir: str | Path, config: HypernetConfig) -> SourceData:
    """Factorize the source matrices and build the source word sets and the token split."""
    from vocadapt.init.ofa import factorize, word_sets
    from vocadapt.io.checkpoint import Checkpoint
    from vocadapt.provenance import fingerprint
    from vocadapt.tokenizer.canonical import special_ids
    from vocadapt.tokenizer.load import load_tokenizer
    from vocadapt.vectors.io import load_vectors

    if not config.vectors:
        raise VocadaptError("hypernet training needs multilingual word vectors: give --vectors FILE (keys 'lang:word', as for --method ofa)")
    ckpt = Checkpoint(model_dir)
    tok = load_tokenizer(ckpt.path, "source model's tokenizer")
    untied = not ckpt.vocab.tied and bool(ckpt.vocab.output)
    if config.matrix == "output" and not untied:
        raise VocadaptError(f"--matrix output: {ckpt.path} has a tied head; train --matrix input (or auto)")
    matrices = {"auto": ["input", "output"] if untied else ["input"], "input": ["input"], "output": ["output"]}[config.matrix]
    names = {"input": ckpt.vocab.input, "output": ckpt.vocab.output}
    wv = load_vectors(config.vectors)
    words, vectors, inc = word_sets(tok, wv, config.source_langs, "source", "hyperofa")
    n_vocab = inc.shape[0]
    rows, blocks, prims, fps = {}, [], {}, {}
    k = 0
    base, targets, has_base = None, [], np.ones(n_vocab, bool)
    if config.base == "mean":
        from vocadapt.tokenizer.align import leave_one_out_pieces
        from vocadapt.tokenizer.canonical import canonical_vocab

        # A source token re-encodes to itself; learn from the pieces it is made of instead, the
        # kind of multi-piece mean a new token gets at prediction time.
        pieces = leave_one_out_pieces(tok, list(range(n_vocab)), canonical_vocab(tok)[:n_vocab])
        has_base = np.fromiter((len(x) > 0 for x in pieces), dtype=bool, count=n_vocab)
        base = {}
    for m in matrices:
        source = ckpt.read(names[m])[:n_vocab].float()
        rank = source.shape[1] if config.rank == "full" else int(config.rank)
        f, p = factorize(source, rank)
        if k and f.shape[1] != k:
            raise VocadaptError(f"hyperofa: the input embedding has rank {k} but the head {f.shape[1]}; train --matrix input and --matrix output apart")
        k = f.shape[1]
        rows[m], prims[m], fps[m] = source, p, matrix_fingerprint(source)
        blocks.append(f)
        if base is not None:
            from vocadapt.init.context import combine_rows

            base[m] = combine_rows(source, pieces).values
            f = f - base[m] @ torch.linalg.pinv(p)  # the residual's coordinates: P has full row rank
        targets.append(f)
    sets = WordSets.from_incidence(inc, vectors)
    cand = np.nonzero(sets.has_words() & has_base)[0]
    specials = special_ids(tok)
    cand = cand[~np.isin(cand, np.fromiter(specials, dtype=np.int64, count=len(specials)))] if specials else cand
    if len(cand) < 4:
        raise VocadaptError(
            f"hyperofa: only {len(cand)} source tokens occur in words of {config.vectors}; "
            "do the vectors hold the source model's language (check --source-langs)?"
        )
    train, val = split_tokens(cand, config.val_fraction, config.seed)
    log.info("hyperofa: %d source tokens with words (%d train, %d validation), k=%d, matrices %s",
             len(cand), len(train), len(val), k, "+".join(matrices))
    coords = torch.cat(blocks, dim=1)
    return SourceData(matrices, rows, coords, prims, k, fps, sets, train, val, fingerprint(config.vectors),
                      coords if base is None else torch.cat(targets, dim=1), base)


class ReconstructTask(Task):
    """Train the hypernetwork to map word sets to the source tokens' normalized coordinates."""

    name = "hypernet"

    def __init__(self, model_dir: Path, data: SourceData, config: HypernetConfig, run_dir: Path):
        self.model_dir, self.data, self.config, self.run_dir = Path(model_dir), data, config, Path(run_dir)
        k, nb = data.k, len(data.matrices)
        target = data.target
        scale = torch.cat([target[data.train, b * k : (b + 1) * k].abs().mean().expand(k) for b in range(nb)])
        self.scale = scale.clamp_min(1e-12)
        self.targets = target / self.scale  # normalized: mean |target| = 1 per block
        self.batches = BucketedBatches(data.sets, data.train, config.batch_size, config.seed)
        self.world = 1

    def shape(self) -> NetShape:
        c = self.config
        return NetShape(self.data.sets.table.shape[1], self.data.k * len(self.data.matrices), self.data.k, c.hidden, c.layers, c.dropout)

    def setup(self, accelerator) -> torch.nn.Module:
        self.world = accelerator.num_processes
        self.device = accelerator.device
        net = HyperNet(self.shape(), torch.from_numpy(self.data.sets.table))
        net.scale.copy_(self.scale)
        return net.to(accelerator.device)

    def global_batch(self, step: int) -> GlobalBatch:
        tokens = self.batches.tokens_for(step)
        rng = np.random.default_rng([self.config.seed, step, 0xA06])
        parts = np.array_split(tokens, self.config.grad_accum * self.world)
        micro = [[make_batch(self.data.sets, parts[a * self.world + r], rng, self.config.max_words, self.config.augment_p, self.targets)
                  for r in range(self.world)] for a in range(self.config.grad_accum)]
        n_words = sum(int(b.lengths.sum()) for row in micro for b in row)
        return GlobalBatch(micro=micro, n_items=len(tokens), n_tokens=n_words)

    def loss_sum(self, model, micro: SetBatch) -> torch.Tensor:
        dev = next(model.parameters()).device
        pred = model(micro.words.to(dev), micro.lengths)
        return set_loss(pred.float(), micro.target.to(dev), self.data.k, self.config.loss).sum()

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        was = model.training
        model.eval()
        total, n = 0.0, 0
        for batch in validation_batches(self.data.sets, self.data.val, self.config, self.targets):
            dev = next(model.parameters()).device
            pred = model(batch.words.to(dev), batch.lengths).float()
            total += float(set_loss(pred, batch.target.to(dev), self.data.k, self.config.loss).sum())
            n += len(batch)
        model.train(was)
        return {"val_loss": total / max(n, 1)}

    def export(self, model, out_dir: Path) -> None:
        state = self.run_state
        from vocadapt.hypernet.quality import reconstruction_report

        quality = reconstruction_report(model, self.data, self.config)
        save_hypernet(out_dir, model, self.data, self.config, self.model_dir, state, quality, self.run_dir)

    def settings(self) -> dict:
        cfg = asdict(self.config)
        keep = ("vectors", "rank", "matrix", "hidden", "layers", "dropout", "max_words", "batch_size", "augment_p",
                "val_fraction", "infonce_weight", "l1_weight", "temperature", "source_langs", "base")
        return {**{k: cfg[k] for k in keep}, "model": self.data.fingerprints, "vectors_fingerprint": self.data.vectors_fingerprint}


def save_hypernet(out_dir: Path, model: HyperNet, data: SourceData, config: HypernetConfig, model_dir: Path,
                  state: dict, quality: dict, run_dir: Path | None) -> None:
    """The reusable hypernetwork directory: config + fingerprints, weights + primitives, quality, log."""
    from safetensors.torch import save_file

    from vocadapt.provenance import write_provenance

    out_dir = Path(out_dir)
    tensors = {f"net.{k}": v.detach().float().cpu().contiguous() for k, v in model.trainable_state().items()}
    for m, p in data.primitives.items():
        tensors[f"primitives.{m}"] = p.contiguous()
    save_file(tensors, str(out_dir / WEIGHTS_FILE))
    record = {
        "format": 1,
        "objective": "reconstruct",
        "shape": asdict(model.shape),
        "rank": data.k,
        "rank_option": config.rank,
        "matrices": data.matrices,
        "model_fingerprints": data.fingerprints,
        "vectors": str(config.vectors),
        "vectors_fingerprint": data.vectors_fingerprint,
        "source_langs": config.source_langs,
        "base": config.base,
        "max_words": config.max_words,
        "seed": config.seed,
        "source_model": str(model_dir),
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (out_dir / QUALITY_FILE).write_text(json.dumps(quality, indent=2) + "\n", encoding="utf-8")
    if run_dir is not None and (run_dir / "train_log.jsonl").is_file():
        (out_dir / "train_log.jsonl").write_text((run_dir / "train_log.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    write_provenance(out_dir, "hypernet.train", config, inputs={"source_model": model_dir, "vectors": config.vectors},
                     results={**state, "quality": quality, "train_tokens": len(data.train), "val_tokens": len(data.val)})


@dataclass
class Hypernet:
    """A loaded hypernetwork directory."""

    path: Path
    record: dict[str, Any]
    net: HyperNet
    primitives: dict[str, torch.Tensor]

    @property
    def matrices(self) -> list[str]:
        return list(self.record["matrices"])

    @property
    def rank(self) -> int:
        return int(self.record["rank"])

    @property
    def base(self) -> str:
        """none: predictions are rows; mean: they are residuals over the FVT mean of the pieces."""
        return str(self.record.get("base", "none"))

    def block(self, matrix: str) -> slice:
        i = self.matrices.index(matrix)
        return slice(i * self.rank, (i + 1) * self.rank)

    @torch.no_grad()
    def predict(self, sets: WordSets, tokens: np.ndarray, matrix: str, seed: int = 0) -> torch.Tensor:
        """(len(tokens), d) float32 rows for ``matrix``: coordinates @ P. ``sets.table`` is installed.

        With ``base == "mean"`` these are residuals: the caller adds each token's FVT mean.
        """
        self.net.set_table(torch.from_numpy(sets.table))
        self.net.eval()
        cfg = HypernetConfig(vectors=self.record["vectors"], max_words=int(self.record["max_words"]), seed=seed, progress=False)
        out = torch.zeros(len(tokens), self.rank)
        pos = {int(t): i for i, t in enumerate(tokens)}
        for batch in validation_batches(sets, np.asarray(tokens), cfg):
            c = self.net.coordinates(batch.words, batch.lengths)[:, self.block(matrix)]
            out[[pos[int(t)] for t in batch.tokens]] = c
        return out @ self.primitives[matrix]


def resolve_hypernet_dir(path: str | Path) -> Path:
    """A hypernetwork directory, or the run directory whose ``model/`` holds one."""
    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / CONFIG_FILE).is_file():
            return cand
    raise VocadaptError(f"not a hypernetwork directory (no {CONFIG_FILE}): {p} (make one with `vocadapt hypernet train`)")


def load_hypernet(path: str | Path) -> Hypernet:
    from safetensors.torch import load_file

    p = resolve_hypernet_dir(path)
    record = json.loads((p / CONFIG_FILE).read_text(encoding="utf-8"))
    tensors = load_file(str(p / WEIGHTS_FILE))
    net = HyperNet(NetShape(**record["shape"]))
    state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.startswith("table.")]:
        raise VocadaptError(f"{p / WEIGHTS_FILE} does not match {CONFIG_FILE} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    prims = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("primitives.")}
    return Hypernet(p, record, net.eval(), prims)


@dataclass
class HypernetResult:
    out_dir: Path  # the run directory; the hypernetwork is out_dir / "model"
    steps: int
    seconds: float
    stopped_early: bool
    quality: dict[str, Any]
    model_step: int | None = None  # the step whose network out_dir/model holds (the lowest val_loss with --patience)


def train_hypernet(model_dir: str | Path, out_dir: str | Path, config: HypernetConfig, *, resume: bool = False) -> HypernetResult:
    """Train a hypernetwork for ``model_dir`` into the run directory ``out_dir`` (hypernetwork in ``out_dir/model``)."""
    from vocadapt.train.engine import run

    out_dir = Path(out_dir)
    if not resume and out_dir.exists() and any(out_dir.iterdir()):
        raise VocadaptError(f"output directory exists and is not empty: {out_dir} (use --resume to continue it, or another --out)")
    data = prepare_source(model_dir, config)
    task = ReconstructTask(Path(model_dir), data, config, out_dir)
    result = run(task, config, out_dir, resume=resume)
    quality = json.loads((out_dir / "model" / QUALITY_FILE).read_text(encoding="utf-8"))
    return HypernetResult(out_dir, result.steps, result.seconds, result.stopped_early, quality, result.model_step)
