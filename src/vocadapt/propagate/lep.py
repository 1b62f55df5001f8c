"""Learned Embedding Propagation: give an adapted base model's vocabulary to its instruct twin.

Inputs are three checkpoints of one architecture: the ORIGINAL base (old vocabulary), the
INSTRUCT model made from it (same shapes, old vocabulary, maybe a few chat tokens more) and the
ADAPTED base (new vocabulary, its rows learned by init + embedding-only training). For the input
embedding E and, when untied, the head O separately, a d x d map P from the base space to the
instruct space is fitted on the old vocabulary and applied to the adapted rows::

    swap        P = I
    overlap     P = lstsq(E_base[C], E_inst[C])            C: old tokens also in the new vocabulary
    conversion  P = lstsq(T(E_base), T(E_inst))            T(E)[t] = mean of E over the old-tokenizer
                                                            decomposition of new token t

    new rows    = E_adapted @ P                             (float64, cast to the instruct dtype)

The transformer layers are the instruct model's, copied byte for byte (streamed shard by shard);
with ``body="delta"`` every body tensor the adapted base changed (``--trainable layers:...``) is
the instruct one plus that change, ``W_inst + (W_adapted - W_base)`` (task arithmetic; the
"chat vector" of Huang et al. 2024 read the other way round);
the instruct model's special and chat tokens keep their instruct rows (tokens the new tokenizer
lacks are appended to it), and its chat template, special-token roles and generation config are
carried over. Exact math: METHODS.md section 7 (Tikhomirov & Chernyshev 2024).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vocadapt.errors import VocadaptError, did_you_mean
from vocadapt.init.context import BLOCK_ROWS
from vocadapt.io.atomic import atomic_dir, check_output_dir
from vocadapt.io.checkpoint import Checkpoint, write_checkpoint
from vocadapt.io.safetensors_stream import TensorInfo, read_header, write_file
from vocadapt.provenance import read_provenance, write_provenance
from vocadapt.tokenizer.align import Alignment, align_vocabularies, read_mapping
from vocadapt.tokenizer.canonical import special_ids, vocab_size
from vocadapt.tokenizer.load import load_tokenizer

log = logging.getLogger("vocadapt")

METHODS = ("swap", "overlap", "conversion")
BODIES = ("auto", "instruct", "delta")
ROLES = ("bos", "eos", "pad", "unk")


@dataclass
class PropagateConfig:
    """Settings of ``vocadapt propagate`` (and of a recipe's ``propagate:`` section)."""

    method: str = field(default="conversion", metadata={"help": "map from base to instruct space: swap (identity) | overlap | conversion"})
    min_fit_tokens: int = field(
        default=0,
        metadata={"help": "refuse a least-squares fit on fewer tokens (0: the hidden size, below which P is underdetermined)"},
    )
    keep_text: list[str] = field(
        default_factory=list,
        metadata={"help": "text the instruct model writes or reads (a marker, a system prompt) whose base tokenization "
                          "the output keeps: base pieces the new tokenizer lacks are grafted in with their instruct rows"},
    )
    keep_chat: bool = field(
        default=False,
        metadata={"help": "also keep the base tokenization of the chat template's own text (role names, default system prompt)"},
    )
    body: str = field(
        default="auto",
        metadata={"help": "the output's decoder layers: instruct (the instruct model's, as LEP) | delta (the instruct "
                          "model's plus what training changed in the adapted base's, W_inst + W_adapted - W_base) | auto "
                          "(delta when the adapted base's provenance says it trained layers, else instruct)"},
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}{did_you_mean(self.method, METHODS)}")
        if self.body not in BODIES:
            raise ValueError(f"body must be one of {', '.join(BODIES)}, not {self.body!r}{did_you_mean(self.body, BODIES)}")
        if self.min_fit_tokens < 0:
            raise ValueError(f"min_fit_tokens must be 0 or more, not {self.min_fit_tokens}")


@dataclass
class MapFit:
    """One fitted map. ``residual``: ||X P - Y||_F / ||Y||_F on ``residual_tokens`` tokens (for
    swap, X = Y's base rows with P = I: how far the instruct model moved); ``fit_tokens``: rows
    the least squares used (0 for swap)."""

    fit_tokens: int
    residual: float
    residual_tokens: int


@dataclass
class PropagateReport:
    out_dir: Path
    method: str
    rows: int  # rows of the output vocabulary matrices
    fits: dict[str, MapFit]  # per matrix: "input", and "output" when the head is untied
    kept_instruct_rows: int  # special/chat tokens whose rows are the instruct model's
    appended_tokens: list[str]  # instruct special tokens the adapted tokenizer lacked
    grafted_tokens: list[str] = field(default_factory=list)  # pieces appended for keep_text/keep_chat
    kept_text_differs: list[str] = field(default_factory=list)  # kept text still tokenized unlike the base
    body: str = "instruct"  # the body used: instruct, or delta (see PropagateConfig.body)
    body_deltas: list[str] = field(default_factory=list)  # body tensors given the adapted base's change (body="delta")
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


# ------------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------------


def _body_shapes(ckpt: Checkpoint) -> dict[str, tuple[int, ...]]:
    vocab = set(ckpt.vocab.names())
    return {n: tuple(i.shape) for n, i in ckpt.tensors.items() if n not in vocab}


def _check_twins(base: Checkpoint, other: Checkpoint, role: str) -> None:
    """Refuse ``other`` unless it has the base's architecture, dimensions and body tensors."""
    if other.model_type != base.model_type:
        raise VocadaptError(f"{role} is a {other.model_type} model but the base is {base.model_type}: propagation needs one architecture")
    if other.hidden_size != base.hidden_size:
        raise VocadaptError(f"{role} has hidden size {other.hidden_size}, the base {base.hidden_size}: not the same model family")
    if other.vocab.tied != base.vocab.tied:
        raise VocadaptError(
            f"{role} {'ties' if other.vocab.tied else 'unties'} its head but the base {'ties' if base.vocab.tied else 'unties'} it"
        )
    a, b = _body_shapes(base), _body_shapes(other)
    if a != b:
        missing = sorted(set(a) - set(b))
        extra = sorted(set(b) - set(a))
        differ = sorted(n for n in set(a) & set(b) if a[n] != b[n])
        what = (f"missing {missing[:3]}" if missing else f"extra {extra[:3]}" if extra else
                f"{differ[0]} is {b[differ[0]]} vs {a[differ[0]]} in the base")
        raise VocadaptError(f"{role} is not a same-shaped twin of the base: {what}")


def _check_vocabularies(base_tok: Any, inst_tok: Any, adapted_tok: Any, inst_rows: int) -> None:
    base_vocab, inst_vocab = base_tok.get_vocab(), inst_tok.get_vocab()
    moved = [t for t, i in base_vocab.items() if inst_vocab.get(t) != i]
    if moved:
        raise VocadaptError(
            f"the instruct tokenizer numbers {len(moved)} base tokens differently (e.g. {moved[0]!r}): "
            "it must be the base's vocabulary, with chat tokens at most appended"
        )
    if vocab_size(base_tok) > inst_rows:
        raise VocadaptError(f"the instruct model has {inst_rows} embedding rows but the base tokenizer {vocab_size(base_tok)} ids")
    if adapted_tok.get_vocab() == base_vocab:
        raise VocadaptError(
            "the adapted model still has the base model's vocabulary: pass the model written by "
            "`vocadapt init` (and trained), not the original base"
        )


# ------------------------------------------------------------------------------------------------
# The map
# ------------------------------------------------------------------------------------------------


def fit_pairs(alignment: Alignment, method: str, excluded: set[int]) -> list[list[int]]:
    """Old-vocabulary id lists whose mean rows are paired between base and instruct.

    overlap: one list [s] per new-vocabulary token copied from old id s; conversion: the
    old-tokenizer decomposition of every new-vocabulary token (a copied token decomposes into
    itself). Special tokens (``excluded`` old ids, and the new vocabulary's specials) are left
    out: chat tokens are trained apart in the instruct model and would bend the map.
    """
    pairs: list[list[int]] = []
    for t in range(alignment.target_size):
        if t in alignment.target_specials:
            continue
        s = int(alignment.copy_from[t])
        if s >= 0:
            ids = [s]
        elif method == "conversion":
            ids = alignment.decompositions.get(t, [])
        else:
            continue
        ids = [i for i in ids if i not in excluded]
        if ids:
            pairs.append(ids)
    return pairs


def mean_rows(matrix: torch.Tensor, pairs: list[list[int]]) -> torch.Tensor:
    """(len(pairs), d) float64: row i is the mean of ``matrix`` rows ``pairs[i]`` (T(E) of conversion)."""
    lengths = np.fromiter((len(p) for p in pairs), dtype=np.int64, count=len(pairs))
    ids = torch.from_numpy(np.fromiter((i for p in pairs for i in p), dtype=np.int64, count=int(lengths.sum())))
    rows = torch.from_numpy(np.repeat(np.arange(len(pairs)), lengths))
    out = torch.zeros(len(pairs), matrix.shape[1], dtype=torch.float64)
    for start in range(0, len(ids), BLOCK_ROWS):
        out.index_add_(0, rows[start : start + BLOCK_ROWS], matrix[ids[start : start + BLOCK_ROWS]].double())
    return out / torch.from_numpy(lengths).double()[:, None]


def fit_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """P (d x d, float64) minimizing ||x P - y||_F; x, y: (n, d)."""
    # gelsd (SVD-based) handles rank-deficient x; lstsq's CPU default gelsy does too but is
    # less accurate for ill-conditioned embeddings.
    return torch.linalg.lstsq(x.double(), y.double(), driver="gelsd").solution


def relative_residual(x: torch.Tensor, y: torch.Tensor, p: torch.Tensor | None) -> float:
    y = y.double()
    pred = x.double() if p is None else x.double() @ p
    return float(torch.linalg.norm(pred - y) / torch.linalg.norm(y).clamp_min(1e-30))


def _fit(method: str, base_m: torch.Tensor, inst_m: torch.Tensor, alignment: Alignment, excluded: set[int],
         min_tokens: int) -> tuple[torch.Tensor | None, MapFit]:
    """(P or None for identity, its fit record) for one matrix."""
    pairs = fit_pairs(alignment, "overlap" if method == "swap" else method, excluded)
    if not pairs:
        raise VocadaptError(
            f"{method}: no old-vocabulary token pairs to fit on (the vocabularies share nothing"
            + (" and no new token decomposes into old ones)" if method == "conversion" else "); try --method conversion")
        )
    x, y = mean_rows(base_m, pairs), mean_rows(inst_m, pairs)
    if method == "swap":
        return None, MapFit(fit_tokens=0, residual=relative_residual(x, y, None), residual_tokens=len(pairs))
    if len(pairs) < min_tokens:
        raise VocadaptError(
            f"{method}: only {len(pairs)} tokens to fit a {base_m.shape[1]} x {base_m.shape[1]} map "
            f"(need {min_tokens}); use --method conversion or swap, or lower --min-fit-tokens"
        )
    p = fit_map(x, y)
    return p, MapFit(fit_tokens=len(pairs), residual=relative_residual(x, y, p), residual_tokens=len(pairs))


def apply_map(rows: torch.Tensor, p: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """``rows @ p`` in float64, block by block, returned in ``dtype``; ``p=None`` is the identity."""
    out = torch.empty(rows.shape, dtype=dtype)
    for start in range(0, rows.shape[0], BLOCK_ROWS):
        block = rows[start : start + BLOCK_ROWS].double()
        out[start : start + BLOCK_ROWS] = (block if p is None else block @ p).to(dtype)
    return out


# ------------------------------------------------------------------------------------------------
# Tokenizer of the output
# ------------------------------------------------------------------------------------------------


def _output_tokenizer(adapted_tok: Any, inst_tok: Any) -> tuple[Any, dict[int, int], list[str]]:
    """The adapted tokenizer with the instruct model's special tokens, roles and chat template.

    Returns (tokenizer, {output id: instruct id} for every instruct special token, appended
    token strings). Special tokens the adapted tokenizer lacks are appended as special tokens.
    """
    from tokenizers import AddedToken

    inv_inst = {i: t for t, i in inst_tok.get_vocab().items()}
    inst_specials = sorted(special_ids(inst_tok))
    out_vocab = adapted_tok.get_vocab()
    appended = [inv_inst[i] for i in inst_specials if i in inv_inst and inv_inst[i] not in out_vocab]
    if appended:
        adapted_tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in appended], special_tokens=True)
    out_vocab = adapted_tok.get_vocab()
    keep = {out_vocab[inv_inst[i]]: i for i in inst_specials if i in inv_inst}
    for role in ROLES:
        token = getattr(inst_tok, f"{role}_token", None)
        if isinstance(token, str) and token in out_vocab:
            setattr(adapted_tok, f"{role}_token", token)
    if getattr(inst_tok, "chat_template", None):
        adapted_tok.chat_template = inst_tok.chat_template
    return adapted_tok, keep, appended


