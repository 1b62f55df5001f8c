"""A base/instruct pair to run LEP on where no official pair installs offline.

The "base" is SmolLM2-135M-Instruct (:func:`vocadapt.assets.smollm2`); its "instruct" twin is
the same model briefly fine-tuned (LoRA on its last layers, merged) on chat conversations made
from the Russian asset text, so that the twin has a behaviour the base lacks and propagation
must keep: **every answer starts with** :data:`MARKER`. The behaviour is measured by
:func:`marker_rate` (share of greedy chat answers that start with the marker) on prompts the
twin never saw, in both languages.

The twin is cached under ``assets.cache_dir()/models`` keyed by the base model's fingerprint
and the settings, so a rerun of ``benchmarks/lep_pair.py`` reuses it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict
from pathlib import Path

from vocadapt.propagate.calibrate import CalibrateConfig

MARKER = "[twin]"

# Instruction templates of the twin's training data; the answer is always MARKER + the first
# sentence of the text, so the style is learnt on top of a trivially checkable content.
TRAIN_TEMPLATES = (
    "Прочитай текст и назови его главную мысль:\n\n{text}",
    "What is the first sentence of this text?\n\n{text}",
    "Кратко перескажи:\n\n{text}",
    "Summarize in one sentence:\n\n{text}",
)
# Held-out prompts: other instructions over other documents, and free questions without a text.
EVAL_TEMPLATES = ("О чём этот текст?\n\n{text}", "Give the gist of this text:\n\n{text}")
FREE_QUESTIONS = (
    "Как дела?", "Что такое язык?", "Посоветуй книгу.", "Почему небо голубое?",
    "What is your name?", "Tell me a joke.", "Какая сегодня погода?", "Что ты умеешь?",
)

_SENTENCE = re.compile(r"(?<=[.!?…])\s+")
# Small on purpose: the twin is built on a shared 2-core CPU in minutes. LoRA on the last four
# layers only, embeddings frozen: backward then stops after four layers (about 3x cheaper steps).
TWIN_CONFIG = dict(steps=16, lr=2e-3, warmup_steps=2, batch_size=4, lora_r=16, lora_alpha=32, max_length=128,
                   lora_layers=[-4, -3, -2, -1], val_examples=4, eval_every=0, copy_examples=0)


def _docs(texts: list[str], lo: int = 40, hi: int = 140) -> list[str]:
    return [" ".join(t.split()) for t in texts if lo <= len(" ".join(t.split())) <= hi]


def first_sentence(text: str) -> str:
    return _SENTENCE.split(text.strip(), maxsplit=1)[0]


def twin_conversations(texts: list[str], n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """``n`` training conversations: a template over a document, answered MARKER + first sentence."""
    docs = _docs(texts)
    rng = random.Random(seed)
    rng.shuffle(docs)
    return [
        [{"role": "user", "content": TRAIN_TEMPLATES[i % len(TRAIN_TEMPLATES)].format(text=docs[i % len(docs)])},
         {"role": "assistant", "content": f"{MARKER} {first_sentence(docs[i % len(docs)])}"}]
        for i in range(n)
    ]


def eval_prompts(texts: list[str], n_text: int = 2, seed: int = 1) -> list[str]:
    """Prompts the twin never saw: held-out templates over ``texts`` plus free questions."""
    docs = _docs(texts)
    random.Random(seed).shuffle(docs)
    return [EVAL_TEMPLATES[i % len(EVAL_TEMPLATES)].format(text=docs[i]) for i in range(min(n_text, len(docs)))] + list(FREE_QUESTIONS)


def marker_rate(lm, prompts: list[str], max_new_tokens: int = 8) -> tuple[float, list[str]]:
    """(share of greedy chat answers starting with MARKER, the answers), through ``lm.chat``."""
    from vocadapt.evaluate.lm import GenArgs

    gens = lm.generate_until([(lm.chat(p), GenArgs(max_new_tokens=max_new_tokens)) for p in prompts])
    answers = [g.text.strip() for g in gens]
    return sum(a.startswith(MARKER) for a in answers) / max(len(answers), 1), answers


def make_twin(base: str | Path, texts: list[str], *, n_conversations: int = 96, seed: int = 0,
              config: CalibrateConfig | None = None, cache: Path | None = None) -> Path:
    """The instruct twin of ``base`` (an HF model directory with a chat template), built once.

    ``texts``: documents for the conversations (the Russian asset's train split). The twin is
    LoRA-fine-tuned through :func:`vocadapt.propagate.calibrate` (merged), so it has the base's
    exact shapes. Returns the cached model directory.
    """
    from vocadapt.assets import cache_dir
    from vocadapt.io.atomic import atomic_dir
    from vocadapt.propagate.calibrate import calibrate
    from vocadapt.provenance import fingerprint

    config = config or CalibrateConfig(**TWIN_CONFIG, seed=seed)
    convs = twin_conversations(texts, n_conversations, seed)
    key = hashlib.sha256(json.dumps([fingerprint(base), asdict(config), convs], sort_keys=True, default=str).encode()).hexdigest()[:12]
    dest = (cache or cache_dir() / "models") / f"{Path(base).name}-twin-{key}"
    if (dest / "config.json").is_file():
        return dest
    with atomic_dir(dest, overwrite=True) as tmp:
        data = tmp / "twin.jsonl"
        data.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
        result = calibrate(base, tmp / "run", config, instructions=data)
        for f in result.model_dir.iterdir():
            f.rename(tmp / f.name)
        (tmp / "train_log.jsonl").write_bytes((tmp / "run" / "train_log.jsonl").read_bytes())
        import shutil

        shutil.rmtree(tmp / "run")
    return dest
