"""Recipes: validated whole before any work, stages keyed by their inputs, reuse and reruns.

A tiny source model and a target tokenizer from the session fixtures; the recipe runs init
(two methods), evaluation on two held-out texts and the report, then checks that a rerun
reuses everything, that a changed setting reruns exactly what is downstream of it, and that
every kind of mistake is one line before anything runs.
"""

from __future__ import annotations

import json

import factories as fx
import pytest
import yaml

from vocadapt.cli import main
from vocadapt.errors import VocadaptError
from vocadapt.recipe import load_recipe, plan_recipe, recipe_from_dict, run_recipe, validate_recipe


@pytest.fixture()
def texts(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n%\n".join(fx.corpus("ru", 30, seed=5)) + "\n", encoding="utf-8")
    b.write_text("\n%\n".join(fx.corpus("mixed", 20, seed=6)) + "\n", encoding="utf-8")
    return a, b


def _raw(source, tok, texts, out, **extra):
    a, b = texts
    raw = {
        "name": "t", "out": str(out), "source_model": str(source), "corpus": [str(a)],
        "heldout": {"ru": [str(a)], "mixed": [str(b)]},
        "tokenizer": {"mode": "path", "path": str(tok)},
        "init": [{"method": "mean"}, {"method": "random"}],
        "eval": {"tasks": ["bpb"], "progress": False, "max_docs": 10},
    }
    raw.update(extra)
    return raw


@pytest.fixture()
def recipe_file(tmp_path, source_models, target_tokenizers, texts):
    def write(**extra):
        raw = _raw(source_models["llama-bytelevel-tied"], target_tokenizers["byte_level"], texts, tmp_path / "out", **extra)
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        return path

    return write


def _actions(plan):
    return {s.id: ("run" if s.run else "reuse", s.why) for s in plan.stages}


def _replan(path, raw):
    """Write the edited recipe ``raw`` to ``path`` and return what a rerun would do per stage."""
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return _actions(plan_recipe(load_recipe(path)))


def test_run_reuse_and_downstream_rerun(recipe_file, tmp_path):
    path = recipe_file()
    r = load_recipe(path)
    summary = run_recipe(r, echo=lambda *_: None)
    out = tmp_path / "out"
    assert {row["model"] for row in summary["leaderboard"]} == {"original", "mean", "random"}
    assert all(row["bpb ru"] > 0 for row in summary["leaderboard"])
    init = next(row for row in summary["leaderboard"] if row["model"] == "mean")
    assert init["init_s"] > 0 and init["init_peak_gib"] > 0  # measured in the init's own process
    for f in ("leaderboard.md", "leaderboard.json", "report.html", "eval/ru/summary.json", "eval/mixed/summary.json"):
        assert (out / f).is_file(), f
    assert "Leaderboard" in (out / "report.html").read_text(encoding="utf-8")

    # Nothing changed: every stage is reused.
    plan = plan_recipe(load_recipe(path))
    assert not any(s.run for s in plan.stages)

    # A changed eval setting reruns the evaluations and the report, nothing upstream.
    raw = yaml.safe_load(path.read_text())
    raw["eval"]["max_docs"] = 8
    acts = _replan(path, raw)
    assert acts["init:mean"][0] == "reuse" and acts["init:random"][0] == "reuse"
    assert acts["eval:ru:mean"] == ("run", "settings changed: config.max_docs: 10 -> 8")
    assert acts["report"][0] == "run"

    # A changed init option reruns that init and its evaluations only.
    raw["init"][0]["weighting"] = "length"
    raw["eval"]["max_docs"] = 10
    acts = _replan(path, raw)
    assert acts["init:mean"][0] == "run" and "weighting" in acts["init:mean"][1]
    assert acts["eval:ru:mean"] == ("run", "upstream changed: init:mean")
    assert acts["init:random"][0] == "reuse" and acts["eval:ru:random"][0] == "reuse"

    # --force reruns the named stage and what depends on it.
    acts = _actions(plan_recipe(load_recipe(path), force=("init:random",)))
    assert acts["init:random"] == ("run", "forced") and acts["eval:mixed:random"][0] == "run"


def test_interrupted_output_is_redone(recipe_file, tmp_path):
    r = load_recipe(recipe_file(init=[{"method": "mean"}]))
    run_recipe(r, echo=lambda *_: None)
    marker = tmp_path / "out" / "models" / "mean" / ".vocadapt-stage.json"
    marker.unlink()  # as if the run stopped after writing the model but before recording it
    assert _actions(plan_recipe(load_recipe(recipe_file(init=[{"method": "mean"}]))))["init:mean"] == ("run", "incomplete output: redone")


def test_only_needs_upstream(recipe_file, capsys):
    code, err = _cli(["run", str(recipe_file()), "--only", "eval"], capsys)
    assert code == 2 and "needs" in err and "has not run" in err


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"eval": {"max_doc": 3}}, "eval: unknown key 'max_doc' (did you mean 'max_docs'?)"),
        ({"init": [{"method": "maen"}]}, "unknown init method 'maen' (did you mean 'mean'?)"),
        ({"init": [{"method": "mean", "weightin": "x"}]}, "has no option 'weightin' (did you mean 'weighting'?)"),
        ({"init": [{"method": "mean"}, {"method": "mean"}]}, "two init entries are named 'mean'"),
        ({"tokenizer": {"mode": "trian"}}, "did you mean 'train'?"),
        ({"tokenizer": {"mode": "train", "vocab_sise": 10}}, "did you mean 'vocab_size'?"),
        ({"corpus": ["/nonexistent/corpus.txt"]}, "corpus file not found: /nonexistent/corpus.txt"),
        ({"heldout": {"x": ["/nonexistent/h.txt"]}}, "held-out text 'x' not found"),
        ({"evaluate": {}}, "unknown key 'evaluate'"),
        ({"init": [{"method": "focus", "aux_corpus": ["/nonexistent/aux.txt"]}]}, "aux_corpus not found"),
        ({"propagate": {"methods": ["swap"]}}, "needs 'instruct_model'"),
        ({"init": [{"method": "mean", "helper": "/nonexistent/h"}]}, "only regression reads a helper model"),
        ({"init": [{"method": "regression", "helper": "/nonexistent/h"}]}, "init 'regression' helper not found: /nonexistent/h"),
        ({"init": [{"method": "hyperofa", "hypernet": ["/nonexistent/hn"]}]}, "init 'hyperofa' hypernet not found"),
    ],
)
def test_validate_catches_mistakes_before_any_work(recipe_file, tmp_path, change, needle, capsys):
    path = recipe_file(**change)
    with pytest.raises(VocadaptError) as e:
        validate_recipe(load_recipe(path, fetch=False))
    assert needle in str(e.value)
    code, err = _cli(["run", str(path)], capsys)
    assert code == 2 and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_validate_cli_accepts_shipped_recipes(capsys):
    from pathlib import Path

    from vocadapt.recipe.schema import demo_recipe_path

    templates = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))
    assert templates, "the recipes/ templates are shipped too"
    for path in [demo_recipe_path(False), demo_recipe_path(True), *templates]:
        code, out = _cli(["run", str(path), "--validate"], capsys, out=True)
        assert code == 0 and "valid" in out, (path, out)


