"""Bits per UTF-8 byte of held-out text: the loss that compares models across tokenizers.

Per-token loss is not comparable between a model with the old vocabulary and one with a new
vocabulary (the new one makes fewer, longer tokens). Bits per byte is: the total negative
log-likelihood of every token of the text, in bits, divided by the UTF-8 bytes of that text.
Both numerator and denominator describe the same string, whatever the tokenization.

How a document is scored:

* It is encoded on its own, without the tokenizer's automatic special tokens, and a start
  token is put in front (BOS when the tokenizer has one, else EOS, the way lm-evaluation-harness
  does it) so that the first real token is predicted too. Every byte of the text is counted.
* Documents longer than ``max_length`` are scored with overlapping windows: a window starts
  every ``stride`` tokens, and in each window only the tokens not scored by an earlier window
  count. So every token is scored exactly once, and all but the first window's tokens see at
  least ``max_length - stride`` tokens of context.
* Windows of all documents are batched together (right-padded: with causal attention, padding
  after the real tokens cannot change them) and log-probabilities are taken in float32.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from vocadapt.errors import VocadaptError
from vocadapt.model import start_token_id

LN2 = math.log(2.0)


@dataclass
class BpbResult:
    """Totals over all evaluated documents.

    ``nll_bits``: summed negative log2-likelihood of every scored token (bits).
    ``n_bytes`` / ``n_chars``: UTF-8 bytes / Unicode characters of the documents.
    ``n_tokens``: tokens the documents took (start token not counted).
    ``n_unscored``: tokens that could not be predicted (only when the tokenizer has neither BOS
    nor EOS: the first token of each document); their bytes still count in ``n_bytes``.
    """

    bits_per_byte: float
    nll_bits: float
    n_bytes: int
    n_chars: int
    n_tokens: int
    chars_per_token: float
    n_docs: int = 0
    n_unscored: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def encode_document(tokenizer, text: str) -> tuple[list[int], bool]:
    """(ids with the start token in front, whether a start token was added)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    start = start_token_id(tokenizer)
    return ([start] + list(ids), True) if start is not None else (list(ids), False)


