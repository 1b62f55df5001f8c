"""A base/instruct pair to run LEP on where no official pair installs offline.

The "base" is SmolLM2-135M-Instruct (:func:`vocadapt.assets.smollm2`); its "instruct" twin is
the same model briefly fine-tuned (LoRA on its last layers and its full embedding matrix,
merged) on chat conversations made from the Russian asset text, so that the twin has a behaviour the base lacks and propagation
must keep: **every answer starts with** :data:`MARKER`. The behaviour is measured by
:func:`marker_rate` (share of greedy chat answers that start with the marker) on prompts the
twin never saw, in both languages.

Real instruct models are fully fine-tuned, so their embeddings drift from the base's; the twin
trains its (tied) embedding matrix too, with a smaller learning rate than its LoRA, so that the
propagation maps (METHODS.md section 7) have something to fit. :func:`embedding_drift` measures
the drift (written to ``drift.json`` in the twin's directory).

The twin is cached under ``vocadapt.cache.cache_dir()/models`` keyed by the base model's fingerprint,
the settings, the conversations and :data:`TWIN_VERSION`, so a rerun of
``benchmarks/lep_pair.py`` reuses it and a change of recipe never reuses a stale one.
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
# Bumped whenever the recipe changes in a way the config and conversations do not show.
TWIN_VERSION = 2
# Small on purpose: the twin is built on a shared 2-core CPU in minutes. LoRA on the last four
# layers plus the full embedding matrix (tied: also the head), so backward runs through every
# layer; the embedding's own lr keeps the marker behaviour while every row drifts measurably.
TWIN_CONFIG = dict(steps=16, lr=2e-3, warmup_steps=2, batch_size=4, lora_r=16, lora_alpha=32, max_length=128,
                   lora_layers=[-4, -3, -2, -1], val_examples=4, eval_every=0, copy_examples=0,
                   train_embeddings=True, embedding_lr=1e-3)


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
    from vocadapt.cache import cache_dir
    from vocadapt.io.atomic import atomic_dir
    from vocadapt.propagate.calibrate import calibrate
    from vocadapt.provenance import fingerprint

    config = config or CalibrateConfig(**TWIN_CONFIG, seed=seed)
    convs = twin_conversations(texts, n_conversations, seed)
    settings = asdict(config)
    if not config.exports_best:
        # The last step's model, as every twin before --export-model existed: the same key, so a
        # cached twin stays valid (a rebuild gave the same bytes and cost 4 minutes).
        settings.pop("export_model")
    key = hashlib.sha256(json.dumps([TWIN_VERSION, fingerprint(base), settings, convs], sort_keys=True,
                                    default=str).encode()).hexdigest()[:12]
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
        drift = embedding_drift(base, tmp)
        (tmp / "drift.json").write_text(json.dumps(drift, indent=2) + "\n", encoding="utf-8")
    return dest


def embedding_drift(base: str | Path, instruct: str | Path) -> dict[str, dict[str, float]]:
    """How far the vocabulary matrices of ``instruct`` moved from ``base``'s, and how linearly.

    Per matrix ("input", and "output" when untied), over the non-special rows of the base
    vocabulary: ``relative_change`` = ||E_i - E_b|| / ||E_b|| (Frobenius); ``linear_residual`` =
    ||E_b P - E_i|| / ||E_i|| with P the least-squares d x d map (what overlap/conversion fit,
    here on every row); ``unexplained`` = ||E_b P - E_i|| / ||E_i - E_b||: the share of the
    drift's norm that no linear map explains (0: a pure linear map; 1: none of it).
    """
    import torch

    from vocadapt.io.checkpoint import Checkpoint
    from vocadapt.propagate.lep import fit_map
    from vocadapt.tokenizer.canonical import special_ids, vocab_size
    from vocadapt.tokenizer.load import load_tokenizer

    b, i = Checkpoint(base), Checkpoint(instruct)
    tok = load_tokenizer(b.path, "base model's tokenizer")
    rows = torch.tensor(sorted(set(range(vocab_size(tok))) - special_ids(tok)))
    names = [("input", b.vocab.input, i.vocab.input)]
    if not b.vocab.tied:
        names.append(("output", b.vocab.output, i.vocab.output))
    out = {}
    for matrix, bn, inn in names:
        eb, ei = b.read(bn)[rows].double(), i.read(inn)[rows].double()
        delta = torch.linalg.norm(ei - eb)
        gap = torch.linalg.norm(eb @ fit_map(eb, ei) - ei)
        out[matrix] = {"relative_change": float(delta / torch.linalg.norm(eb)),
                       "linear_residual": float(gap / torch.linalg.norm(ei)),
                       "unexplained": float(gap / delta.clamp_min(1e-30)), "rows": len(rows)}
    return out