def test_unknown_asset_variable(texts, tmp_path):
    raw = _raw("${assets.smolm2}", tmp_path, texts, tmp_path / "out")
    with pytest.raises(VocadaptError, match=r"did you mean 'assets.smollm2'"):
        recipe_from_dict(raw, fetch=False)


def test_dry_run_prints_plan(recipe_file, capsys):
    code, out = _cli(["run", str(recipe_file()), "--dry-run"], capsys, out=True)
    assert code == 0 and "init:mean" in out and "no output yet" in out


def _cli(args, capsys, out=False):
    """(exit code, stdout if ``out`` else stderr) of one CLI call."""
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    return code, captured.out if out else captured.err.strip()


def test_train_stage_trains_every_init_and_resumes(recipe_file, tmp_path):
    train = {"steps": 4, "seq_len": 16, "batch_size": 2, "lr": 0.01, "warmup_steps": 0, "eval_every": 2,
             "eval_max_docs": 5, "progress": False, "save_every": 2}
    path = recipe_file(train=train)
    summary = run_recipe(load_recipe(path), echo=lambda *_: None)
    rows = {r["model"]: r for r in summary["leaderboard"]}
    assert rows["mean"]["bpb ru +train"] is not None and rows["mean"]["train_tokens_per_s"] > 0
    out = tmp_path / "out"
    cov = json.loads((out / "train" / "mean" / "model" / "vocadapt.json").read_text())["results"]["coverage"]
    assert rows["mean"]["new rows trained"] == cov["new_rows_seen"] / cov["new_rows"] > 0  # the share the batches showed
    assert (out / "train" / "mean" / "model" / "config.json").is_file()
    assert "loss" in (out / "report.html").read_text(encoding="utf-8")  # the curves made it into the report

    # Interrupted after a checkpoint (marker gone, last checkpoint kept): the rerun resumes.
    (out / "train" / "mean" / ".vocadapt-stage.json").unlink()
    acts = _actions(plan_recipe(load_recipe(path)))
    assert acts["train:mean"] == ("run", "interrupted earlier: resumes")
    run_recipe(load_recipe(path), echo=lambda *_: None)
    log = (out / "train" / "mean" / "train_log.jsonl").read_text().splitlines()
    assert max(json.loads(x)["step"] for x in log) == 4

    # A changed training setting reruns training and its evaluations, not the inits.
    raw = yaml.safe_load(path.read_text())
    raw["train"]["lr"] = 0.02
    acts = _replan(path, raw)
    assert acts["init:mean"][0] == "reuse" and acts["train:mean"][1] == "settings changed: config.lr: 0.01 -> 0.02"
    assert acts["eval:ru:mean+train"] == ("run", "upstream changed: train:mean")
    assert acts["eval:ru:mean"][0] == "reuse"


