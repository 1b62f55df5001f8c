"""The stage graph of a recipe, keyed by what each stage's output depends on.

A stage's **key** hashes the vocadapt version, its kind, its resolved settings (the config object
its command would get), the keys of the stages it reads, and fingerprints of the whole content of
the user's files it reads (model directories, text files; large files' hashes are cached by path,
size and mtime, :func:`vocadapt.provenance.content_sha256`). A finished stage leaves
``.vocadapt-stage.json`` with that key beside its output, so a rerun

* reuses a stage whose key is unchanged,
* reruns a stage whose settings changed, and with it exactly the stages downstream (their keys
  contain its key), and
* redoes a stage whose output exists without the marker (interrupted; training resumes from its
  last checkpoint, every other output is written atomically and simply replaced).

:func:`build_plan` makes the graph; :func:`explain` says for each stage whether it runs and why,
which is what ``vocadapt run --dry-run`` prints.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vocadapt.errors import VocadaptError
from vocadapt.recipe import schema as S

MARKER = ".vocadapt-stage.json"
KINDS = ("tokenizer", "init", "train", "propagate", "calibrate", "eval", "report")


@dataclass
class Stage:
    id: str                               # "init:mean", "eval:fortunes:mean+train", ...
    kind: str                             # one of KINDS
    dest: Path                            # the stage's output folder
    settings: dict[str, Any]              # resolved settings, JSON-able
    inputs: dict[str, str] = field(default_factory=dict)        # role -> upstream stage id
    files: dict[str, list[str]] = field(default_factory=dict)   # role -> user files read
    payload: dict[str, Any] = field(default_factory=dict)       # what the action needs (objects)
    key: str = ""
    run: bool = True
    why: str = ""

    @property
    def marker(self) -> Path:
        return self.dest / MARKER

    def done(self) -> dict[str, Any] | None:
        """The marker of a finished run of this stage (any key), or None."""
        try:
            return json.loads(self.marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None


@dataclass
class ModelRef:
    """A model the recipe evaluates: a label, where it comes from, and which side it is on."""

    label: str
    stage: str | None      # the stage that makes it (None: a user file)
    path: Path
    side: str              # "base" (source model family) or "instruct"


@dataclass
class Plan:
    recipe: S.Recipe
    stages: list[Stage]
    models: list[ModelRef]

    def by_id(self) -> dict[str, Stage]:
        return {s.id: s for s in self.stages}


# ------------------------------------------------------------------------------------------------
# Keys
# ------------------------------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    from vocadapt.provenance import _jsonable as j

    return j(obj)


def file_fingerprint(path: str) -> str:
    """Content fingerprint of a user input: model/tokenizer dirs by :func:`vocadapt.provenance.fingerprint`,
    text files and folders by the sha256 of every file's whole content (cached for large files)."""
    from vocadapt.provenance import content_sha256, fingerprint

    p = Path(path)
    if not p.exists():
        return "missing"
    if p.is_dir() and ((p / "config.json").exists() or (p / "tokenizer.json").exists()):
        return fingerprint(p)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}:{content_sha256(f)}".encode())
    return h.hexdigest()[:16]


