"""Execute a recipe's plan: each stage calls the same public function as its CLI command.

Stages run in order; a stage whose key is unchanged is reused (see :mod:`.plan`). Each init
runs in a fresh process so its wall time and peak memory are its own (the leaderboard reports
both; :func:`own_peak_rss_bytes`). Every evaluation is one model on one held-out text, so adding an init method to a recipe
evaluates only the new models.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import time
from typing import Any

from vocadapt.errors import VocadaptError
from vocadapt.recipe import schema as S
from vocadapt.recipe.plan import Plan, Stage, build_plan, explain, write_marker


def _tokenizer(s: Stage, plan: Plan) -> dict[str, Any]:
    from vocadapt import tokenizer as T

    r, cfg, mode = plan.recipe, s.payload["config"], s.payload["mode"]
    build = {
        "train": lambda: T.train_tokenizer(r.corpus, out=s.dest, config=cfg, overwrite=True),
        "extend": lambda: T.extend_tokenizer(r.source_model, r.corpus, out=s.dest, config=cfg, overwrite=True),
        "optimize": lambda: T.optimize_tokenizer(r.source_model, r.corpus, out=s.dest, config=cfg, overwrite=True),
    }[mode]
    summary = build()
    return {k: v for k, v in summary.items() if k not in ("tokenizer_json", "new_tokens", "new_to_old")}


def own_peak_rss_bytes() -> int:
    """This process's peak resident memory, its own: Linux keeps ``ru_maxrss`` across fork and
    exec, so a spawned child's would be at least the recipe process's size when it started the
    child. ``VmHWM`` belongs to the child's own address space (``ru_maxrss`` where there is no /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _init_child(args: dict[str, Any], conn) -> None:
    """Runs in a spawned process: one init, then (report, peak RSS in bytes) or the error."""
    try:
        from vocadapt.init import init_embeddings

        report = init_embeddings(
            args["source"], args["tokenizer"], args["dest"], args["method"], seed=args["seed"], options=args["options"],
            fallback=args["fallback"], pad_to_multiple_of=args["pad_to_multiple_of"], overwrite=True,
        )
        conn.send(("ok", report.as_dict(), own_peak_rss_bytes()))
    except VocadaptError as e:
        conn.send(("error", str(e), 0))
    except KeyboardInterrupt:
        conn.send(("interrupted", "", 0))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        import traceback

        conn.send(("crash", f"{type(e).__name__}: {e}\n{traceback.format_exc()}", 0))


def check_helper_tokenizer(helper: str, tokenizer: str, where: str) -> None:
    """Refuse a helper model whose vocabulary is not the recipe tokenizer's: every model of a
    leaderboard then has the same vocabulary, and the helper's rows line up with it."""
    from vocadapt.io.checkpoint import resolve_model_dir
    from vocadapt.tokenizer.load import load_tokenizer

    theirs = load_tokenizer(resolve_model_dir(helper), "helper model's tokenizer").get_vocab()
    ours = load_tokenizer(tokenizer, "recipe tokenizer").get_vocab()
    if theirs != ours:
        differ = sum(1 for t, i in ours.items() if theirs.get(t) != i) + len(set(theirs) - set(ours))
        raise VocadaptError(
            f"{where}: the helper {helper} has another tokenizer than the recipe's {tokenizer} ({differ} tokens differ); "
            f"train the helper on the recipe's tokenizer (`vocadapt helper train {tokenizer} CORPUS --out HELPER`) "
            "or make the helper the recipe's tokenizer (tokenizer: {mode: path, path: HELPER})"
        )