def test_propagate_and_calibrate_stages(recipe_file, tmp_path, source_models):
    # The source model serves as its own same-shaped "instruct twin": the point here is the
    # stage wiring (propagate from each init, calibrate from a propagated model, evaluation).
    calib = {"steps": 2, "batch_size": 2, "copy_examples": 6, "val_examples": 2, "copy_chars": [20, 80],
             "max_length": 64, "lora_r": 2, "lora_alpha": 4, "progress": False, "warmup_steps": 0}
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": q[::-1]}]},
                   ensure_ascii=False) + "\n" for q in fx.corpus("ru", 12, seed=9)), encoding="utf-8")
    path = recipe_file(
        init=[{"method": "mean"}],
        instruct_model=str(source_models["llama-bytelevel-tied"]),
        propagate={"methods": ["swap", "conversion"]},
        calibrate={"from": ["mean/conversion"], "instructions": str(chat), **calib},
    )
    summary = run_recipe(load_recipe(path), echo=lambda *_: None)
    labels = {row["model"] for row in summary["instruct"]}
    assert labels == {"instruct", "mean/swap", "mean/conversion", "mean/conversion+calibrate"}
    out = tmp_path / "out"
    assert (out / "calibrate" / "mean_conversion" / "model" / "config.json").is_file()
    assert not any(s.run for s in plan_recipe(load_recipe(path)).stages)  # all reused on a rerun