def stage_key(stage: Stage, keys: dict[str, str], fingerprints: dict[str, str]) -> str:
    """Hash of everything the stage's output depends on, the vocadapt version included: a new
    version may compute a stage differently, so an upgrade reruns every stage once."""
    from vocadapt import __version__

    payload = {
        "vocadapt": __version__,
        "kind": stage.kind,
        "settings": stage.settings,
        "inputs": {role: keys[sid] for role, sid in sorted(stage.inputs.items())},
        "files": {role: [fingerprints[p] for p in paths] for role, paths in sorted(stage.files.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# The graph
# ------------------------------------------------------------------------------------------------


def _auto_teacher_dtype() -> str:
    """What ``teacher_dtype: auto`` resolves to for a recipe's training on this machine (the
    engine trains on the GPU when there is one)."""
    import torch

    from vocadapt.train.lm import resolve_teacher_dtype

    return resolve_teacher_dtype("auto", torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def _slug(label: str) -> str:
    return label.replace("/", "_").replace(" ", "_")


def build_plan(r: S.Recipe) -> Plan:
    """Every stage of ``r`` in execution order, with resolved settings (validates as it goes).

    Base-side models are evaluated before anything is propagated, so that ``propagate: {from:
    best}`` can read their bits per byte when it runs."""
    out = r.out
    stages: list[Stage] = []
    models: list[ModelRef] = [ModelRef("original", None, Path(r.source_model), "base")]

    tok_refs: dict[str | None, tuple[str | None, Path]] = {}
    for tname, spec in r.tokenizers():
        mode, tok_cfg = S.tokenizer_config(r, spec, tname)
        if mode == "path":
            tok_refs[tname] = (None, Path(spec["path"]))
            continue
        files = {"corpus": r.corpus}
        if mode in ("extend", "optimize") or (tok_cfg.like == r.source_model):
            files["source_model"] = [r.source_model]
        sid, dest = ("tokenizer", out / "tokenizer") if tname is None else (f"tokenizer:{tname}", out / "tokenizer" / tname)
        stages.append(Stage(sid, "tokenizer", dest, {"mode": mode, "config": _jsonable(tok_cfg)},
                            files=files, payload={"mode": mode, "config": tok_cfg}))
        tok_refs[tname] = (sid, dest)

    got = S.train_configs(r)
    to_train, train_cfgs = got if got else ([], {})
    trained: dict[str, str] = {}   # trained model label -> its train stage id
    for label, step, tname in r.init_models():
        tok_ref = tok_refs[tname]
        name, cfg, fw = S.init_config(r, step)
        options = {k: v for k, v in step.items() if k not in S.INIT_KEYS}
        files = {"source_model": [r.source_model]}
        for key in sorted(S.INPUT_PATH_OPTIONS.intersection(options)):
            v = options[key]
            files[f"option:{key}"] = [str(x) for x in ([v] if isinstance(v, str) else v or [])]
        settings = {"method": step["method"], "options": _jsonable(cfg), "seed": r.seed, **fw}
        helper = step.get("helper")
        if helper is not None:  # the helper model is the init's target; its tokenizer is checked against the recipe's
            files["helper"] = [str(helper)]
            settings["helper"] = str(helper)
        st = Stage(f"init:{label}", "init", out / "models" / label, settings,
                   inputs={"tokenizer": tok_ref[0]} if tok_ref[0] else {},
                   files=files if tok_ref[0] else {**files, "tokenizer": [str(tok_ref[1])]},
                   payload={"method": step["method"], "options": options, "tokenizer": tok_ref[1], "helper": helper, **fw})
        stages.append(st)
        models.append(ModelRef(label, st.id, st.dest, "base"))
        if label not in to_train:
            continue
        for suffix, train_cfg in train_cfgs.items():
            tlabel = f"{label}{suffix}"
            sid, dest = (f"train:{label}", out / "train" / label) if suffix == "+train" else (f"train:{tlabel}", out / "train" / tlabel)
            tsettings = {"config": _jsonable(train_cfg)}
            if train_cfg.distills and train_cfg.teacher_dtype == "auto":
                # what `auto` becomes depends on the machine (bf16 where the GPU or CPU has native bf16):
                # a run made with the other teacher dtype is not this machine's run, so it is not reused
                tsettings["teacher_dtype"] = _auto_teacher_dtype()
            tr = Stage(sid, "train", dest, tsettings,
                       inputs={"model": st.id}, files={"corpus": r.corpus, "eval_text": next(iter(r.heldout.values()))},
                       payload={"config": train_cfg, "model": st.dest, "label": tlabel})
            stages.append(tr)
            trained[tlabel] = tr.id
            models.append(ModelRef(tlabel, tr.id, dest / "model", "base"))

    tasks, instruct_tasks, data, ecfg = S.eval_config(r)
    eval_ids: list[str] = []
    first = next(iter(r.heldout), None)

    def add_evals(side_models: list[ModelRef]) -> None:
        for text, paths in r.heldout.items():
            for m in side_models:
                t = instruct_tasks if m.side == "instruct" else tasks
                if text != first:
                    # Further held-out texts are there for a second bits-per-byte figure (another
                    # domain); the generation tasks run once, on the first text, which is the one the
                    # leaderboard reports them for.
                    t = [x for x in t if x == "bpb"]
                    if not t:
                        continue
                st = Stage(f"eval:{text}:{m.label}", "eval", out / "eval" / text / _slug(m.label),
                           {"tasks": t, "data": data, "config": _jsonable(ecfg)},
                           inputs={"model": m.stage} if m.stage else {},
                           files={"text": paths, **({} if m.stage else {"model": [str(m.path)]}), **({"data": [data]} if data else {})},
                           payload={"model": m.path, "label": m.label, "tasks": t, "config": ecfg, "text": text, "paths": paths,
                                    "data": data})
                stages.append(st)
                eval_ids.append(st.id)

    add_evals(list(models))
    n_base = len(models)

    prop = S.propagate_config(r)
    propagated: list[str] = []
    if prop is not None:
        import dataclasses

        froms, methods, pcfg = prop
        models.append(ModelRef("instruct", None, Path(str(r.instruct_model)), "instruct"))
        by_label = {m.label: m for m in models}
        base_models = S.base_model_labels(r)
        for name in froms:
            if name == S.BEST:
                # Candidates: the trained models (all base-side models without training); the
                # choice reads their evaluations and the original's, so those are its inputs.
                cands = list(trained) or [m.label for m in models[1:n_base]]
                inputs = {f"eval:{t}:{c}": f"eval:{t}:{c}" for t in r.heldout for c in ["original", *cands]}
                payload_adapted = None
            else:
                target = by_label[base_models[name]]
                inputs, cands, payload_adapted = {"adapted": target.stage}, [], target.path
            for m in methods:
                cfg = dataclasses.replace(pcfg, method=m)
                label = f"{name}/{m}"
                st = Stage(f"propagate:{label}", "propagate", out / "propagate" / _slug(label), {"config": _jsonable(cfg)},
                           inputs=inputs, files={"base": [r.source_model], "instruct": [str(r.instruct_model)]},
                           payload={"config": cfg, "adapted": payload_adapted, "candidates": cands,
                                    "candidate_paths": {c: str(by_label[c].path) for c in cands}})
                stages.append(st)
                propagated.append(label)
                models.append(ModelRef(label, st.id, st.dest, "instruct"))
        cal = S.calibrate_config(r, propagated)
        if cal is not None:
            froms_c, ccfg, instructions, copy_text = cal
            copy_text = copy_text or r.corpus
            for label in froms_c:
                files = {"copy_text": copy_text}
                if instructions:
                    files["instructions"] = [str(instructions)]
                st = Stage(f"calibrate:{label}", "calibrate", out / "calibrate" / _slug(label), {"config": _jsonable(ccfg)},
                           inputs={"model": f"propagate:{label}"}, files=files,
                           payload={"config": ccfg, "model": out / "propagate" / _slug(label),
                                    "instructions": instructions, "copy_text": copy_text})
                stages.append(st)
                models.append(ModelRef(f"{label}+calibrate", st.id, st.dest, "instruct"))
    add_evals(models[n_base:])
    if r.report:
        stages.append(Stage("report", "report", out / "report", {"title": r.name},
                            inputs={sid: sid for sid in eval_ids}))
    return Plan(r, stages, models)


def explain(plan: Plan, *, force: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> list[Stage]:
    """Set each stage's key, ``run`` and ``why``; returns the stages in order."""
    for sel in (*force, *only):
        if not any(_matches(s, sel) for s in plan.stages):
            from vocadapt.errors import did_you_mean

            ids = [s.id for s in plan.stages]
            raise VocadaptError(f"no stage matches {sel!r}{did_you_mean(sel, list(KINDS) + ids)}; stages are kinds ({', '.join(KINDS)}) or ids such as {ids[min(1, len(ids) - 1)]}")
    fingerprints: dict[str, str] = {}
    for s in plan.stages:
        for paths in s.files.values():
            for p in paths:
                if p not in fingerprints:
                    fingerprints[p] = file_fingerprint(p)
    keys: dict[str, str] = {}
    forced: set[str] = set()
    for s in plan.stages:
        s.key = keys[s.id] = stage_key(s, keys, fingerprints)
        upstream_forced = [sid for sid in s.inputs.values() if sid in forced]
        marker = s.done()
        if any(_matches(s, f) for f in force) or upstream_forced:
            forced.add(s.id)
            s.run, s.why = True, "forced" if not upstream_forced else f"forced upstream ({upstream_forced[0]})"
        elif marker is None:
            s.run = True
            s.why = ("interrupted earlier: resumes" if s.kind == "train" else "incomplete output: redone") if s.dest.exists() else "no output yet"
        elif marker.get("key") == s.key:
            s.run, s.why = False, "done"
        else:
            s.run, s.why = True, _what_changed(s, marker, keys)
        if only and not any(_matches(s, o) for o in only):
            if s.run:
                s.why = f"not selected by --only ({s.why})"
            s.run = False
    return plan.stages


def _matches(stage: Stage, selector: str) -> bool:
    return stage.kind == selector or stage.id == selector or stage.id.startswith(selector + ":")


def _what_changed(s: Stage, marker: dict[str, Any], keys: dict[str, str]) -> str:
    from vocadapt import __version__

    if marker.get("vocadapt") != __version__:
        return f"made by vocadapt {marker.get('vocadapt') or '(an older version)'}, this is {__version__}"
    old = marker.get("settings", {})
    diffs = _diff(old, s.settings)
    if diffs:
        return "settings changed: " + "; ".join(diffs[:3]) + (" ..." if len(diffs) > 3 else "")
    for role, sid in s.inputs.items():
        if marker.get("inputs", {}).get(role) != keys[sid]:
            return f"upstream changed: {sid}"
    return "an input file changed"


def _diff(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def write_marker(s: Stage, plan: Plan, results: dict[str, Any]) -> None:
    """Record that ``s`` finished with its current key (written last: no marker = not done)."""
    keys = {x.id: x.key for x in plan.stages}
    s.dest.mkdir(parents=True, exist_ok=True)
    from vocadapt import __version__

    record = {"stage": s.id, "key": s.key, "vocadapt": __version__, "settings": s.settings,
              "inputs": {role: keys[sid] for role, sid in s.inputs.items()}, "results": _jsonable(results)}
    s.marker.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