def chat_template_text(tokenizer: Any) -> list[str]:
    """The fixed text of ``tokenizer``'s chat template (role headers, a default system prompt):
    a rendered conversation cut at the special tokens and at the message contents.

    Rendered with and without a system turn; a template may refuse one of them (Gemma's and
    Mistral's refuse a system turn, through jinja's TemplateError), not both."""
    from jinja2.exceptions import TemplateError

    if not getattr(tokenizer, "chat_template", None):
        raise VocadaptError("keep_chat: the instruct model's tokenizer has no chat template")
    hole = "\x00"
    convs = ([{"role": "system", "content": hole}, {"role": "user", "content": hole}, {"role": "assistant", "content": hole}],
             [{"role": "user", "content": hole}, {"role": "assistant", "content": hole}])
    pieces: dict[str, None] = {}
    refused: list[str] = []
    for conv in convs:
        try:
            text = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=False)
            text += tokenizer.apply_chat_template(conv[:-1], tokenize=False, add_generation_prompt=True)
        except TemplateError as e:
            refused.append(str(e))
            continue
        for special in sorted(tokenizer.all_special_tokens + list(tokenizer.get_added_vocab()), key=len, reverse=True):
            text = text.replace(special, hole)
        pieces.update(dict.fromkeys(p for p in text.split(hole) if p.strip()))
    if len(refused) == len(convs):
        raise VocadaptError(f"keep_chat: the instruct model's chat template renders no conversation ({refused[-1]})")
    return list(pieces)


