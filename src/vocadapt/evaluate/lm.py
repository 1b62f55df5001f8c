"""The narrow model interface every task uses (the lm-evaluation-harness shape).

Three calls, nothing else:

* ``loglikelihood([(context, continuation), ...]) -> [(logprob_nats, is_greedy), ...]``
* ``loglikelihood_rolling([text, ...]) -> [logprob_nats, ...]`` (whole text, sliding windows)
* ``generate_until([(prompt, GenArgs), ...]) -> [Generation, ...]`` (greedy)

plus ``chat(prompt)``, which wraps a user prompt in the model's chat template when it has one.
A task never touches the model or tokenizer directly, so a different backend (another
framework, an API) only has to implement these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vocadapt.evaluate.bpb import document_logprobs, window_logprobs
from vocadapt.model import load_model, start_token_id


@dataclass
class GenArgs:
    """How to generate: at most ``max_new_tokens`` new tokens, greedy; stop at EOS or at the first
    of ``until`` (the stop string is cut from the text). ``min_new_tokens`` forces a length
    (used by the speed task so every model generates the same number of tokens)."""

    max_new_tokens: int = 128
    until: list[str] = field(default_factory=list)
    min_new_tokens: int = 0


@dataclass
class Generation:
    """One generated continuation: ``text`` (stop string removed), ``n_tokens`` new tokens,
    ``seconds`` of wall time spent in ``generate`` for it."""

    text: str
    n_tokens: int
    seconds: float


class HFLM:
    """A Hugging Face causal LM behind the three-call interface. ``name`` labels results."""

    def __init__(self, model, tokenizer, name: str = "model", *, max_length: int = 1024,
                 batch_size: int = 8, seed: int = 0, progress: bool = False):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_length, self.batch_size, self.seed, self.progress = max_length, batch_size, seed, progress
        self.model.eval()

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, dtype: str = "float32", **kwargs) -> HFLM:
        model, tok = load_model(model_dir, dtype=dtype)
        return cls(model, tok, kwargs.pop("name", None) or Path(model_dir).name, **kwargs)

    # ---------------------------------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def chat(self, prompt: str) -> str:
        """``prompt`` as a user turn plus the assistant header, or unchanged without a template."""
        if not self.has_chat_template:
            return prompt
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def _encode_context(self, context: str) -> list[int]:
        # The start token goes in front unless the (chat-formatted) context already begins with
        # it; an empty context then still predicts the continuation's first token.
        ids = self.encode(context)
        start = start_token_id(self.tokenizer)
        if start is not None and (not ids or ids[0] != start):
            ids = [start] + ids
        return ids

    # ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """log p(continuation | context) in nats, and whether greedy decoding would produce it.

        Context and continuation are tokenized separately (so the continuation's tokens are the
        same for every option); a leading context is cut from the left to fit ``max_length``.
        """
        windows, scored = [], []
        for context, continuation in requests:
            ctx, cont = self._encode_context(context), self.encode(continuation)
            if not cont:
                raise ValueError(f"empty continuation for context {context[-40:]!r}")
            ids = (ctx + cont)[-self.max_length:]
            windows.append(ids)
            scored.append(min(len(cont), len(ids) - 1))
        greedy: list[bool] = []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        lps = window_logprobs(self.model, windows, scored, batch_size=self.batch_size, pad_id=pad,
                              progress=self.progress, desc=f"{self.name} loglikelihood", greedy=greedy)
        return [(float(lp.double().sum()), g) for lp, g in zip(lps, greedy)]

    def loglikelihood_rolling(self, texts: list[str]) -> list[float]:
        """log p(text) in nats for each whole text (start token in front, sliding windows)."""
        lps, _, _ = document_logprobs(self.model, self.tokenizer, texts, max_length=self.max_length,
                                      batch_size=self.batch_size, progress=self.progress,
                                      desc=f"{self.name} loglikelihood_rolling")
        return [float(lp.double().sum()) for lp in lps]

    @torch.no_grad()
    def generate_batched(self, requests: list[tuple[str, int]]) -> list[str]:
        """Greedy continuations of (prompt, max new tokens), ``batch_size`` prompts at a time,
        left-padded and grouped by length: for making data, where throughput matters and per-prompt
        timings (what :meth:`generate_until` keeps comparable) do not. Stops at the EOS token."""
        tok = self.tokenizer
        device = next(self.model.parameters()).device
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        encoded = [self._encode_context(p)[-self.max_length:] for p, _ in requests]
        order = sorted(range(len(requests)), key=lambda i: (len(encoded[i]), requests[i][1]))
        out: list[str] = [""] * len(requests)
        from vocadapt.progress import bar

        batches = [order[k:k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        for idx in bar(batches, desc=f"{self.name} generate", unit="batch", enabled=self.progress):
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad if pad is not None else 0, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
                mask[r, width - len(encoded[i]):] = 1
            seq = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                      max_new_tokens=max(requests[i][1] for i in idx), pad_token_id=pad,
                                      eos_token_id=tok.eos_token_id)
            for r, i in enumerate(idx):
                new = seq[r, width:width + requests[i][1]].tolist()
                if tok.eos_token_id is not None and tok.eos_token_id in new:
                    new = new[: new.index(tok.eos_token_id)]
                out[i] = tok.decode(new, skip_special_tokens=True)
        return out

    @torch.no_grad()
    def generate_until(self, requests: list[tuple[str, GenArgs]]) -> list[Generation]:
        """Greedy continuations, one prompt at a time (batch 1 keeps timings comparable)."""
        from transformers import StoppingCriteria, StoppingCriteriaList

        tok = self.tokenizer
        device = next(self.model.parameters()).device
        out = []
        from vocadapt.progress import bar

        items = bar(requests, desc=f"{self.name} generate", unit="prompt", enabled=self.progress)
        for prompt, args in items:
            ids = self._encode_context(prompt)[-self.max_length:]
            input_ids = torch.tensor([ids], device=device)
            n_prompt = input_ids.shape[1]
            stops = [s for s in args.until if s]

            class _Until(StoppingCriteria):
                def __call__(self, seq, scores, **kw):  # noqa: ARG002
                    if not stops:
                        return torch.zeros(seq.shape[0], dtype=torch.bool, device=seq.device)
                    tail = tok.decode(seq[0, n_prompt:], skip_special_tokens=True)
                    done = any(s in tail for s in stops)
                    return torch.full((seq.shape[0],), done, dtype=torch.bool, device=seq.device)

            torch.manual_seed(self.seed)
            t0 = time.perf_counter()
            seq = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=args.max_new_tokens,
                min_new_tokens=args.min_new_tokens or None,
                do_sample=False,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                eos_token_id=tok.eos_token_id,
                stopping_criteria=StoppingCriteriaList([_Until()]),
            )
            seconds = time.perf_counter() - t0
            new = seq[0, n_prompt:]
            text = tok.decode(new, skip_special_tokens=True)
            for s in stops:
                if s in text:
                    text = text[: text.index(s)]
            out.append(Generation(text=text, n_tokens=int(new.shape[0]), seconds=seconds))
        return out