def test_generation_tasks_run_on_the_first_heldout_text_only(recipe_file):
    path = recipe_file(eval={"tasks": ["bpb", "copy"], "progress": False})
    r = load_recipe(path)
    first, second = list(r.heldout)  # in the recipe's order
    tasks = {s.id: s.payload["tasks"] for s in plan_recipe(r).stages if s.kind == "eval"}
    assert tasks[f"eval:{first}:mean"] == ["bpb", "copy"] and tasks[f"eval:{second}:mean"] == ["bpb"]
    path = recipe_file(eval={"tasks": ["copy"], "progress": False})
    ids = [s.id for s in plan_recipe(load_recipe(path)).stages if s.kind == "eval"]
    assert f"eval:{first}:mean" in ids and not any(i.startswith(f"eval:{second}:") for i in ids)


def _tiny_helper(path, tokenizer_dir):
    """A tiny random causal LM with ``tokenizer_dir`` as its tokenizer: a stand-in for `helper train`."""
    from vocadapt.tokenizer.load import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    return fx.save_model(fx.tiny_model("llama", len(tok), True, seed=3), tok, path)


def test_learned_pieces_as_init_entries(recipe_file, tmp_path, source_models, target_tokenizers):
    """A helper model (regression) and a saved hypernetwork (hyperofa) as init entries: both
    run, both are fingerprinted (a changed helper reruns its init only), and a helper trained on
    another tokenizer is refused in one line before its init writes anything."""
    from method_options import _ofa

    from vocadapt.hypernet.train import HypernetConfig, train_hypernet
    from vocadapt.tokenizer.load import load_tokenizer

    helper = _tiny_helper(tmp_path / "helper", target_tokenizers["byte_level"])
    hn = tmp_path / "hn"
    train_hypernet(source_models["llama-bytelevel-tied"], hn, HypernetConfig(
        vectors=_ofa(tmp_path / "vec")["vectors"], rank="8", steps=4, hidden=8, eval_every=2, progress=False))
    init = [{"method": "mean"}, {"method": "regression", "helper": str(helper), "ridge": "1"},
            {"method": "hyperofa", "hypernet": [str(hn / "model")]}]
    path = recipe_file(init=init)
    summary = run_recipe(load_recipe(path), echo=lambda *_: None)
    rows = {r["model"]: r for r in summary["leaderboard"]}
    assert rows["regression"]["bpb ru"] > 0 and rows["hyperofa"]["bpb ru"] > 0
    out = tmp_path / "out" / "models"
    record = json.loads((out / "regression" / "vocadapt.json").read_text())
    assert record["results"]["method_stats"]["regression"]["input"]["features"].startswith("helper input embedding")
    vocab = load_tokenizer(target_tokenizers["byte_level"]).get_vocab()
    assert load_tokenizer(out / "regression").get_vocab() == vocab == load_tokenizer(out / "hyperofa").get_vocab()
    assert not any(s.run for s in plan_recipe(load_recipe(path)).stages)

    # Another helper (same tokenizer, other weights): that init and its evaluations rerun, nothing else.
    import shutil

    shutil.rmtree(helper)
    tok = load_tokenizer(target_tokenizers["byte_level"])
    fx.save_model(fx.tiny_model("llama", len(tok), True, seed=4), tok, helper)
    acts = _actions(plan_recipe(load_recipe(path)))
    assert acts["init:regression"] == ("run", "an input file changed")
    assert acts["eval:ru:regression"][0] == "run" and acts["init:hyperofa"][0] == "reuse" and acts["init:mean"][0] == "reuse"

    # A helper with another tokenizer: refused, naming both and the fix.
    other = _tiny_helper(tmp_path / "other", target_tokenizers["sentencepiece"])
    path = recipe_file(init=[{"method": "regression", "name": "reg-other", "helper": str(other)}])
    with pytest.raises(VocadaptError, match=r"another tokenizer than the recipe's .*`vocadapt helper train") as e:
        run_recipe(load_recipe(path), echo=lambda *_: None)
    assert len(str(e.value).splitlines()) == 1
    assert not (tmp_path / "out" / "models" / "reg-other").exists()