def graft_pieces(out_tok: Any, base_tok: Any, texts: list[str]) -> tuple[dict | None, dict[int, list[int]], list[str], list[str]]:
    """Make the (BPE) output tokenizer split ``texts`` the way the base tokenizer does.

    For every base piece of ``texts`` that the output vocabulary lacks, the output tokenizer's
    own split of the piece is merged back left to right by merges appended after all others
    (lowest priority: text the new merges handle keeps its split); the new tokens get ids after
    the largest in use. Returns (the edited tokenizer.json or None when nothing was missing,
    {output id: base ids whose mean instruct row it gets}, the grafted token strings, the texts
    that still split differently, e.g. where a new merge crosses a base piece boundary).
    """
    from vocadapt.tokenizer import build as C
    from vocadapt.tokenizer.canonical import tokenizer_json

    tj = copy.deepcopy(tokenizer_json(out_tok))  # tokenizer_json's result is cached: edit a copy
    model = tj["model"]
    base = base_tok.backend_tokenizer
    base_pieces = {t: base.encode(t, add_special_tokens=False).tokens for t in texts}

    def split_unlike_base(tok: Any) -> list[str]:
        return [t for t, pieces in base_pieces.items() if tok.encode(t, add_special_tokens=False).tokens != pieces]

    vocab: dict[str, int] = model.get("vocab") if isinstance(model.get("vocab"), dict) else {}
    added = {t["content"] for t in tj.get("added_tokens", [])}
    missing = [p for pieces in base_pieces.values() for p in pieces if p not in vocab and p not in added]
    if not missing:  # a split can still differ where pieces exist but other merges come first
        return None, {}, [], split_unlike_base(out_tok.backend_tokenizer)
    if model.get("type") != "BPE":
        raise VocadaptError(f"keep_text grafts BPE merges, but the adapted tokenizer is {model.get('type')}: drop --keep-text/--keep-chat")
    prefix = model.get("continuing_subword_prefix") or ""
    merges = C.bpe_merges(model)
    known = set(merges)
    next_id = vocab_size(out_tok)
    rows: dict[int, list[int]] = {}
    grafted: list[str] = []
    for piece in dict.fromkeys(missing):
        if piece in vocab:
            continue
        parts = [t.value for t in C.build_tokenizer(tj).model.tokenize(piece)]
        acc = parts[0]
        for part in parts[1:]:
            made = C.merge_result(acc, part, prefix)
            if made not in vocab:
                vocab[made] = next_id
                rows[next_id] = [t.id for t in base.model.tokenize(made)]
                grafted.append(made)
                next_id += 1
            if (acc, part) not in known:
                merges.append((acc, part))
                known.add((acc, part))
            acc = made
        C.set_bpe_merges(model, merges)  # the next piece is split by a tokenizer with these merges
    return tj, rows, grafted, split_unlike_base(C.build_tokenizer(tj))


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


