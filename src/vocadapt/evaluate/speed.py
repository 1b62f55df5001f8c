"""Throughput: tokens per second and characters per second, generating and reading.

A new tokenizer's point is more text per token, so tokens/s alone hides the gain (and a larger
embedding matrix can lower it): characters/s is the number a user feels.

* Generation: every model generates exactly ``max_new_tokens`` greedy tokens per prompt (EOS
  suppressed until then), batch 1, after one warm-up generation; wall-clock seconds of
  ``generate`` only. Characters/s here depends on what the model writes: an adapted model
  before training writes about one character per token, so its gain shows after training.
* Reading: the same held-out documents scored with one forward pass each (the bits-per-byte
  computation, batched); characters/s here depends only on the tokenizer and the model's size,
  so it shows the gain of the new vocabulary from step 0.
"""

from __future__ import annotations

import time

from vocadapt.evaluate.lm import GenArgs

DEFAULT_PROMPT = "Continue the text:\n\n{text}"


def speed_prompts(texts: list[str], n: int = 4, prefix_chars: int = 200) -> list[str]:
    return [t.strip()[:prefix_chars] for t in texts if t.strip()][:n]


def read_throughput(lm, texts: list[str], n_docs: int = 64, batch_size: int = 8) -> dict:
    """Characters and tokens per second of scoring ``n_docs`` held-out documents (after a warm-up)."""
    from vocadapt.evaluate.bpb import bits_per_byte

    docs = [t for t in texts if t.strip()][:n_docs]
    bits_per_byte(lm.model, lm.tokenizer, docs[:2], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    r = bits_per_byte(lm.model, lm.tokenizer, docs, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return {"read_chars_per_s": r.n_chars / seconds, "read_tokens_per_s": r.n_tokens / seconds, "read_docs": len(docs)}


def run_speed(lm, texts: list[str], *, n_prompts: int = 4, max_new_tokens: int = 64,
              prompt: str = DEFAULT_PROMPT, read_docs: int = 64) -> dict:
    prompts = [lm.chat(prompt.format(text=p)) for p in speed_prompts(texts, n_prompts)]
    args = GenArgs(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens)
    lm.generate_until([(prompts[0], GenArgs(max_new_tokens=4))])  # warm-up: allocator, kernels
    gens = lm.generate_until([(p, args) for p in prompts])
    seconds = sum(g.seconds for g in gens)
    tokens = sum(g.n_tokens for g in gens)
    chars = sum(len(g.text) for g in gens)
    metrics = {
        "tokens_per_s": tokens / seconds,
        "chars_per_s": chars / seconds,
        "gen_chars_per_token": chars / max(tokens, 1),
        "n_prompts": len(prompts),
        "new_tokens": tokens,
        "seconds": seconds,
        **(read_throughput(lm, texts, read_docs) if read_docs else {}),
    }
    return {"metrics": metrics, "samples": [{"prompt": p, "output": g.text, "n_tokens": g.n_tokens,
                                             "seconds": g.seconds} for p, g in zip(prompts, gens)]}
