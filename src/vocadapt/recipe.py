"""YAML recipes: one file describes a whole run, tokenizer to report.

A recipe names the source model, the target corpus and held-out text, how to build the target
tokenizer, which init methods to run (each with its options), and what to evaluate::

    name: smollm2-ru
    out: out/demo
    seed: 0
    source_model: "${assets.smollm2}"
    corpus: ["${assets.russian_text}/train.txt"]
    heldout: ["${assets.russian_text}/heldout.txt"]
    tokenizer: {mode: train, kind: bpe, vocab_size: 16000}   # or mode: extend / optimize / path
    init:
      - method: mean
      - method: focus
        aux_corpus: ["${assets.russian_text}/train.txt"]
        fallback: mean            # rows FOCUS cannot place get the FVT mean, not noise
        name: focus-meanfb        # output folder name when a method is used twice
    eval: {tasks: [bpb], max_docs: 300}
    report: true

``${assets.NAME}`` expands to a path from :mod:`vocadapt.assets` (fetched on first use),
``${out}`` to the run folder. Every step writes into ``out`` with its own provenance, and a
step whose output already exists is reused, so an interrupted run resumes where it stopped.
``vocadapt run RECIPE`` executes one; ``vocadapt demo`` runs the packaged
``_data/demo.yaml`` (SmolLM2-135M-Instruct adapted to Russian).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vocadapt.errors import VocadaptError, did_you_mean

_VAR = re.compile(r"\$\{([a-z_]+)(?:\.([a-z_0-9]+))?\}")
_KEYS = {"name", "out", "seed", "source_model", "corpus", "heldout", "tokenizer", "init", "eval", "report"}
_ASSETS = (
    "smollm2", "russian_text", "english_text", "russian_vectors", "english_vectors", "en_ru_dictionary",
    "multilingual_vectors",
)


@dataclass
class Recipe:
    name: str
    out: Path
    source_model: str
    corpus: list[str]
    heldout: list[str]
    tokenizer: dict[str, Any]
    init: list[dict[str, Any]]
    eval: dict[str, Any] = field(default_factory=lambda: {"tasks": ["bpb"]})
    report: bool = True
    seed: int = 0


def _expand(value: Any, out: Path) -> Any:
    if isinstance(value, list):
        return [_expand(v, out) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, out) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        scope, name = m.group(1), m.group(2)
        if scope == "out" and name is None:
            return str(out)
        if scope == "assets" and name in _ASSETS:
            from vocadapt import assets

            return str(getattr(assets, name)())
        known = [f"assets.{a}" for a in _ASSETS] + ["out"]
        wrong = f"{scope}.{name}" if name else scope
        raise VocadaptError(f"unknown recipe variable ${{{wrong}}}{did_you_mean(wrong, known)}")

    return _VAR.sub(sub, value)


def load_recipe(path: str | Path, out: str | Path | None = None) -> Recipe:
    """Read and validate a recipe; ``out`` overrides the recipe's output folder."""
    p = Path(path)
    if not p.is_file():
        raise VocadaptError(f"recipe not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise VocadaptError(f"{where}: not valid YAML ({problem}; quote values that contain ${{...}})") from None
    return recipe_from_dict(raw, out, where=str(p))


def recipe_from_dict(raw: dict[str, Any], out: str | Path | None = None, where: str = "recipe") -> Recipe:
    for key in raw:
        if key not in _KEYS:
            raise VocadaptError(f"{where}: unknown key {key!r}{did_you_mean(key, _KEYS)}")
    for key in ("source_model", "corpus", "heldout", "tokenizer", "init"):
        if key not in raw:
            raise VocadaptError(f"{where}: missing key {key!r}")
    out_dir = Path(out or raw.get("out") or f"out/{raw.get('name', 'run')}")
    data = _expand(raw, out_dir)
    init = data["init"]
    if not isinstance(init, list) or not all(isinstance(i, dict) and "method" in i for i in init):
        raise VocadaptError(f"{where}: 'init' must be a list of {{method: NAME, option: value, ...}}")
    as_list = lambda v: [v] if isinstance(v, str) else list(v)  # noqa: E731
    return Recipe(
        name=str(data.get("name", out_dir.name)), out=out_dir, source_model=data["source_model"],
        corpus=as_list(data["corpus"]), heldout=as_list(data["heldout"]), tokenizer=dict(data["tokenizer"]),
        init=init, eval=dict(data.get("eval") or {"tasks": ["bpb"]}), report=bool(data.get("report", True)),
        seed=int(data.get("seed", 0)),
    )


def demo_recipe_path() -> Path:
    return Path(str(resources.files("vocadapt").joinpath("_data/demo.yaml")))


def _build_tokenizer(r: Recipe, dest: Path) -> Path:
    """Build the target tokenizer from ``r.tokenizer``: its keys are the mode's config fields."""
    import dataclasses

    from vocadapt import tokenizer as T

    spec = dict(r.tokenizer)
    mode = spec.pop("mode", "train")
    if mode == "path":
        return Path(spec["path"])
    builders = {
        "train": (T.TrainConfig, lambda cfg: T.train_tokenizer(r.corpus, out=dest, config=cfg)),
        "extend": (T.ExtendConfig, lambda cfg: T.extend_tokenizer(r.source_model, r.corpus, out=dest, config=cfg)),
        "optimize": (T.OptimizeConfig, lambda cfg: T.optimize_tokenizer(r.source_model, r.corpus, out=dest, config=cfg)),
    }
    if mode not in builders:
        raise VocadaptError(f"tokenizer mode must be train, extend, optimize or path, not {mode!r}{did_you_mean(mode, builders)}")
    config_cls, build = builders[mode]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for key in spec:
        if key not in fields:
            raise VocadaptError(f"tokenizer ({mode}): unknown option {key!r}{did_you_mean(key, fields)}")
    if mode == "train":
        spec.setdefault("like", r.source_model)
    if dest.exists():
        return dest
    build(config_cls(**spec))
    return dest


def run_recipe(r: Recipe, *, echo=print) -> dict[str, Any]:
    """Execute a recipe; returns the evaluation summary. Steps already done are reused."""
    from vocadapt.corpus import read_texts
    from vocadapt.init import get_method, init_embeddings
    from vocadapt.io.checkpoint import resolve_model_dir

    r.out.mkdir(parents=True, exist_ok=True)
    source = resolve_model_dir(r.source_model)
    (r.out / "recipe.resolved.json").write_text(json.dumps(r.__dict__, default=str, indent=2, ensure_ascii=False), encoding="utf-8")
    for step in r.init:  # validate every method and option before hours of work
        opts = {k: v for k, v in step.items() if k not in ("method", "name", "fallback")}
        get_method(step["method"]).make_config(opts)
        if step.get("fallback", "random") not in ("random", "mean"):
            raise VocadaptError(f"init step {step['method']!r}: fallback must be random or mean, not {step['fallback']!r}")

    echo(f"[1/4] tokenizer ({r.tokenizer.get('mode', 'train')})")
    tok_dir = _build_tokenizer(r, r.out / "tokenizer")

    models: list[tuple[str, Path]] = [("original", source)]
    for k, step in enumerate(r.init, 1):
        name = step.get("name", step["method"])
        dest = r.out / "models" / name
        opts = {key: v for key, v in step.items() if key not in ("method", "name", "fallback")}
        echo(f"[2/4] init {k}/{len(r.init)}: {name}")
        if not dest.exists():
            init_embeddings(
                source, tok_dir, dest, step["method"], seed=r.seed, options=opts, fallback=step.get("fallback", "random"),
            )
        models.append((name, dest))

    echo("[3/4] evaluate")
    from vocadapt.evaluate.runner import EvalConfig, evaluate

    ev = dict(r.eval)
    tasks = ev.pop("tasks", ["bpb"])
    data_dir = ev.pop("data", None)
    config = EvalConfig(**{**ev, "seed": r.seed})
    texts = read_texts(r.heldout)
    summary = evaluate([p for _, p in models], texts, tasks, data_dir, r.out / "eval", config, text_paths=r.heldout)
    if r.report:
        echo("[4/4] report")
        from vocadapt.evaluate.report import build_report

        build_report([r.out / "eval", *[p for _, p in models[1:]]], r.out / "report.html", title=f"vocadapt: {r.name}")
    return summary