def test_pieces_inside_the_run_folder_may_be_made_later(recipe_file, tmp_path):
    """A hypernetwork under ${out} that is not made yet: --validate notes it, run refuses to start."""
    path = recipe_file(init=[{"method": "mean"}, {"method": "hyperofa", "hypernet": ["${out}/prepared/hn/model"]}])
    notes = validate_recipe(load_recipe(path, fetch=False))
    assert any("prepared/hn/model is inside the run folder and not made yet" in n for n in notes)
    with pytest.raises(VocadaptError, match=r"init 'hyperofa' hypernet not found: .*prepared/hn/model"):
        run_recipe(load_recipe(path), echo=lambda *_: None)
    assert not (tmp_path / "out").exists()  # refused before the first stage
    with pytest.raises(VocadaptError, match="hypernet not found"):  # outside the run folder: an error even when checking
        validate_recipe(load_recipe(recipe_file(init=[{"method": "hyperofa", "hypernet": [str(tmp_path / "hn")]}]), fetch=False))


def test_an_init_child_reports_its_own_peak_memory_not_its_parents(tmp_path):
    """The leaderboard's init memory: a child started by a large process must not inherit its size."""
    import subprocess
    import sys

    code = (
        "import subprocess, sys\n"
        "big = bytearray(600 << 20)\n"
        "big[::4096] = b'x' * len(big[::4096])  # 600 MiB resident in the parent\n"
        "child = 'from vocadapt.recipe.run import own_peak_rss_bytes; print(own_peak_rss_bytes())'\n"
        "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True, check=True).stdout)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 0 < int(out.split()[0]) < 400 << 20  # importing vocadapt.recipe takes far less than 600 MiB


def test_train_stage_distils_from_the_recipes_source_model(recipe_file, tmp_path):
    """`objective: distill` in a recipe: the teacher is the recipe's source model, found through
    the init's provenance (issue 19); another objective is another stage key."""
    train = {"steps": 2, "seq_len": 16, "batch_size": 2, "lr": 0.01, "warmup_steps": 0, "eval_every": 0,
             "eval_max_docs": 5, "progress": False, "objective": "distill"}
    path = recipe_file(init=[{"method": "mean"}], train=train)
    run_recipe(load_recipe(path), echo=lambda *_: None)
    out = tmp_path / "out" / "train" / "mean"
    prov = json.loads((out / "model" / "vocadapt.json").read_text())
    assert prov["config"]["objective"] == "distill"
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    raw = yaml.safe_load(path.read_text())
    assert _replan(path, raw)["train:mean"][0] == "reuse"
    # `teacher_dtype: auto` is keyed by what it became here: the same recipe on a machine where
    # auto gives the other dtype (a CPU without native bf16, or one with it) trains again.
    import vocadapt.model

    made = prov["results"]["teacher_dtype"]
    other = {"bfloat16": "float32", "float32": "bfloat16"}[made]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vocadapt.model, "cpu_has_native_bf16", lambda: other == "bfloat16")
        assert _replan(path, raw)["train:mean"] == ("run", f"settings changed: teacher_dtype: {made!r} -> {other!r}")
    raw["train"]["objective"] = "lm"
    assert _replan(path, raw)["train:mean"] == (
        "run", f"settings changed: config.objective: 'distill' -> 'lm'; teacher_dtype: {made!r} -> None")


