"""Ctrl-C in every long command: one true line on stderr, exit 130 (docs/cli.md).

Each test sends a real SIGINT to this process from inside the command's library call (the
``at``-th time it passes a chosen function), runs the command through the CLI, and checks the
one line against what is on disk: a checkpoint that exists, result files that exist, or nothing.
A Ctrl-C from outside, to a CLI process, is in tests/test_train_interrupt.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

import factories as fx
from _traintiny import tiny_lm, write_corpus
from test_calibrate import FAST, chat_model  # noqa: F401  (fixture)
from test_hypernet import CASE as HN_CASE, trained  # noqa: F401  (fixture)
from test_recipe import recipe_file, texts  # noqa: F401  (fixtures)

from vocadapt.cli import main

NOTHING = "interrupted; nothing written"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VOCADAPT_CACHE", str(tmp_path / "cache"))


def sigint_on(monkeypatch, owner, name: str, at: int = 1) -> None:
    """Send SIGINT to this process the ``at``-th time ``owner.name`` is called (``owner``: a class,
    module or dict), just before the call runs."""
    original = owner[name] if isinstance(owner, dict) else getattr(owner, name)
    calls = [0]

    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*a, **k)

    if isinstance(owner, dict):
        monkeypatch.setitem(owner, name, wrapped)
    else:
        monkeypatch.setattr(owner, name, wrapped)


def interrupted(args, capsys) -> str:
    """Run the CLI, expect exit 130, and return its one ``interrupted`` line (the last on stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert e.value.code == 130, err
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    assert "Traceback" not in err
    return lines[0]


def assert_checkpoint_line(line: str, out: Path, step: int) -> None:
    ckpt = out / "checkpoints" / f"step-{step:06d}"
    assert line == f"interrupted at step {step}; checkpoint saved in {ckpt} (resume with --resume)"
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == step


def test_train(tmp_path, monkeypatch, capsys):
    from vocadapt.train.lm import EmbeddingTask

    model, corpus, out = tiny_lm(tmp_path / "m"), write_corpus(tmp_path / "c.txt", n=40), tmp_path / "run"
    sigint_on(monkeypatch, EmbeddingTask, "global_batch", at=3)  # before the third step
    line = interrupted(["train", model, corpus, "--out", out, "--steps", "5", "--seq-len", "32", "--batch-size", "2",
                        "--eval-every", "0", "--no-progress"], capsys)
    assert_checkpoint_line(line, out, 2)


def test_calibrate(chat_model, tmp_path, monkeypatch, capsys):  # noqa: F811
    from vocadapt.propagate.calibrate import CalibrationTask

    out = tmp_path / "run"
    sigint_on(monkeypatch, CalibrationTask, "global_batch", at=2)
    line = interrupted(["calibrate", chat_model["model"], "--instructions", chat_model["data"], "--out", out,
                        "--steps", "4", "--warmup-steps", "0", "--eval-every", "0", "--batch-size", "4",
                        "--val-examples", "2", "--lora-r", "4", "--lora-alpha", "8", "--max-length", "96",
                        "--no-progress"], capsys)
    assert_checkpoint_line(line, out, 1)
    assert not (out / "model").exists()


def test_helper_train(tmp_path, target_tokenizers, monkeypatch, capsys):
    from vocadapt.train.scratch import HelperTask

    out = tmp_path / "helper"
    sigint_on(monkeypatch, HelperTask, "global_batch", at=2)
    line = interrupted(["helper", "train", target_tokenizers["byte_level"], write_corpus(tmp_path / "c.txt", n=40),
                        "--out", out, "--steps", "4", "--hidden-size", "16", "--layers", "1", "--heads", "2",
                        "--seq-len", "16", "--batch-size", "2", "--warmup-steps", "0", "--eval-every", "0",
                        "--no-progress"], capsys)
    assert_checkpoint_line(line, out, 1)


def test_hypernet_train(tmp_path, source_models, monkeypatch, capsys):
    from method_options import _ofa

    from vocadapt.hypernet.train import ReconstructTask

    out = tmp_path / "hn"
    sigint_on(monkeypatch, ReconstructTask, "global_batch", at=3)
    line = interrupted(["hypernet", "train", source_models[HN_CASE], "--vectors", _ofa(tmp_path)["vectors"],
                        "--rank", "8", "--out", out, "--steps", "8", "--hidden", "16", "--eval-every", "4",
                        "--no-progress"], capsys)
    assert_checkpoint_line(line, out, 2)


@pytest.fixture
def hyperofa_model(trained, source_models, target_tokenizers, tmp_path):  # noqa: F811
    from vocadapt.init import init_embeddings

    hn, _ = trained
    model = tmp_path / "init"
    init_embeddings(source_models[HN_CASE], target_tokenizers["sentencepiece"], model, "hyperofa",
                    options={"hypernet": [str(hn)]})
    corpus = tmp_path / "tune.txt"
    corpus.write_text("\n\n".join(fx.corpus("ru", 120, seed=21)) + "\n", encoding="utf-8")
    return hn, model, corpus


def test_hypernet_tune(hyperofa_model, tmp_path, monkeypatch, capsys):
    from vocadapt.hypernet.lm import LmStageTask

    hn, model, corpus = hyperofa_model
    out = tmp_path / "tuned"
    sigint_on(monkeypatch, LmStageTask, "global_batch", at=2)
    line = interrupted(["hypernet", "tune", hn, model, corpus, "--out", out, "--steps", "4", "--seq-len", "32",
                        "--batch-size", "2", "--warmup-steps", "0", "--eval-every", "0", "--no-progress"], capsys)
    assert_checkpoint_line(line, out, 1)


def test_init_with_an_lm_stage_writes_nothing(hyperofa_model, source_models, target_tokenizers, tmp_path,
                                              monkeypatch, capsys):
    """The LM stage inside init checkpoints into a scratch folder that init deletes: the line must
    not point there."""
    from vocadapt.hypernet.lm import LmStageTask

    hn, _, corpus = hyperofa_model
    out = tmp_path / "new" / "model"
    sigint_on(monkeypatch, LmStageTask, "global_batch", at=2)
    line = interrupted(["init", source_models[HN_CASE], target_tokenizers["sentencepiece"], out, "--method", "hyperofa",
                        "--hypernet", hn, "--tune-steps", "3", "--tune-corpus", corpus], capsys)
    assert line == NOTHING
    assert not (tmp_path / "new").exists()


def _eval_args(source_models, tmp_path, out):
    text = tmp_path / "held.txt"
    text.write_text("\n%\n".join(" ".join(fx.corpus("ru", 3, seed=i)) for i in range(6)) + "\n", encoding="utf-8")
    return ["eval", source_models["llama-bytelevel-tied"], "--text", text, "--tasks", "bpb,copy", "--out", out,
            "--max-length", "32", "--copy-sentences", "1", "--copy-paragraphs", "0", "--speed-tokens", "2"]


def test_eval_keeps_and_counts_finished_results(source_models, tmp_path, monkeypatch, capsys):
    from vocadapt.evaluate.runner import TASKS

    out = tmp_path / "ev"
    sigint_on(monkeypatch, TASKS, "copy")  # bits per byte is done and written
    line = interrupted(_eval_args(source_models, tmp_path, out), capsys)
    assert line == f"interrupted; 1 finished task result file(s) kept in {out} (no summary: rerun to finish)"
    kept = list(out.glob("*/*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["task"] == "bpb"
    assert not (out / "summary.json").exists()


def test_eval_before_any_result_writes_nothing(source_models, tmp_path, monkeypatch, capsys):
    from vocadapt.evaluate.lm import HFLM

    out = tmp_path / "new" / "ev"
    sigint_on(monkeypatch, HFLM, "from_dir")
    assert interrupted(_eval_args(source_models, tmp_path, out), capsys) == NOTHING
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["train", "extend"])
def test_tokenizer_writes_nothing(command, source_models, tmp_path, monkeypatch, capsys):
    import vocadapt.io.atomic

    corpus = tmp_path / "ru.txt"
    corpus.write_text("\n%\n".join(" ".join(fx.corpus("ru", 3, seed=i)) for i in range(40)) + "\n", encoding="utf-8")
    out = tmp_path / "new" / "tok"
    # Inside the atomic write: the tokenizer is learned, its files are being written.
    sigint_on(monkeypatch, vocadapt.io.atomic, "share_as_umask_allows")
    args = (["tokenizer", "train", corpus, "--vocab-size", "340"] if command == "train" else
            ["tokenizer", "extend", source_models["llama-bytelevel-tied"], corpus, "--add", "20"])
    assert interrupted([*args, "--out", out], capsys) == NOTHING
    assert not (tmp_path / "new").exists()


def test_run_recipe(recipe_file, tmp_path, monkeypatch, capsys):  # noqa: F811
    from vocadapt.train.lm import EmbeddingTask

    path = recipe_file(train={"steps": 3, "seq_len": 16, "batch_size": 2, "lr": 0.01, "warmup_steps": 0,
                              "eval_every": 0, "eval_max_docs": 5, "progress": False})
    sigint_on(monkeypatch, EmbeddingTask, "global_batch", at=2)
    line = interrupted(["run", path], capsys)
    m = re.fullmatch(r"interrupted during train:(\w+) at step 1 \(checkpoint saved; the rerun resumes it\); "
                     r"finished stages are kept \(rerun the recipe to continue\)", line)
    assert m, line
    assert (tmp_path / "out" / "train" / m.group(1) / "checkpoints" / "step-000001" / "trainer_state.json").is_file()