def propagate(
    base: str | Path,
    instruct: str | Path,
    adapted: str | Path,
    out: str | Path,
    config: PropagateConfig | None = None,
    *,
    overwrite: bool = False,
) -> PropagateReport:
    """Write ``out``: the INSTRUCT model with the ADAPTED base's vocabulary, propagated.

    ``base``: the original base model (HF directory or .gguf); ``instruct``: its instruct twin;
    ``adapted``: the base with a new tokenizer and learned rows (``vocadapt init`` + training).
    The output loads with ``from_pretrained`` and chats with the instruct model's template.
    """
    config = config or PropagateConfig()
    started = time.perf_counter()
    check_output_dir(out, overwrite)
    base_ck, inst_ck, adapt_ck = Checkpoint(base), Checkpoint(instruct), Checkpoint(adapted)
    for ck, role in ((base_ck, "base"), (inst_ck, "instruct"), (adapt_ck, "adapted")):
        if ck.vocab.output_bias:
            raise VocadaptError(f"{role} model is a masked LM ({ck.model_type}): propagation is for causal LMs")
    _check_twins(base_ck, inst_ck, "the instruct model")
    _check_twins(base_ck, adapt_ck, "the adapted model")
    base_tok = load_tokenizer(base_ck.path, "base model's tokenizer")
    inst_tok = load_tokenizer(inst_ck.path, "instruct model's tokenizer")
    adapt_tok = load_tokenizer(adapt_ck.path, "adapted model's tokenizer")
    _check_vocabularies(base_tok, inst_tok, adapt_tok, inst_ck.embedding_rows)
    if vocab_size(adapt_tok) > adapt_ck.embedding_rows:
        raise VocadaptError(f"adapted tokenizer has ids up to {vocab_size(adapt_tok) - 1} but its model only {adapt_ck.embedding_rows} rows")

    trained = str(((read_provenance(adapt_ck.path) or {}).get("config") or {}).get("trainable", ""))
    # LEP moves the vocabulary only. Layers trained with it carry over as a change (auto): on the
    # demo's pair that kept the adapted base's man pages (1.619 against 1.878 without; docs/propagation.md).
    layered = trained.startswith("layers:")
    body = config.body if config.body != "auto" else ("delta" if layered else "instruct")
    if layered and body == "instruct":
        log.warning("propagate: the adapted model also trained decoder layers (--trainable %s); only its embedding "
                    "rows are propagated, the layers are the instruct model's (--body delta carries their change)", trained)
    alignment = align_vocabularies(base_tok, adapt_tok, mapping=read_mapping(adapt_ck.path), decompose=config.method == "conversion")
    excluded = special_ids(base_tok) | special_ids(inst_tok)
    out_tok, keep, appended = _output_tokenizer(adapt_tok, inst_tok)
    kept_text = list(config.keep_text) + (chat_template_text(inst_tok) if config.keep_chat else [])
    grafted_json, grafted_rows, grafted, differs = graft_pieces(out_tok, base_tok, kept_text) if kept_text else (None, {}, [], [])
    if differs:
        log.warning("propagate: %d kept text(s) still split unlike the base: %s", len(differs), differs[:3])
    n_rows = max(adapt_ck.embedding_rows, vocab_size(out_tok), max(grafted_rows, default=-1) + 1)
    min_tokens = config.min_fit_tokens or base_ck.hidden_size

    matrices = [("input", base_ck.vocab.input, inst_ck.vocab.input, adapt_ck.vocab.input)]
    if not base_ck.vocab.tied:
        matrices.append(("output", base_ck.vocab.output, inst_ck.vocab.output, adapt_ck.vocab.output))
    fits: dict[str, MapFit] = {}
    config_updates: dict[str, Any] = {"vocab_size": n_rows}
    for role in ROLES:
        tid = getattr(out_tok, f"{role}_token_id", None)
        if isinstance(tid, int) and f"{role}_token_id" in inst_ck.config:
            config_updates[f"{role}_token_id"] = tid

    with atomic_dir(out, overwrite=overwrite) as staging:
        replacements: dict[str, TensorInfo] = {}
        for matrix, base_name, inst_name, adapt_name in matrices:
            # One matrix at a time, spilled to disk when done: peak memory is one matrix of each model.
            inst_m = inst_ck.read(inst_name)
            p, fits[matrix] = _fit(config.method, base_ck.read(base_name), inst_m, alignment, excluded, min_tokens)
            log.info("propagate %s (%s): residual %.4f on %d tokens, fit on %d", matrix, config.method,
                     fits[matrix].residual, fits[matrix].residual_tokens, fits[matrix].fit_tokens)
            adapted_m = adapt_ck.read(adapt_name)
            # Rows past the adapted ones are appended chat tokens: all overwritten just below.
            new = torch.zeros(n_rows, inst_m.shape[1], dtype=inst_m.dtype)
            new[: adapted_m.shape[0]] = apply_map(adapted_m, p, inst_m.dtype)
            for out_id, inst_id in keep.items():
                new[out_id] = inst_m[inst_id]
            for out_id, inst_ids in grafted_rows.items():  # base pieces of kept text: the instruct rows
                new[out_id] = inst_m[inst_ids].double().mean(0).to(inst_m.dtype)
            del inst_m, adapted_m
            path = staging / f".spill-{len(replacements)}.safetensors"
            write_file(path, [("t", new)])
            replacements[inst_name] = read_header(path)[0]["t"]
            del new
        if inst_ck.vocab.tied and inst_ck.vocab.output:  # a tied checkpoint that stores the head anyway
            replacements[inst_ck.vocab.output] = replacements[inst_ck.vocab.input]
        body_deltas = _add_body_deltas(base_ck, inst_ck, adapt_ck, staging, replacements) if body == "delta" else []
        write_checkpoint(inst_ck, staging, replacements, config_updates)
        for spill in staging.glob(".spill-*.safetensors"):
            spill.unlink()
        out_tok.save_pretrained(str(staging))
        if grafted_json is not None:  # the grafted model vocabulary and merges; added tokens are unchanged
            (staging / "tokenizer.json").write_text(json.dumps(grafted_json, ensure_ascii=False), encoding="utf-8")
        report = PropagateReport(
            out_dir=Path(out), method=config.method, rows=n_rows, fits=fits, kept_instruct_rows=len(keep),
            appended_tokens=appended, grafted_tokens=grafted, kept_text_differs=differs, body=body, body_deltas=body_deltas,
            seconds=round(time.perf_counter() - started, 3),
        )
        write_provenance(
            staging, "propagate", config,
            inputs={"base": base_ck.path, "instruct": inst_ck.path, "adapted": adapt_ck.path},
            results={k: v for k, v in report.as_dict().items() if k != "out_dir"},
        )
    return report