def test_tokenizer_objective_grid_propagates_the_best(recipe_file, tmp_path, source_models, target_tokenizers):
    """Two named tokenizers x one init x two objectives, and ``propagate: {from: best}``: every
    model of the grid is made and evaluated before the propagation, which takes the one with the
    lowest bits per byte relative to the original (recomputed here from the evaluations)."""
    small = {"steps": 2, "batch_size": 2, "seq_len": 32, "eval_every": 0, "progress": False, "warmup_steps": 0}
    path = recipe_file(
        tokenizer=[{"name": "own", "mode": "path", "path": str(target_tokenizers["byte_level"])},
                   {"name": "ext", "mode": "extend", "add": 16}],
        init=[{"method": "mean"}, {"method": "random", "tokenizer": "own"}],
        train={"from": ["mean"], "objective": ["lm", "distill"], **small},
        instruct_model=str(source_models["llama-bytelevel-tied"]),
        propagate={"from": "best", "methods": ["conversion"]},
    )
    r = load_recipe(path)
    plan = plan_recipe(r)
    ids = [s.id for s in plan.stages]
    grid = ["mean@own+lm", "mean@own+distill", "mean@ext+lm", "mean@ext+distill"]
    assert [i for i in ids if i.startswith("train:")] == [f"train:{g}" for g in grid]  # random is not trained
    assert "tokenizer:ext" in ids and "init:random@own" in ids and "init:random@ext" not in ids
    prop = ids.index("propagate:best/conversion")
    assert all(ids.index(f"eval:{t}:{m}") < prop for t in r.heldout for m in ["original", *grid])
    assert plan.by_id()["propagate:best/conversion"].payload["candidates"] == grid

    lines: list[str] = []
    summary = run_recipe(r, echo=lines.append)
    rows = {row["model"]: row for row in summary["leaderboard"]}
    texts = list(r.heldout)
    rel = {g: sum(rows[g.split("+")[0]][f"bpb {t} +{g.split('+', 1)[1]}"] / rows["original"][f"bpb {t}"] for t in texts) / len(texts)
           for g in grid}
    best = min(rel, key=rel.get)
    marker = json.loads((tmp_path / "out" / "propagate" / "best_conversion" / ".vocadapt-stage.json").read_text())
    assert marker["results"]["picked"] == best
    assert any(line.startswith(f"    best: {best} ") for line in lines)
    assert f"best/conversion ({best})" in {row["model"] for row in summary["instruct"]}
    # The distill runs learnt from the source model (the teacher init recorded).
    prov = json.loads((tmp_path / "out" / "train" / "mean@ext+distill" / "model" / "vocadapt.json").read_text())
    assert prov["config"]["objective"] == "distill"
    assert not any(s.run for s in plan_recipe(load_recipe(path)).stages)  # all reused on a rerun


@pytest.mark.parametrize("edit, message", [
    ({"tokenizer": [{"mode": "train"}]}, "needs a name: on each entry"),
    ({"tokenizer": [{"name": "a", "mode": "train"}, {"name": "a", "mode": "extend"}]}, "two tokenizers are named 'a'"),
    ({"tokenizer": [{"name": "a/b", "mode": "train"}]}, "may use letters"),
    ({"init": [{"method": "mean", "tokenizer": "own"}]}, "picks among named tokenizers"),
    ({"train": {"from": ["meen"]}}, "did you mean 'mean'?"),
    ({"train": {"objective": ["lm", "lm"]}}, "with a repeat"),
    ({"train": {"objective": ["lm", "distil"]}}, "objective"),
    ({"train": {"objective": ["lm", "distill"]}, "propagate": {"from": ["mean"]}}, "trained more than once; name one of mean+lm, mean+distill"),
    ({"propagate": {"from": ["best", "mean"]}}, "from: best stands alone"),
    ({"propagate": {"from": "best"}, "eval": {"tasks": ["copy"]}}, "add bpb to eval.tasks"),
])
def test_grid_mistakes_are_one_line(recipe_file, source_models, edit, message):
    if "propagate" in edit:
        edit = {"instruct_model": str(source_models["llama-bytelevel-tied"]), **edit}
    with pytest.raises(VocadaptError, match=message.replace("?", r"\?").replace("+", r"\+")) as e:
        validate_recipe(load_recipe(recipe_file(**edit)))
    assert "\n" not in str(e.value)
