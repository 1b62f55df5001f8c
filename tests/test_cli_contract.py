"""The CLI error contract (vocadapt.cli._contract), checked on every subcommand.

Subcommands are discovered from the typer app, so a command added later is covered without
editing this file: each one is run through the ordinary mistakes (unknown option, missing
argument, ill-typed value, inputs that do not exist) and ``--help``.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import typer

from vocadapt.cli import _contract, app, main


def _leaf_commands():
    """(path, click command) for every runnable subcommand, e.g. (('tokenizer', 'train'), cmd)."""
    out = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, path + (name,))
        else:
            out.append((path, cmd))

    walk(typer.main.get_command(app), ())
    return out


def _groups():
    out = [()]

    def walk(cmd, path):
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            if getattr(sub, "commands", None):
                out.append(path + (name,))
                walk(sub, path + (name,))

    walk(typer.main.get_command(app), ())
    return out


COMMANDS = _leaf_commands()
IDS = [" ".join(p) for p, _ in COMMANDS]


def _scalar(param) -> type | None:
    """The Python type a parameter converts to (int, float, str, Path, bool), across typer versions."""
    desc = getattr(param, "type_descriptor", None)
    tp = getattr(desc, "annotation", None)
    if tp is None:  # older typer: click ParamType
        name = getattr(getattr(param, "type", None), "name", "")
        return {"integer": int, "float": float, "boolean": bool}.get(name, str)
    while typing.get_origin(tp) is not None:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if args else str
    return tp


def _dummy(param, tmp_path: Path) -> list[str]:
    """A well-typed value for a required parameter: inputs that do not exist, outputs under tmp."""
    tp = _scalar(param)
    if tp is int:
        value = "1"
    elif tp is float:
        value = "0.5"
    else:
        value = str(tmp_path / f"missing-{param.name}")
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return [opts[0], value] if getattr(param, "param_type_name", "") == "option" else [value]


def _required_args(cmd, tmp_path: Path) -> list[str]:
    args: list[str] = []
    for p in cmd.params:
        if p.required:
            args += _dummy(p, tmp_path)
    return args


def _typed_option(cmd):
    for p in cmd.params:
        if getattr(p, "param_type_name", "") == "option" and not getattr(p, "is_flag", False) \
                and _scalar(p) in (int, float):
            return p
    return None


def run_cli(args, capsys) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def assert_usage_error(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("Usage:"), err
    assert lines[-1].startswith("Error:"), err
    assert len(lines) <= 5, err  # usage (may wrap), hint, error: short
    for n in needles:
        assert n in err, err


def test_discovery_finds_every_command():
    names = set(IDS)
    assert {"init", "methods", "eval", "report", "tokenizer train", "tokenizer stats", "vectors align", "assets path"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=IDS)
def test_help_works(path, cmd, capsys):
    code, out, err = run_cli([*path, "--help"], capsys)
    assert code == 0, err
    assert "Usage" in out


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=IDS)
def test_unknown_option(path, cmd, tmp_path, capsys):
    code, out, err = run_cli([*path, *_required_args(cmd, tmp_path), "--no-such-option"], capsys)
    if (cmd.context_settings or {}).get("ignore_unknown_options"):
        # `init` hands unknown options to the init method: one `error:` line names it.
        assert code == 2 and err.strip().startswith("error:") and "--no-such-option" in err, err
        assert len(err.strip().splitlines()) == 1, err
    else:
        assert_usage_error(code, err, "No such option", "--no-such-option")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("path,cmd", [(p, c) for p, c in COMMANDS if any(x.required for x in c.params)],
                         ids=[i for i, (p, c) in zip(IDS, COMMANDS) if any(x.required for x in c.params)])
def test_missing_argument(path, cmd, capsys):
    code, out, err = run_cli(list(path), capsys)
    assert_usage_error(code, err, "Missing")


TYPED = [(p, c) for p, c in COMMANDS if _typed_option(c) is not None]


@pytest.mark.parametrize("path,cmd", TYPED, ids=[" ".join(p) for p, _ in TYPED])
def test_ill_typed_value(path, cmd, tmp_path, capsys):
    opt = _typed_option(cmd)
    code, out, err = run_cli([*path, *_required_args(cmd, tmp_path), opt.opts[0], "abc"], capsys)
    assert_usage_error(code, err, "Invalid value", opt.opts[0])
    assert not any(tmp_path.iterdir())


WITH_INPUTS = [(p, c) for p, c in COMMANDS if any(x.required for x in c.params)]


@pytest.mark.parametrize("path,cmd", WITH_INPUTS, ids=[" ".join(p) for p, _ in WITH_INPUTS])
def test_missing_input_is_one_line_and_writes_nothing(path, cmd, tmp_path, capsys):
    """Every input path points at nothing: one `error:` line (naming the path, or an earlier
    mistake in the options), exit 2, no output folder, before any work."""
    code, out, err = run_cli([*path, *_required_args(cmd, tmp_path)], capsys)
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


@pytest.mark.parametrize("group", _groups(), ids=lambda g: " ".join(g) or "vocadapt")
def test_unknown_command(group, capsys):
    code, out, err = run_cli([*group, "no-such-command"], capsys)
    assert_usage_error(code, err, "No such command")


def test_usage_errors_are_the_classes_the_contract_catches():
    """Fails if typer moves its click (or its exception classes) again: the contract would then
    let usage errors escape as tracebacks."""
    root = typer.main.get_command(app)
    with pytest.raises(_contract.CLICK.exceptions.UsageError):
        root.main(args=["init", "--seed", "1"], standalone_mode=False)
    with pytest.raises(_contract.CLICK.exceptions.ClickException):
        root.main(args=["no-such-command"], standalone_mode=False)
    assert issubclass(typer.BadParameter, _contract.CLICK.exceptions.UsageError)


# -- what a command itself raises ---------------------------------------------------------------

@pytest.fixture
def init_args(tmp_path, source_models, target_tokenizers):
    return ["init", source_models["llama-bytelevel-tied"], target_tokenizers["byte_level"], tmp_path / "out"]


def _raise_in_init(monkeypatch, exc):
    import vocadapt.init

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(vocadapt.init, "init_embeddings", boom)


def test_ctrl_c_with_a_message(init_args, monkeypatch, capsys):
    msg = "interrupted at step 12; checkpoint saved in run/checkpoints/step-000012 (resume with --resume)"
    _raise_in_init(monkeypatch, KeyboardInterrupt(msg))
    code, out, err = run_cli(init_args, capsys)
    assert code == 130
    assert err.strip() == msg


def test_ctrl_c_during_init_leaves_nothing(init_args, monkeypatch, capsys):
    """A real interrupt in the middle of writing: exit 130, one line, no output, no temp dir."""
    import vocadapt.init.core as core

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(core, "write_checkpoint", interrupted)
    code, out, err = run_cli(init_args, capsys)
    assert code == 130
    # the progress lines of the steps that ran, then the one line of the contract
    assert err.strip().splitlines()[-1] == "interrupted; nothing written" and "Traceback" not in err
    out_dir = Path(init_args[-1])
    assert not out_dir.exists() and not any(out_dir.parent.iterdir())


def test_unexpected_exception_points_at_a_traceback_file(init_args, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("VOCADAPT_CACHE", str(tmp_path / "cache"))
    _raise_in_init(monkeypatch, RuntimeError("boom\nsecond line"))
    code, out, err = run_cli(init_args, capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unexpected RuntimeError: boom second line"), err
    path = Path(lines[0].split("full traceback in ")[1].split(";")[0])
    assert path.is_relative_to(tmp_path / "cache")
    text = path.read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text


def test_debug_shows_the_traceback(init_args, monkeypatch, capsys):
    _raise_in_init(monkeypatch, RuntimeError("boom"))
    code, out, err = run_cli(["--debug", *init_args], capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err and err.strip().endswith("error: unexpected RuntimeError: boom")
    _contract.STATE["debug"] = False


def test_vocadapt_error_is_one_line(init_args, monkeypatch, capsys):
    from vocadapt.errors import VocadaptError

    _raise_in_init(monkeypatch, VocadaptError("bad thing\nwith detail"))
    code, out, err = run_cli(init_args, capsys)
    assert code == 2 and err == "error: bad thing with detail\n"


def test_warnings_are_one_line(capsys):
    import logging
    import warnings

    _contract.setup_logging()
    warnings.warn("something odd", stacklevel=1)
    logging.getLogger("vocadapt").warning("a logged warning")
    err = capsys.readouterr().err
    assert err.splitlines() == ["warning: something odd", "warning: a logged warning"]