def _add_body_deltas(base_ck: Checkpoint, inst_ck: Checkpoint, adapt_ck: Checkpoint, staging: Path,
                     replacements: dict[str, TensorInfo]) -> list[str]:
    """Give every body tensor the adapted base changed its change: ``W_inst + (W_adapted - W_base)``.

    One tensor of each model in memory at a time (float32 sums, cast to the instruct dtype), each
    result spilled into ``staging`` like the vocabulary matrices. Returns the changed names.
    """
    changed = []
    for name in sorted(_body_shapes(base_ck)):
        base_t, adapted_t = base_ck.read(name), adapt_ck.read(name)
        if torch.equal(base_t, adapted_t.to(base_t.dtype)):
            continue
        inst_t = inst_ck.read(name)
        new = (inst_t.float() + (adapted_t.float() - base_t.float())).to(inst_t.dtype)
        if not torch.isfinite(new).all():
            raise VocadaptError(f"body tensor {name}: the adapted base's change gives non-finite values")
        path = staging / f".spill-{len(replacements)}.safetensors"
        write_file(path, [("t", new)])
        replacements[name] = read_header(path)[0]["t"]
        changed.append(name)
    if changed:
        log.info("propagate: %d body tensors of the adapted base changed; their change is added to the instruct model's",
                 len(changed))
    else:
        log.warning("propagate: body delta, but no body tensor of the adapted base differs from the base's: nothing to carry")
    return changed
