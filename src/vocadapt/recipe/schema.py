"""A recipe file, read and checked whole before any work starts.

A recipe names the models, the text and one section per pipeline stage::

    name: smollm2-ru
    out: out/demo
    seed: 0
    source_model: "${assets.smollm2}"          # the base model whose vocabulary is adapted
    instruct_model: "${assets.smollm2_twin}"   # optional: its instruct twin, for propagate
    corpus: ["${assets.russian_text}/train.txt"]
    heldout:                                    # one list of files, or named texts
      fortunes: ["${assets.russian_text}/heldout.txt"]
      manpages: ["${assets.russian_manpages}/heldout.txt"]
    tokenizer: {mode: train, kind: bpe, vocab_size: 16000}   # or extend / optimize / path
    init:                                       # one model per entry
      - method: mean
      - {method: focus, name: focus-meanfb, fallback: mean, aux_corpus: [...]}
      - {method: regression, helper: HELPER_DIR}           # from `vocadapt helper train` on this tokenizer
      - {method: hyperofa, hypernet: [HYPERNET_DIR]}       # from `vocadapt hypernet train` (or `tune`)
    train: {steps: 50, seq_len: 128, batch_size: 8}          # every init model, body frozen
    propagate: {from: [mean], methods: [swap, overlap, conversion]}
    calibrate: {from: [mean/conversion], steps: 20}
    eval: {tasks: [bpb], max_docs: 300}
    report: true

Several tokenizers are a list of named entries; each init entry then runs on every tokenizer
(or those its ``tokenizer:`` names) and its models are labelled ``NAME@TOKENIZER``. Training
takes ``from:`` (the init models to train; default all) and one objective or a list of them
(one run each, labelled ``+lm``, ``+distill``, ...). ``propagate: {from: best}`` propagates the
base-side model with the lowest bits per byte relative to the original, averaged over the held-out
texts, which the recipe decides when it gets there::

    tokenizer:
      - {name: replace, mode: train, kind: bpe, vocab_size: 16000}
      - {name: extend, mode: extend, add: 16000}
    init: [{method: mean}, {method: focus, tokenizer: replace}]
    train: {from: [mean], objective: [lm, distill], steps: 30}
    propagate: {from: best, methods: [conversion]}

Every section's keys are the fields of the config class its CLI command uses (so the
defaults live in one place), plus a few recipe-only keys (``from``, ``methods``, ``name``,
``fallback``, ``helper``, ``instructions``). ``helper`` (regression only) names a helper
model whose tokenizer must be the recipe's: it is the init's target in place of the tokenizer. ``${assets.NAME}`` expands to a cached offline asset (fetched
on first use) and ``${out}`` to the run folder. :func:`validate_recipe` checks keys (with "did
you mean"), option values, method names and paths without running or fetching anything.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vocadapt.errors import VocadaptError, did_you_mean

_VAR = re.compile(r"\$\{([a-z_]+)(?:\.([a-z_0-9]+))?\}")
ASSETS = (
    "smollm2", "smollm2_twin", "russian_text", "russian_docs", "russian_manpages", "english_text", "russian_vectors",
    "english_vectors", "en_ru_dictionary", "multilingual_vectors",
)
TOP_KEYS = (
    "name", "out", "seed", "source_model", "instruct_model", "corpus", "heldout", "tokenizer", "init", "train",
    "propagate", "calibrate", "eval", "report",
)
REQUIRED = ("source_model", "corpus", "heldout", "tokenizer", "init")
TOKENIZER_MODES = ("train", "extend", "optimize", "path")
# Keys a section takes besides its config class's fields.
INIT_KEYS = ("method", "name", "fallback", "pad_to", "helper", "tokenizer")
TRAIN_KEYS = ("from",)
BEST = "best"  # propagate.from: the base-side model with the lowest relative bits per byte
HELPER_METHODS = ("regression",)  # the init methods that read a helper model (the init's target)
PROPAGATE_KEYS = ("from", "methods")
CALIBRATE_KEYS = ("from", "instructions", "copy_text")
EVAL_KEYS = ("tasks", "instruct_tasks", "data")
# Init options that name input files: validate checks they exist.
INPUT_PATH_OPTIONS = {
    "aux_corpus", "aux_vectors", "vectors", "source_vectors", "target_vectors", "dictionary", "features", "features_corpus",
    "hypernet", "helper", "tune_corpus",
}


@dataclass
class Recipe:
    """A resolved recipe: variables expanded, sections as plain dicts (checked by validate)."""

    name: str
    out: Path
    source_model: str
    corpus: list[str]
    heldout: dict[str, list[str]]
    tokenizer: dict[str, Any] | list[dict[str, Any]]  # one mapping, or named entries
    init: list[dict[str, Any]]
    instruct_model: str | None = None
    train: dict[str, Any] | None = None
    propagate: dict[str, Any] | None = None
    calibrate: dict[str, Any] | None = None
    eval: dict[str, Any] = field(default_factory=lambda: {"tasks": ["bpb"]})
    report: bool = True
    seed: int = 0
    where: str = "recipe"
    unresolved_assets: set[str] = field(default_factory=set)  # asset variables left unexpanded (validate)

    def init_names(self) -> list[str]:
        return [str(s.get("name", s["method"])) for s in self.init]

    def tokenizers(self) -> list[tuple[str | None, dict[str, Any]]]:
        """(name, spec without the name) per tokenizer; a single mapping has no name."""
        if isinstance(self.tokenizer, dict):
            return [(None, dict(self.tokenizer))]
        return [(str(t["name"]), {k: v for k, v in t.items() if k != "name"}) for t in self.tokenizer]

    def init_models(self) -> list[tuple[str, dict[str, Any], str | None]]:
        """(label, init entry, tokenizer name) of every init model: one per entry and tokenizer
        it runs on, labelled NAME, or NAME@TOKENIZER when the recipe has several tokenizers."""
        toks = [n for n, _ in self.tokenizers()]
        out = []
        for step in self.init:
            wanted = step.get("tokenizer")
            wanted = toks if wanted is None else ([wanted] if isinstance(wanted, str) else list(wanted))
            for t in toks:
                if t in wanted:
                    name = str(step.get("name", step["method"]))
                    out.append((name if t is None else f"{name}@{t}", step, t))
        return out


def _expand(value: Any, out: Path, fetch: bool, missing: set[str]) -> Any:
    """Expand ``${assets.X}`` and ``${out}``; with ``fetch=False`` assets stay as placeholders."""
    if isinstance(value, list):
        return [_expand(v, out, fetch, missing) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, out, fetch, missing) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        scope, name = m.group(1), m.group(2)
        if scope == "out" and name is None:
            return str(out)
        if scope == "assets" and name in ASSETS:
            if not fetch:
                missing.add(name)
                return f"<asset {name}>"
            from vocadapt import assets

            return str(getattr(assets, name)())
        known = [f"assets.{a}" for a in ASSETS] + ["out"]
        wrong = f"{scope}.{name}" if name else scope
        raise VocadaptError(f"unknown recipe variable ${{{wrong}}}{did_you_mean(wrong, known)}")

    return _VAR.sub(sub, value)


def read_yaml(path: str | Path) -> dict[str, Any]:
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
    except UnicodeDecodeError:
        raise VocadaptError(f"{p}: not UTF-8 text") from None
    if not isinstance(raw, dict):
        raise VocadaptError(f"{p}: a recipe is a mapping of sections (name:, source_model:, ...), not {type(raw).__name__}")
    return raw


def load_recipe(path: str | Path, out: str | Path | None = None, *, fetch: bool = True) -> Recipe:
    """Read a recipe file; ``out`` overrides its output folder; ``fetch=False`` leaves assets unexpanded."""
    return recipe_from_dict(read_yaml(path), out, where=str(path), fetch=fetch)


def recipe_from_dict(raw: dict[str, Any], out: str | Path | None = None, where: str = "recipe", *, fetch: bool = True) -> Recipe:
    for key in raw:
        if key not in TOP_KEYS:
            raise VocadaptError(f"{where}: unknown key {key!r}{did_you_mean(key, TOP_KEYS)}")
    for key in REQUIRED:
        if key not in raw:
            raise VocadaptError(f"{where}: missing key {key!r}")
    out_dir = Path(out or raw.get("out") or f"out/{raw.get('name', 'run')}")
    missing: set[str] = set()
    data = _expand(raw, out_dir, fetch, missing)
    init = data["init"]
    if not isinstance(init, list) or not init or not all(isinstance(i, dict) and "method" in i for i in init):
        raise VocadaptError(f"{where}: 'init' must be a non-empty list of {{method: NAME, option: value, ...}}")
    tokenizer = data["tokenizer"]
    if isinstance(tokenizer, list):
        if not tokenizer or not all(isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"] for t in tokenizer):
            raise VocadaptError(f"{where}: a list of tokenizers needs a name: on each entry ({{name: NAME, mode: ...}})")
        names = [t["name"] for t in tokenizer]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            raise VocadaptError(f"{where}: two tokenizers are named {dup!r}")
        for n in names:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", n):
                raise VocadaptError(f"{where}: tokenizer name {n!r} may use letters, digits, '_', '.' and '-' only")
        tokenizer = [dict(t) for t in tokenizer]
    elif isinstance(tokenizer, dict):
        tokenizer = dict(tokenizer)
    else:
        raise VocadaptError(f"{where}: 'tokenizer' must be a mapping of options or a list of named ones, not {type(tokenizer).__name__}")
    for key in ("train", "propagate", "calibrate", "eval"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise VocadaptError(f"{where}: '{key}' must be a mapping of options, not {type(data[key]).__name__}")
    heldout = data["heldout"]
    if isinstance(heldout, (str, list)):
        heldout = {"heldout": heldout}
    if not isinstance(heldout, dict) or not heldout:
        raise VocadaptError(f"{where}: 'heldout' must be a list of files or a mapping name -> files")
    as_list = lambda v: [v] if isinstance(v, str) else [str(x) for x in v]  # noqa: E731
    return Recipe(
        name=str(data.get("name", out_dir.name)), out=out_dir, source_model=str(data["source_model"]),
        corpus=as_list(data["corpus"]), heldout={str(k): as_list(v) for k, v in heldout.items()},
        tokenizer=tokenizer, init=[dict(i) for i in init],
        instruct_model=str(data["instruct_model"]) if data.get("instruct_model") else None,
        train=dict(data["train"]) if data.get("train") is not None else None,
        propagate=dict(data["propagate"]) if data.get("propagate") is not None else None,
        calibrate=dict(data["calibrate"]) if data.get("calibrate") is not None else None,
        eval=dict(data.get("eval") or {"tasks": ["bpb"]}), report=bool(data.get("report", True)),
        seed=int(data.get("seed", 0)), where=where, unresolved_assets=missing,
    )


def demo_recipe_path(quick: bool = False) -> Path:
    name = "demo-quick.yaml" if quick else "demo.yaml"
    return Path(str(resources.files("vocadapt").joinpath(f"_data/{name}")))


# ------------------------------------------------------------------------------------------------
# Sections -> config objects (the same classes the CLI commands are generated from)
# ------------------------------------------------------------------------------------------------


def build_config(cls: type, raw: dict[str, Any], where: str, extra: tuple[str, ...] = ()) -> Any:
    """``cls(**raw)`` minus the recipe-only ``extra`` keys; unknown keys and bad values get one line."""
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in raw:
        if key not in fields and key not in extra:
            raise VocadaptError(f"{where}: unknown key {key!r}{did_you_mean(key, sorted(fields | set(extra)))}")
    try:
        return cls(**{k: v for k, v in raw.items() if k in fields})
    except (TypeError, ValueError) as e:
        raise VocadaptError(f"{where}: {e}") from None


def tokenizer_config(r: Recipe, spec: dict[str, Any] | None = None, name: str | None = None) -> tuple[str, Any]:
    """(mode, config) of a tokenizer entry (default: the only one); ``mode: path`` gives (path, None)."""
    from vocadapt import tokenizer as T

    spec = dict(r.tokenizers()[0][1] if spec is None else spec)
    what = "tokenizer" if name is None else f"tokenizer {name!r}"
    mode = spec.pop("mode", "train")
    if mode not in TOKENIZER_MODES:
        raise VocadaptError(f"{r.where}: {what} mode must be one of {', '.join(TOKENIZER_MODES)}, not {mode!r}{did_you_mean(str(mode), TOKENIZER_MODES)}")
    if mode == "path":
        if set(spec) - {"path"} or "path" not in spec:
            raise VocadaptError(f"{r.where}: {what} mode 'path' takes exactly one key, path")
        return "path", None
    cls = {"train": T.TrainConfig, "extend": T.ExtendConfig, "optimize": T.OptimizeConfig}[mode]
    if mode == "train":
        spec.setdefault("like", r.source_model)
    return mode, build_config(cls, spec, f"{r.where}: {what} ({mode})")


def init_config(r: Recipe, step: dict[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    """(name, method config, framework options) of one init entry."""
    from vocadapt.init import get_method
    from vocadapt.init.core import FALLBACKS

    name = str(step.get("name", step["method"]))
    where = f"{r.where}: init {name!r}"
    try:
        spec = get_method(str(step["method"]))
    except VocadaptError as e:
        raise VocadaptError(f"{where}: {e}") from None
    options = {k: v for k, v in step.items() if k not in INIT_KEYS}
    try:
        config = spec.make_config(options)
    except VocadaptError as e:
        raise VocadaptError(f"{where}: {e}") from None
    toks = [n for n, _ in r.tokenizers()]
    wanted = step.get("tokenizer")
    if wanted is not None:
        wanted_list = [wanted] if isinstance(wanted, str) else list(wanted) if isinstance(wanted, list) else [wanted]
        if toks == [None]:
            raise VocadaptError(f"{where}: tokenizer: picks among named tokenizers, and the recipe has one (drop it)")
        for t in wanted_list:
            if t not in toks:
                raise VocadaptError(f"{where}: tokenizer {t!r} is not one of the recipe's{did_you_mean(str(t), toks)}; known: {', '.join(toks)}")
    fallback = step.get("fallback", "random")
    if fallback not in FALLBACKS:
        raise VocadaptError(f"{where}: fallback must be one of {', '.join(FALLBACKS)}, not {fallback!r}")
    helper = step.get("helper")
    if helper is not None and not isinstance(helper, str):
        raise VocadaptError(f"{where}: helper takes one helper model directory, not {helper!r}")
    if helper is not None and step["method"] not in HELPER_METHODS:
        raise VocadaptError(f"{where}: only {' and '.join(HELPER_METHODS)} reads a helper model; drop helper: from this entry")
    return name, config, {"fallback": fallback, "pad_to_multiple_of": step.get("pad_to")}


def train_configs(r: Recipe) -> tuple[list[str], dict[str, Any]] | None:
    """(init model labels to train, {suffix: TrainConfig}) or None without the section.

    One objective trains each model once (labelled ``+train``); a list of objectives trains it
    once per objective (``+lm``, ``+distill``, ``+lm+distill``), same data and steps."""
    if r.train is None:
        return None
    import dataclasses

    from vocadapt.train import TrainConfig

    spec = dict(r.train)
    labels = [label for label, _, _ in r.init_models()]
    froms = spec.pop("from", None)
    if froms is not None:
        froms = [froms] if isinstance(froms, str) else list(froms)
        by_name = {}
        for label, step, _ in r.init_models():
            by_name.setdefault(str(step.get("name", step["method"])), []).append(label)
        picked = []
        for f in froms:
            if f not in labels and f not in by_name:
                known = list(dict.fromkeys([*by_name, *labels]))
                raise VocadaptError(f"{r.where}: train.from names {f!r}, which is not an init model of this recipe{did_you_mean(str(f), known)}; known: {', '.join(known)}")
            picked += by_name.get(f, [f])
        labels = [x for x in labels if x in picked]
    objectives = spec.pop("objective", None)
    many = isinstance(objectives, list)
    objectives = (objectives or ["lm"]) if many else ([objectives] if objectives is not None else [None])
    where = f"{r.where}: train"
    base = build_config(TrainConfig, {"seed": r.seed, **spec}, where, extra=TRAIN_KEYS)
    configs = {}
    for o in objectives:
        try:
            cfg = base if o is None else dataclasses.replace(base, objective=o)
        except (TypeError, ValueError) as e:
            raise VocadaptError(f"{where}: {e}") from None
        configs["+" + o if many else "+train"] = cfg
    if len(configs) != len(objectives):
        raise VocadaptError(f"{where}: objective lists {objectives} with a repeat")
    return labels, configs


def eval_config(r: Recipe) -> tuple[list[str], list[str], str | None, Any]:
    """(tasks, tasks for instruct-side models, task data folder, EvalConfig)."""
    from vocadapt.evaluate.runner import EvalConfig, resolve_tasks

    ev = dict(r.eval)
    where = f"{r.where}: eval"
    tasks = ev.get("tasks", ["bpb"])
    instruct_tasks = ev.get("instruct_tasks", tasks)
    try:
        tasks, instruct_tasks = resolve_tasks(list(tasks)), resolve_tasks(list(instruct_tasks))
    except VocadaptError as e:
        raise VocadaptError(f"{where}: {e}") from None
    config = build_config(EvalConfig, {"seed": r.seed, **ev}, where, extra=EVAL_KEYS)
    return tasks, instruct_tasks, ev.get("data"), config


def _names_from(r: Recipe, section: str, value: Any, known: list[str], default: list[str]) -> list[str]:
    names = default if value is None else ([value] if isinstance(value, str) else list(value))
    for n in names:
        if n not in known:
            raise VocadaptError(f"{r.where}: {section}.from names {n!r}, which is not a model of this recipe{did_you_mean(str(n), known)}; known: {', '.join(known)}")
    return [str(n) for n in names]


def propagate_config(r: Recipe) -> tuple[list[str], list[str], Any] | None:
    """(init names to propagate, LEP methods, PropagateConfig) or None without the section."""
    if r.propagate is None:
        return None
    where = f"{r.where}: propagate"
    if not r.instruct_model:
        raise VocadaptError(f"{where}: needs 'instruct_model' (the instruct twin of source_model) at the top of the recipe")
    from vocadapt.propagate import PropagateConfig

    spec = dict(r.propagate)
    methods = spec.pop("methods", None)
    froms = spec.pop("from", None)
    froms = [froms] if isinstance(froms, str) else froms
    base_models = base_model_labels(r)
    if froms is not None and BEST in froms:
        if len(froms) != 1:
            raise VocadaptError(f"{where}: from: best stands alone (it picks one model)")
        tasks, _, _, _ = eval_config(r)
        if "bpb" not in tasks:
            raise VocadaptError(f"{where}: from: best picks by bits per byte; add bpb to eval.tasks")
    else:
        froms = _names_from(r, "propagate", froms, list(base_models), list(base_models)[:1])
        for f in froms:
            if base_models[f] is None:
                raise VocadaptError(f"{where}: from: {f!r} was trained more than once; name one of "
                                    + ", ".join(x for x in base_models if x.startswith(f + "+")))
    if methods is None:
        methods = [spec.get("method", "conversion")]
    methods = [methods] if isinstance(methods, str) else list(methods)
    configs = [build_config(PropagateConfig, {**spec, "method": m}, where) for m in methods]
    return froms, methods, configs[0]


def base_model_labels(r: Recipe) -> dict[str, str | None]:
    """Every base-side model a propagate.from can name -> the model it means: an init label means
    its trained model when it was trained once (None: trained several times, ambiguous)."""
    got = train_configs(r)
    trained, suffixes = (got[0], list(got[1])) if got else ([], [])
    out: dict[str, str | None] = {}
    for label, _, _ in r.init_models():
        if label in trained:
            out[label] = f"{label}{suffixes[0]}" if len(suffixes) == 1 else None
            for sfx in suffixes:
                out[f"{label}{sfx}"] = f"{label}{sfx}"
        else:
            out[label] = label
    return out


def propagated_labels(r: Recipe) -> list[str]:
    prop = propagate_config(r)
    if prop is None:
        return []
    froms, methods, _ = prop
    return [f"{f}/{m}" for f in froms for m in methods]


def calibrate_config(r: Recipe, propagated: list[str]) -> tuple[list[str], Any, str | None, list[str]] | None:
    """(propagated model names to calibrate, CalibrateConfig, instructions file, copy-text files)."""
    if r.calibrate is None:
        return None
    from vocadapt.propagate import CalibrateConfig

    where = f"{r.where}: calibrate"
    if r.propagate is None:
        raise VocadaptError(f"{where}: needs a propagate section (calibration tunes the propagated instruct model)")
    spec = dict(r.calibrate)
    froms = _names_from(r, "calibrate", spec.pop("from", None), propagated, propagated[-1:])
    instructions = spec.pop("instructions", None)
    copy_text = spec.pop("copy_text", None)
    copy_text = [copy_text] if isinstance(copy_text, str) else list(copy_text or [])
    config = build_config(CalibrateConfig, {"seed": r.seed, **spec}, where)
    return froms, config, instructions, copy_text


def validate_recipe(r: Recipe, *, for_run: bool = False) -> list[str]:
    """Check every section, option, method name and path; return notes (e.g. assets to fetch).

    Raises :class:`VocadaptError` at the first problem. Runs nothing and fetches nothing. An
    input inside the run folder (``${out}/...``: a helper or hypernetwork made before the run,
    as recipes/learned-inits.yaml does) may be missing when only checking, and gets a note;
    ``for_run`` (what ``vocadapt run`` checks before its first stage) refuses it like any other.
    """
    notes: list[str] = []
    out = r.out.resolve()

    def check(path: str, what: str) -> None:
        if "<asset " in path:
            return
        if not Path(path).exists():
            if not for_run and Path(path).resolve().is_relative_to(out):
                notes.append(f"{what} {path} is inside the run folder and not made yet: make it before `vocadapt run`")
                return
            raise VocadaptError(f"{r.where}: {what} not found: {path}")

    for tname, spec in r.tokenizers():
        tokenizer_config(r, spec, tname)
    names = r.init_names()
    for dup in sorted({n for n in names if names.count(n) > 1}):
        raise VocadaptError(f"{r.where}: two init entries are named {dup!r}; give one another name with name:")
    for step in r.init:
        init_config(r, step)
        for key in INPUT_PATH_OPTIONS.intersection(step):
            for p in [step[key]] if isinstance(step[key], str) else list(step[key] or []):
                check(str(p), f"init {step.get('name', step['method'])!r} {key}")
    if not r.init_models():
        raise VocadaptError(f"{r.where}: no init entry runs on any tokenizer")
    train_configs(r)
    eval_config(r)
    if r.propagate is not None:
        calibrate_config(r, propagated_labels(r))

    check(r.source_model, "source_model")
    if r.instruct_model:
        check(r.instruct_model, "instruct_model")
    for p in r.corpus:
        check(p, "corpus file")
    for name, paths in r.heldout.items():
        for p in paths:
            check(p, f"held-out text {name!r}")
    for tname, spec in r.tokenizers():
        if spec.get("mode") == "path":
            check(str(spec["path"]), "tokenizer" if tname is None else f"tokenizer {tname!r}")
    if r.calibrate and r.calibrate.get("instructions"):
        check(str(r.calibrate["instructions"]), "calibrate.instructions")
    if r.unresolved_assets:
        from vocadapt.cache import cache_dir

        notes.append(f"assets {', '.join(sorted(r.unresolved_assets))}: taken from {cache_dir()}, "
                     "fetched there on first use")
    return notes