def rolling_windows(n: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows over a sequence of ``n`` tokens as (begin, end, n_scored).

    The window is ``seq[begin:end]``; it predicts ``seq[begin+1:end]`` and scores the last
    ``n_scored`` of those, i.e. the targets not scored by the previous window. Targets are
    positions 1..n-1, each scored exactly once.
    """
    if max_length < 2:
        raise VocadaptError(f"max_length must be at least 2, not {max_length}")
    if not 1 <= stride <= max_length - 1:
        raise VocadaptError(f"stride must be between 1 and max_length-1 ({max_length - 1}), not {stride}")
    out: list[tuple[int, int, int]] = []
    scored_until = 1  # next target position not yet scored
    begin = 0
    while scored_until < n:
        end = min(begin + max_length, n)
        out.append((begin, end, end - scored_until))
        scored_until = end
        begin += stride
    return out


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Positions of ``lengths`` (sorted longest first) grouped into batches of at most
    ``batch_size``, a batch closed early when the next length is under half its longest.

    Every row of a batch is padded to its longest, so a 20-token document batched with 1,024-token
    windows costs as much as one of them: on the demo's man pages (two long documents, six short)
    fixed batches of 8 computed 8,192 positions for 3,400 tokens. With the half rule padding is
    under half of any batch. Each window's log-probabilities do not depend on its batch (right
    padding, causal attention), so the scores are the same.
    """
    batches: list[list[int]] = []
    for j, n in enumerate(lengths):
        if batches and len(batches[-1]) < batch_size and 2 * n >= lengths[batches[-1][0]]:
            batches[-1].append(j)
        else:
            batches.append([j])
    return batches


@torch.no_grad()
def window_logprobs(model, windows: list[list[int]], n_scored: list[int], *, batch_size: int = 8,
                    pad_id: int = 0, progress: bool = False, desc: str = "scoring",
                    greedy: list | None = None) -> list[torch.Tensor]:
    """Log-probabilities (nats, float32) of the last ``n_scored[i]`` tokens of each window.

    ``windows[i]`` is a list of token ids; the result for it has shape ``(n_scored[i],)``.
    Windows are sorted by length so batches carry little padding. When ``greedy`` is a list,
    ``greedy[i]`` is set to whether every scored token was the argmax (lm-eval's ``is_greedy``).
    """
    if greedy is not None:
        greedy[:] = [False] * len(windows)
    device = next(model.parameters()).device
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
    out: list[torch.Tensor | None] = [None] * len(windows)
    batches = length_batches([len(windows[i]) for i in order], batch_size)
    batches = [[order[j] for j in b] for b in batches]
    for batch in _progress(batches, progress, desc):
        width = max(len(windows[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(windows[i])] = torch.tensor(windows[i])
            mask[row, : len(windows[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (B, T, V)
        for row, i in enumerate(batch):
            n, k = len(windows[i]), n_scored[i]
            if k == 0:
                out[i] = torch.zeros(0)
                continue
            # logits at position p predict token p+1: the last k targets are tokens n-k..n-1.
            lp = torch.log_softmax(logits[row, n - k - 1 : n - 1].float(), dim=-1)  # (k, V)
            target = ids[row, n - k : n].to(lp.device)
            out[i] = lp.gather(1, target[:, None])[:, 0].cpu()
            if greedy is not None:
                greedy[i] = bool((lp.argmax(-1) == target).all())
        del logits
    return out  # type: ignore[return-value]


def document_logprobs(model, tokenizer, texts: list[str], *, max_length: int = 1024,
                      stride: int | None = None, batch_size: int = 8, progress: bool = False,
                      desc: str = "scoring") -> tuple[list[torch.Tensor], list[int], list[bool]]:
    """Per-document token log-probabilities (nats), token counts and start-token flags.

    ``result[0][d]`` has shape ``(n_tokens_d,)`` when a start token exists, else
    ``(n_tokens_d - 1,)`` (the first token cannot be predicted).
    """
    stride = stride if stride is not None else max(1, max_length // 2)
    encoded = [encode_document(tokenizer, t) for t in texts]
    windows, scored, owner = [], [], []
    for d, (ids, _) in enumerate(encoded):
        for begin, end, k in rolling_windows(len(ids), max_length, stride):
            windows.append(ids[begin:end])
            scored.append(k)
            owner.append(d)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lps = window_logprobs(model, windows, scored, batch_size=batch_size, pad_id=pad, progress=progress, desc=desc)
    per_doc: list[list[torch.Tensor]] = [[] for _ in texts]
    for d, lp in zip(owner, lps):
        per_doc[d].append(lp)  # windows of one document stay in order
    doc_lps = [torch.cat(p) if p else torch.zeros(0) for p in per_doc]
    n_tokens = [len(ids) - (1 if has_start else 0) for ids, has_start in encoded]
    return doc_lps, n_tokens, [h for _, h in encoded]


def bits_per_byte(model, tokenizer, texts: list[str], *, max_length: int = 1024,
                  stride: int | None = None, batch_size: int = 8, progress: bool = False,
                  desc: str = "bits per byte") -> BpbResult:
    """Bits per UTF-8 byte of ``texts`` under ``model`` (see the module docstring).

    ``max_length``: tokens per window (including the start token); ``stride``: tokens between
    window starts (default ``max_length // 2``); ``batch_size``: windows per forward pass.
    """
    texts = [t for t in texts if t]
    if not texts:
        raise VocadaptError("held-out text is empty: nothing to score for bits per byte")
    was_training = model.training
    model.eval()
    try:
        doc_lps, n_tokens, has_start = document_logprobs(
            model, tokenizer, texts, max_length=max_length, stride=stride, batch_size=batch_size, progress=progress,
            desc=desc)
    finally:
        model.train(was_training)
    nll_bits = -sum(float(lp.double().sum()) for lp in doc_lps) / LN2
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_chars = sum(len(t) for t in texts)
    total_tokens = sum(n_tokens)
    return BpbResult(
        bits_per_byte=nll_bits / n_bytes,
        nll_bits=nll_bits,
        n_bytes=n_bytes,
        n_chars=n_chars,
        n_tokens=total_tokens,
        chars_per_token=n_chars / max(total_tokens, 1),
        n_docs=len(texts),
        n_unscored=sum(1 for h, n in zip(has_start, n_tokens) if not h and n > 0),
    )


def _progress(items, enabled: bool, desc: str):
    from vocadapt.progress import bar

    return bar(items, desc=desc, unit="batch", enabled=enabled)
