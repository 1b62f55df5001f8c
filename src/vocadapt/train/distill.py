"""Cross-tokenizer self-distillation: the original model teaches the adapted one.

The teacher is the source model with its own tokenizer (frozen); the student is the adapted
model with the new tokenizer. Their token sequences differ, so token-level KL is undefined.
Approximate Likelihood Matching (Minixhofer, Ponti, Vulić 2025, arXiv 2503.20083) compares
likelihoods of *chunks* instead: spans of text whose both ends are token boundaries in both
tokenizations. Chunk log-likelihood is the sum of its tokens' log-probabilities; if the student
matched every chunk's likelihood, it would give the text the teacher's bits per byte.

Per chunk c with teacher and student log-likelihoods ``t`` and ``s`` (nats, <= 0), the loss is
the binary KL divergence between the Bernoullis with success probabilities ``exp(t/T)`` and
``exp(s/T)`` (ALM's binarised objective; its gradient is that of ALM's binary cross entropy, and
it is exactly 0 when the likelihoods agree). The temperature ``T`` keeps those probabilities away
from 0, where the gradient would vanish: with ``T`` = 100 a 10-nat word is p = 0.90, and the loss
behaves like a squared relative error of the log-likelihood. ``abs`` is ALM's plain |t - s|.

Alignment (:func:`align_chunks`) works on character offsets of one text encoded by both
tokenizers, so byte-level BPE, SentencePiece and byte fallback all line up: a token belongs to
the first common boundary at or after its end. Tokens past the last common boundary, and the
chunk holding the first token of a segment that has no start token in front (nothing predicts
it), are not scored on either side.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vocadapt.errors import VocadaptError

DIFFS = ("binary-kl", "abs")
# Hidden states matched at chunk ends. Only the final one: on SmolLM2 -> Russian the middle layers'
# relative errors at init are 10-100x the final layer's (a few outlier channels), so an average
# over every layer is a term about those channels (docs/distill.md).
HIDDEN = ("none", "last")
# A log-likelihood of exactly 0 (a certain chunk) makes log(1 - p) infinite.
_EPS = 1e-6


@dataclass
class Side:
    """One tokenizer's view of a micro-batch: ``ids`` (B, L) int64 padded with ``pad``, and
    ``chunk`` (B, L) int64: the chunk each token's log-probability adds to, -1 for none;
    ``mask`` (B, L) bool: real tokens (not padding)."""

    ids: torch.Tensor
    chunk: torch.Tensor
    mask: torch.Tensor


@dataclass
class DistillBatch:
    student: Side
    teacher: Side
    n_chunks: int  # chunks in this micro-batch (ids 0 .. n_chunks-1)


def align_chunks(student_ends: list[int], teacher_ends: list[int], *, scored_from_start: bool,
                 ) -> tuple[list[int], list[int], int]:
    """Chunk index of each token of both tokenizations of one text segment.

    ``*_ends``: each token's end offset in the segment (characters; non-decreasing).
    ``scored_from_start``: whether the first token is predicted (a start token precedes it).
    Returns (student chunk per token, teacher chunk per token, number of chunks), -1 = unscored.
    """
    common = sorted(set(student_ends) & set(teacher_ends))
    if not common:
        return [-1] * len(student_ends), [-1] * len(teacher_ends), 0

    def assign(ends: list[int]) -> list[int]:
        return [i if i < len(common) else -1 for i in (bisect.bisect_left(common, e) for e in ends)]

    s, t = assign(student_ends), assign(teacher_ends)
    n = len(common)
    if not scored_from_start:
        # The first token has no prediction: its whole chunk is unscored on both sides.
        first = s[0] if s else (t[0] if t else -1)
        if first >= 0:
            s = [-1 if c == first else c for c in s]
            t = [-1 if c == first else c for c in t]
    return s, t, n


def _ends(offsets) -> list[int]:
    """Each token's end offset (characters) from a fast tokenizer's offset mapping."""
    return [int(e) for _, e in offsets]


class ChunkAligner:
    """Turns student token blocks into aligned student/teacher micro-batches.

    A block (a span of the packed training corpus) is split into segments at the student's
    start token; each segment is decoded to text and encoded by both tokenizers with offsets.
    Both rows keep the segments in the same order with each side's own start token in front.
    """

    def __init__(self, student_tok, teacher_tok, student_start: int | None, teacher_start: int | None):
        for tok, who in ((student_tok, "student"), (teacher_tok, "teacher")):
            if not getattr(tok, "is_fast", False):
                raise VocadaptError(f"distillation needs a fast tokenizer (tokenizer.json) for the {who}")
        self.s_tok, self.t_tok = student_tok, teacher_tok
        self.s_start, self.t_start = student_start, teacher_start
        self.s_pad = student_tok.pad_token_id if student_tok.pad_token_id is not None else 0
        self.t_pad = teacher_tok.pad_token_id if teacher_tok.pad_token_id is not None else 0

    def segments(self, ids: np.ndarray) -> list[tuple[list[int], bool]]:
        """(content ids, preceded by a start token) for each document piece of a block."""
        ids = [int(i) for i in ids]
        if self.s_start is None:
            return [(ids, False)] if ids else []
        out, cur, started = [], [], False
        for i in ids:
            if i == self.s_start:
                if cur or started:
                    out.append((cur, started))
                cur, started = [], True
            else:
                cur.append(i)
        if cur or started:
            out.append((cur, started))
        return [(c, s) for c, s in out if c]

    def batch(self, blocks: list[np.ndarray]) -> DistillBatch:
        s_rows, s_chunks, t_rows, t_chunks = [], [], [], []
        n_chunks = 0
        for block in blocks:
            s_row, s_ch, t_row, t_ch = [], [], [], []
            segs = self.segments(block)
            texts = [self.s_tok.decode(c, skip_special_tokens=False, clean_up_tokenization_spaces=False) for c, _ in segs]
            kw = dict(add_special_tokens=False, return_offsets_mapping=True)
            s_enc = self.s_tok(texts, **kw) if texts else {"input_ids": [], "offset_mapping": []}
            t_enc = self.t_tok(texts, **kw) if texts else {"input_ids": [], "offset_mapping": []}
            for k, (_, started) in enumerate(segs):
                s_ids, t_ids = s_enc["input_ids"][k], t_enc["input_ids"][k]
                s_c, t_c, n = align_chunks(_ends(s_enc["offset_mapping"][k]), _ends(t_enc["offset_mapping"][k]),
                                           scored_from_start=started)
                shift = lambda cs: [c + n_chunks if c >= 0 else -1 for c in cs]  # noqa: E731
                if started and self.s_start is not None:
                    s_row.append(self.s_start)
                    s_ch.append(-1)
                if started and self.t_start is not None:
                    t_row.append(self.t_start)
                    t_ch.append(-1)
                elif started and self.t_start is None and t_c:
                    # A teacher without a start token cannot predict the segment's first token.
                    first = t_c[0]
                    s_c = [-1 if c == first else c for c in s_c]
                    t_c = [-1 if c == first else c for c in t_c]
                s_row += s_ids
                s_ch += shift(s_c)
                t_row += t_ids
                t_ch += shift(t_c)
                n_chunks += n
            s_rows.append(s_row)
            s_chunks.append(s_ch)
            t_rows.append(t_row)
            t_chunks.append(t_ch)
        return DistillBatch(_pad(s_rows, s_chunks, self.s_pad), _pad(t_rows, t_chunks, self.t_pad), n_chunks)


def _pad(rows: list[list[int]], chunks: list[list[int]], pad: int) -> Side:
    width = max(1, max((len(r) for r in rows), default=1))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    ch = torch.full((len(rows), width), -1, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (r, c) in enumerate(zip(rows, chunks)):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        ch[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        mask[i, : len(r)] = True
    return Side(ids, ch, mask)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, j] | ids[:, :j]) for j >= 1, and 0 at j = 0: (B, L) float32.

    Computed as gathered logit minus logsumexp, so no (B, L, V) log-softmax copy is made.
    """
    lg = logits[:, :-1].float()
    picked = lg.gather(-1, ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(lg, dim=-1)
    return torch.nn.functional.pad(picked, (1, 0))


def chunk_sums(logp: torch.Tensor, chunk: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """Sum of token log-probabilities per chunk: (n_chunks,)."""
    keep = chunk >= 0
    out = torch.zeros(n_chunks, dtype=logp.dtype, device=logp.device)
    return out.index_add(0, chunk[keep], logp[keep])


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def chunk_loss(teacher: torch.Tensor, student: torch.Tensor, *, diff: str = "binary-kl",
               temperature: float = 100.0) -> torch.Tensor:
    """Per-chunk distance between teacher and student chunk log-likelihoods (nats): (n_chunks,)."""
    if diff == "abs":
        return (teacher - student).abs()
    if diff != "binary-kl":
        raise VocadaptError(f"unknown distillation loss {diff!r} (one of {', '.join(DIFFS)})")
    a = (teacher / temperature).clamp(max=0) - _EPS
    b = (student / temperature).clamp(max=0) - _EPS
    pa = torch.exp(a)
    return pa * (a - b) + (1 - pa) * (_log1mexp(a) - _log1mexp(b))


def chunk_ends(chunk: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """Flat (B * L) position of each chunk's last token: (n_chunks,)."""
    flat = chunk.reshape(-1)
    keep = flat >= 0
    pos = torch.arange(flat.numel(), device=flat.device)
    out = torch.full((n_chunks,), -1, dtype=torch.long, device=flat.device)
    return out.scatter_reduce(0, flat[keep], pos[keep], reduce="amax")


def hidden_loss(student: torch.Tensor, s_chunk: torch.Tensor, teacher: torch.Tensor, t_chunk: torch.Tensor,
                n_chunks: int) -> torch.Tensor:
    """Per-chunk distance between the (B, L, d) hidden states both models reach at the chunk's end: (n_chunks,).

    After its last token each side has read the same text, so the two states can agree (the body
    is shared: same width, same layers); where they do, every prediction the next chunk makes
    over the old vocabulary agrees too. This is ALM's hidden-state term (tokenkit's
    ``alm_latents`` with ``l2`` normalisation): the squared error over the teacher's mean squared
    norm on the micro-batch. It gives a dense target (d numbers a chunk against the
    likelihood's one).
    """
    s = student.reshape(-1, student.shape[-1])[chunk_ends(s_chunk, n_chunks)].float()
    t = teacher.reshape(-1, teacher.shape[-1])[chunk_ends(t_chunk, n_chunks)].float()
    return (s - t).pow(2).sum(-1) / t.pow(2).sum(-1).mean().clamp_min(1e-8)


def teacher_dir_from(model_dir: Path) -> Path | None:
    """The source model ``vocadapt init`` started ``model_dir`` from (looking through trainings)."""
    from vocadapt.train.export import init_provenance

    prov = init_provenance(Path(model_dir)) or {}
    path = ((prov.get("inputs") or {}).get("source_model") or {}).get("path")
    return Path(path) if path else None