def _init(s: Stage, plan: Plan) -> dict[str, Any]:
    p = s.payload
    target = p["tokenizer"]
    if p.get("helper"):
        check_helper_tokenizer(str(p["helper"]), str(p["tokenizer"]), f"{plan.recipe.where}: {s.id}")
        target = p["helper"]
    args = {"source": plan.recipe.source_model, "tokenizer": str(target), "dest": str(s.dest), "method": p["method"],
            "seed": plan.recipe.seed, "options": p["options"], "fallback": p["fallback"],
            "pad_to_multiple_of": p["pad_to_multiple_of"]}
    ctx = multiprocessing.get_context("spawn")  # a fresh process: its own peak RSS is this init's alone
    parent, child = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_init_child, args=(args, child), daemon=True)
    proc.start()
    child.close()
    try:
        status, value, rss = parent.recv()
    except EOFError:
        proc.join()
        raise VocadaptError(f"init {p['method']} died (exit code {proc.exitcode}; out of memory?)") from None
    finally:
        proc.join()
    if status == "error":
        raise VocadaptError(value)
    if status == "interrupted":
        raise KeyboardInterrupt(f"interrupted during {s.id}; finished stages are kept (rerun to continue)")
    if status == "crash":
        raise RuntimeError(f"init {p['method']} failed: {value}")
    return {**value, "wall_seconds": round(time.perf_counter() - t0, 1), "peak_rss_bytes": rss}


def _engine_run(s: Stage, call) -> Any:
    """Run a training-engine stage (train, calibrate) into ``s.dest``: ``call(resume)`` runs it.

    A finished run with other settings is replaced. An interrupted one (no marker) continues
    from its last checkpoint when its settings still match; otherwise it starts over.
    """
    import shutil

    from vocadapt.train.engine import checkpoint_dirs

    if s.done() is not None or (s.dest.exists() and not checkpoint_dirs(s.dest)):
        shutil.rmtree(s.dest)
    try:
        return call(bool(checkpoint_dirs(s.dest)))
    except VocadaptError as e:
        if "cannot resume" not in str(e):
            raise
        shutil.rmtree(s.dest)
        return call(False)


def _scalars(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if isinstance(v, (int, float, str))}


def _train(s: Stage, plan: Plan) -> dict[str, Any]:
    from vocadapt.train import train_embeddings

    r = plan.recipe
    eval_text = next(iter(r.heldout.values()))
    return _scalars(_engine_run(s, lambda resume: train_embeddings(
        s.payload["model"], r.corpus, s.dest, s.payload["config"], eval_text=eval_text, resume=resume)))


def pick_best(s: Stage, plan: Plan) -> tuple[str, dict[str, float]]:
    """(label, {candidate: relative bits per byte}) for ``propagate: {from: best}``: each candidate's
    bits per byte divided by the original's on the same held-out text, averaged over the texts."""
    stages = plan.by_id()

    def bpb(sid: str) -> float:
        marker = stages[sid].done() or {}
        value = ((marker.get("results") or {}).get("metrics") or {}).get("bits_per_byte")
        if value is None:
            raise VocadaptError(f"{s.id}: {sid} has no bits per byte to pick the best model by")
        return float(value)

    texts = list(plan.recipe.heldout)
    scores = {c: round(sum(bpb(f"eval:{t}:{c}") / bpb(f"eval:{t}:original") for t in texts) / len(texts), 4)
              for c in s.payload["candidates"]}
    return min(scores, key=lambda c: (scores[c], c)), scores


def _propagate(s: Stage, plan: Plan) -> dict[str, Any]:
    from pathlib import Path

    from vocadapt.propagate import propagate

    r = plan.recipe
    adapted, picked = s.payload["adapted"], {}
    if adapted is None:
        best, scores = pick_best(s, plan)
        adapted = Path(s.payload["candidate_paths"][best])
        picked = {"picked": best, "relative_bpb": scores}
    report = propagate(r.source_model, r.instruct_model, adapted, s.dest, s.payload["config"], overwrite=True)
    return {**(report.as_dict() if hasattr(report, "as_dict") else dict(vars(report))), **picked}


def _calibrate(s: Stage, plan: Plan) -> dict[str, Any]:
    from vocadapt.propagate import calibrate

    p = s.payload
    return _scalars(_engine_run(s, lambda resume: calibrate(
        p["model"], s.dest, p["config"], instructions=p["instructions"], copy_text=p["copy_text"], resume=resume)))


