"""Run tasks on models and write the results.

Layout of ``out``::

    out/<model-name>/<dataset>.json   one file per task dataset: metrics + scored samples
    out/summary.json                  one row per model: headline metrics + micro-average
    out/summary.md                    the same as a Markdown table
    out/vocadapt.json                 provenance

The micro-average (``score``) is the plain mean over datasets of each dataset's main score, as
in Darumeru: ``copy_sentence``, ``copy_paragraph``, ``acc_label`` of each choice set, ``rougeL``
of each summary set. ``bits_per_byte`` (lower is better) and speed are reported beside it, never
averaged in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vocadapt.corpus import take_chars
from vocadapt.errors import VocadaptError, did_you_mean


@dataclass
class EvalConfig:
    """Knobs shared by the tasks; every field has a default so a plain call works."""

    max_length: int = 1024  # tokens per scoring window
    batch_size: int = 8  # windows per forward pass
    dtype: str = "float32"
    max_docs: int | None = None  # use only the first N held-out documents (quick runs)
    max_chars: int | None = None  # and at most N characters of them (long documents cost the same as short)
    n_copy_sentences: int = 16
    n_copy_paragraphs: int = 4
    copy_max_new_tokens: int | None = None  # cap on the copy output (default: 1.3 x reference + 8)
    n_choice: int = 40  # items of the built-in completion set when no choice data is given
    choice_modes: tuple[str, ...] = ("label", "option")
    lemmatize: bool = False  # ROUGE on pymorphy3 lemmas
    summary_new_tokens: int = 96
    n_speed_prompts: int = 4
    speed_new_tokens: int = 64
    seed: int = 0
    progress: bool = True
    extra: dict = field(default_factory=dict)


@dataclass
class TaskInput:
    texts: list[str]
    data_dir: Path | None
    config: EvalConfig


TaskFn = Callable[["object", TaskInput], dict]  # -> {dataset_name: {"metrics":..., "samples":...}}
TASKS: dict[str, TaskFn] = {}
MAIN_SCORE = {"copy_sentence": "copy_sentence", "copy_paragraph": "copy_paragraph"}


def register_task(name: str):
    def deco(fn: TaskFn) -> TaskFn:
        if name in TASKS:
            raise ValueError(f"task {name!r} registered twice")
        TASKS[name] = fn
        return fn

    return deco


def resolve_tasks(names: list[str]) -> list[str]:
    out = []
    for n in names:
        n = n.strip()
        if not n:
            continue
        if n not in TASKS:
            raise VocadaptError(f"unknown task {n!r}{did_you_mean(n, TASKS)}; tasks: {', '.join(TASKS)}")
        out.append(n)
    if not out:
        raise VocadaptError("no task given")
    return out


def _need_texts(inp: TaskInput, task: str) -> list[str]:
    if not inp.texts:
        raise VocadaptError(f"task {task!r} needs held-out text (--text)")
    return inp.texts


@register_task("bpb")
def _bpb(lm, inp: TaskInput) -> dict:
    from vocadapt.evaluate.bpb import bits_per_byte

    r = bits_per_byte(lm.model, lm.tokenizer, _need_texts(inp, "bpb"), max_length=inp.config.max_length,
                      batch_size=inp.config.batch_size, progress=inp.config.progress, desc=f"{lm.name}: bits per byte")
    return {"bpb": {"metrics": r.as_dict(), "samples": []}}


@register_task("copy")
def _copy(lm, inp: TaskInput) -> dict:
    from vocadapt.evaluate.copy_task import DEFAULT_PROMPT, run_copy
    from vocadapt.evaluate.tasks import find_datasets

    out = {}
    c = inp.config
    datasets = find_datasets(inp.data_dir, "copy")
    sources = [(d.name, [it["text"] for it in d.items], d.prompt) for d in datasets] or [
        ("copy", _need_texts(inp, "copy"), None)]
    for name, texts, prompt in sources:
        out[name] = run_copy(lm, texts, n_sentences=c.n_copy_sentences, n_paragraphs=c.n_copy_paragraphs,
                             seed=c.seed, prompt=prompt or DEFAULT_PROMPT, max_new_tokens=c.copy_max_new_tokens)
    return out


@register_task("choice")
def _choice(lm, inp: TaskInput) -> dict:
    from vocadapt.evaluate.choice import LABEL_PROMPT, run_choice
    from vocadapt.evaluate.tasks import build_completion_choice, find_datasets

    c = inp.config
    datasets = [(d.name, d.items, d.prompt) for d in find_datasets(inp.data_dir, "choice")]
    if not datasets:
        # No data given: the built-in completion set, built from the held-out text itself.
        items = build_completion_choice(_need_texts(inp, "choice"), n=c.n_choice, seed=c.seed)
        datasets = [("choice-completion", items, None)]
    return {name: run_choice(lm, items, modes=c.choice_modes, label_template=prompt or LABEL_PROMPT)
            for name, items, prompt in datasets}


@register_task("summary")
def _summary(lm, inp: TaskInput) -> dict:
    from vocadapt.evaluate.summary import DEFAULT_PROMPT, run_summary
    from vocadapt.evaluate.tasks import find_datasets

    datasets = find_datasets(inp.data_dir, "summary")
    if not datasets:
        raise VocadaptError("task 'summary' needs --data DIR with summary*.jsonl (fields: text, summary)")
    return {d.name: run_summary(lm, d.items, lemmatize=inp.config.lemmatize, prompt=d.prompt or DEFAULT_PROMPT,
                               max_new_tokens=inp.config.summary_new_tokens)
            for d in datasets}


@register_task("speed")
def _speed(lm, inp: TaskInput) -> dict:
    from vocadapt.evaluate.speed import run_speed

    c = inp.config
    return {"speed": run_speed(lm, _need_texts(inp, "speed"), n_prompts=c.n_speed_prompts,
                               max_new_tokens=c.speed_new_tokens)}


def headline(results: dict[str, dict]) -> dict:
    """Flatten per-dataset metrics into one summary row: {column: value} plus ``score``."""
    row: dict[str, float] = {}
    mains = []
    for name, res in results.items():
        m = res["metrics"]
        if name == "bpb":
            row["bits_per_byte"], row["chars_per_token"] = m["bits_per_byte"], m["chars_per_token"]
        elif name == "speed":
            for key in ("tokens_per_s", "chars_per_s", "read_tokens_per_s", "read_chars_per_s"):
                if key in m:
                    row[key] = m[key]
        elif "copy_sentence" in m or "copy_paragraph" in m:
            for k in ("copy_sentence", "copy_paragraph"):
                if k in m:
                    row[k if name == "copy" else f"{name}.{k}"] = m[k]
                    mains.append(m[k])
            for k in ("copy_sentence_match", "copy_paragraph_match"):  # shown, not averaged into score
                if k in m:
                    row[k if name == "copy" else f"{name}.{k}"] = m[k]
        elif "acc_label" in m or "acc_option" in m:
            for k in ("acc_label", "f1_label", "acc_option", "f1_option"):
                if k in m:
                    row[f"{name}.{k}"] = m[k]
            mains.append(m.get("acc_label", m.get("acc_option")))
        elif "rougeL" in m:
            for k in ("rouge1", "rouge2", "rougeL"):
                row[f"{name}.{k}"] = m[k]
            mains.append(m["rougeL"])
    if mains:
        row["score"] = sum(mains) / len(mains)
    return row


def _unique_names(model_dirs: list[Path]) -> list[str]:
    names = [p.name or "model" for p in model_dirs]
    out = []
    for i, n in enumerate(names):
        out.append(n if names.count(n) == 1 else f"{n}-{i + 1}")
    return out


def evaluate(model_dirs: list[str | Path], texts: list[str], tasks: list[str], data_dir: str | Path | None,
             out: str | Path, config: EvalConfig | None = None, *, text_paths: list[str | Path] | None = None,
             on_model_done: Callable[[str, dict], None] | None = None, names: list[str] | None = None) -> dict:
    """Run ``tasks`` on every model, write ``out`` (see module docstring) and return the summary
    ``{"models": [{"model", "path", "metrics": row, "seconds"}], "tasks": [...]}``.

    ``names`` labels the models (default: their folder names, made unique). A Ctrl-C keeps the
    finished per-task files and says how many (``KeyboardInterrupt``'s message), or, with none
    finished, removes the folders this call made."""
    from vocadapt.provenance import write_provenance

    config = config or EvalConfig()
    tasks = resolve_tasks(tasks)
    dirs = [Path(p) for p in model_dirs]
    if not dirs:
        raise VocadaptError("no model directory given")
    from vocadapt.model import check_model_dir

    for d in dirs:
        check_model_dir(d)
    texts = [t for t in texts if t.strip()]
    if config.max_docs is not None:
        texts = texts[: config.max_docs]
    texts = take_chars(texts, config.max_chars)
    inp = TaskInput(texts=texts, data_dir=Path(data_dir) if data_dir else None, config=config)
    # Validate task data before loading any model: a bad file should fail in a second, not after
    # an hour of scoring.
    from vocadapt.evaluate.tasks import find_datasets

    for kind in ("choice", "summary", "copy"):
        if kind in tasks:
            find_datasets(inp.data_dir, kind)
    if names is not None and len(names) != len(dirs):
        raise VocadaptError(f"{len(names)} names for {len(dirs)} models")
    out = Path(out)
    names = names or _unique_names(dirs)
    made = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    out.mkdir(parents=True, exist_ok=True)  # only now: every input has been checked
    written: list[Path] = []
    try:
        rows = _evaluate_models(dirs, names, tasks, inp, out, config, on_model_done, written)
    except KeyboardInterrupt:
        # Finished per-task files are kept and counted; with none, the folders this call made go,
        # so that the contract's "nothing written" is true.
        if written:
            raise KeyboardInterrupt(
                f"interrupted; {len(written)} finished task result file(s) kept in {out} (no summary: rerun to finish)"
            ) from None
        import shutil

        if made:
            shutil.rmtree(out, ignore_errors=True)
        for p in [out / n for n in names] + made:
            try:
                p.rmdir()
            except OSError:  # not empty (it was there before) or already gone
                pass
        raise KeyboardInterrupt from None
    summary = {"models": rows, "tasks": tasks, "n_docs": len(texts)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "summary.md").write_text(summary_markdown(rows), encoding="utf-8")
    inputs = {f"model:{r['model']}": r["path"] for r in rows}
    inputs.update({f"text:{i}": p for i, p in enumerate(text_paths or [])})
    write_provenance(out, "eval", config, inputs=inputs, results=summary)
    return summary


def _evaluate_models(dirs, names, tasks, inp, out, config, on_model_done, written: list[Path]) -> list[dict]:
    """Run ``tasks`` on each model; one file per task dataset, appended to ``written`` once whole."""
    from vocadapt.evaluate.lm import HFLM
    from vocadapt.io.atomic import write_text_atomic
    from vocadapt.progress import step

    rows = []
    for d, name in zip(dirs, names):
        t0 = time.perf_counter()
        step(f"eval: loading {name} ({d})")
        lm = HFLM.from_dir(d, dtype=config.dtype, name=name, max_length=config.max_length,
                           batch_size=config.batch_size, seed=config.seed, progress=config.progress)
        results: dict[str, dict] = {}
        for task in tasks:
            for ds_name, res in TASKS[task](lm, inp).items():
                res = {"task": task, "dataset": ds_name, "model": str(d), **res}
                # whole or absent, even on Ctrl-C
                dest = write_text_atomic(out / name / f"{ds_name}.json", json.dumps(res, indent=2, ensure_ascii=False) + "\n")
                written.append(dest)
                results[ds_name] = res
        row = {"model": name, "path": str(d), "metrics": headline(results),
               "seconds": round(time.perf_counter() - t0, 1), "chat_template": lm.has_chat_template}
        rows.append(row)
        if on_model_done:
            on_model_done(name, row)
        del lm
    return rows


def columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for k in r["metrics"]:
            if k not in cols:
                cols.append(k)
    return cols


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"
    return str(v)


def summary_markdown(rows: list[dict]) -> str:
    cols = columns(rows)
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(fmt(r["metrics"].get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"
