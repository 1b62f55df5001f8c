"""Generation throughput: tokens per second and characters per second on the same prompts.

A new tokenizer's point is more text per token, so tokens/s alone hides the gain (and a larger
embedding matrix can lower it): characters/s is the number a user feels. Every model generates
exactly ``max_new_tokens`` greedy tokens per prompt (EOS suppressed until then), batch 1, after
one warm-up generation; times are wall-clock seconds of ``generate`` only.
"""

from __future__ import annotations

from vocadapt.evaluate.lm import GenArgs

DEFAULT_PROMPT = "Continue the text:\n\n{text}"


def speed_prompts(texts: list[str], n: int = 4, prefix_chars: int = 200) -> list[str]:
    return [t.strip()[:prefix_chars] for t in texts if t.strip()][:n]


def run_speed(lm, texts: list[str], *, n_prompts: int = 4, max_new_tokens: int = 64,
              prompt: str = DEFAULT_PROMPT) -> dict:
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
    }
    return {"metrics": metrics, "samples": [{"prompt": p, "output": g.text, "n_tokens": g.n_tokens,
                                             "seconds": g.seconds} for p, g in zip(prompts, gens)]}