def _eval(s: Stage, plan: Plan) -> dict[str, Any]:
    from vocadapt.corpus import read_texts
    from vocadapt.evaluate.runner import evaluate

    p = s.payload
    texts = read_texts(p["paths"])
    summary = evaluate([p["model"]], texts, p["tasks"], p["data"], s.dest, p["config"], text_paths=p["paths"],
                       names=[p["label"]])
    return {"metrics": summary["models"][0]["metrics"], "seconds": summary["models"][0]["seconds"]}


def _report(s: Stage, plan: Plan) -> dict[str, Any]:
    from vocadapt.recipe.leaderboard import write_outputs

    return write_outputs(plan)


ACTIONS = {"tokenizer": _tokenizer, "init": _init, "train": _train, "propagate": _propagate,
           "calibrate": _calibrate, "eval": _eval, "report": _report}


def plan_recipe(r: S.Recipe, *, force: tuple[str, ...] = (), only: tuple[str, ...] = (), for_run: bool = False) -> Plan:
    """The validated plan with each stage's run/reuse decision (what ``--dry-run`` prints);
    ``for_run``: every input must exist (see :func:`~vocadapt.recipe.schema.validate_recipe`)."""
    S.validate_recipe(r, for_run=for_run)
    plan = build_plan(r)
    explain(plan, force=force, only=only)
    return plan


def run_recipe(r: S.Recipe, *, echo=print, force: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validate the whole recipe, then run every stage that is not done; returns the leaderboard
    summary (``{"models": [eval rows of the first held-out text], "leaderboard": rows}``)."""
    plan = plan_recipe(r, force=force, only=only, for_run=True)
    done = {s.id for s in plan.stages if not s.run and s.why == "done"}
    todo = [s for s in plan.stages if s.run]
    r.out.mkdir(parents=True, exist_ok=True)
    (r.out / "recipe.resolved.json").write_text(
        json.dumps({k: v for k, v in vars(r).items() if k != "unresolved_assets"}, default=str, indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8")
    echo(f"{len(todo)} of {len(plan.stages)} stages to run ({len(plan.stages) - len(todo)} reused); output in {r.out}")
    for i, s in enumerate(todo, 1):
        if only:
            missing = [sid for sid in s.inputs.values() if sid not in done]
            if missing:
                raise VocadaptError(f"--only: {s.id} needs {missing[0]}, which has not run; run without --only first")
        echo(f"[{i}/{len(todo)}] {s.id} ({s.why})")
        t0 = time.perf_counter()
        try:
            results = ACTIONS[s.kind](s, plan)
        except KeyboardInterrupt as e:
            # The recipe's own line: a stage's ("resume with --resume", "N result files kept")
            # names options and files of another command; the rerun redoes or resumes the stage.
            from vocadapt.train.engine import TrainingInterrupted

            where = f"{s.id} at step {e.step} (checkpoint saved; the rerun resumes it)" if isinstance(e, TrainingInterrupted) else s.id
            raise KeyboardInterrupt(f"interrupted during {where}; finished stages are kept (rerun the recipe to continue)") from None
        results.setdefault("stage_seconds", round(time.perf_counter() - t0, 1))
        if "picked" in results:
            scores = ", ".join(f"{k} {v:.3f}" for k, v in sorted(results["relative_bpb"].items(), key=lambda kv: kv[1]))
            echo(f"    best: {results['picked']} (bits per byte relative to the original: {scores})")
        write_marker(s, plan, results)
        done.add(s.id)
    from vocadapt.recipe.leaderboard import summary

    return summary(plan)


def describe_plan(plan: Plan) -> list[tuple[str, str, str]]:
    """(stage id, "run" / "reuse" / "skip", why) rows for ``--dry-run``."""
    return [(s.id, "run" if s.run else ("skip" if s.why.startswith("not selected") else "reuse"), s.why) for s in plan.stages]


__all__ = ["describe_plan", "plan_recipe", "run_recipe"]
