"""The command line's error contract: what every mistake prints and its exit status.

=============================================  =========================================  ====
what happened                                  what is printed (stderr)                   exit
=============================================  =========================================  ====
usage error: unknown option or command,        click's short usage message:               2
missing or ill-typed argument                  ``Usage: ...`` / ``Try ... --help`` /
                                               ``Error: ...``
:class:`~vocadapt.errors.VocadaptError`        ``error: <one line>``                      2
Ctrl-C                                         the interrupt's message (``interrupted     130
                                               at step N; checkpoint saved in DIR ...``)
                                               or ``interrupted; nothing written``
any other exception (a bug)                    ``error: unexpected <Type>: <message>``    1
                                               plus the file holding the traceback
                                               (``--debug``: the traceback itself)
=============================================  =========================================  ====

typer ships its own copy of click (``typer._click``) in recent releases and used the ``click``
package before; the exception classes are taken from whichever typer itself raises
(:data:`CLICK`), and ``tests/test_cli_contract.py`` fails if that ever drifts.

Log records of the ``vocadapt`` logger (and Python warnings, from vocadapt or a library) are
printed as one ``warning: ...`` line each, without source lines.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

import typer
import typer.core

# The click that typer raises its usage errors from: typer >= 0.2x vendors it as typer._click.
CLICK = getattr(typer.core, "_click", None)
if CLICK is None:  # pragma: no cover - older typer on the click package
    import click as CLICK  # type: ignore[no-redef]

# Abort/Exit live in typer.exceptions in the vendored layout, in click.exceptions before.
_ABORT = tuple({typer.Abort, getattr(CLICK.exceptions, "Abort", typer.Abort)})
_EXIT = tuple({typer.Exit, getattr(CLICK.exceptions, "Exit", typer.Exit)})

NOTHING_WRITTEN = "interrupted; nothing written"
STATE = {"debug": False}  # set by the root ``--debug`` option for the current run
EXIT_BUG, EXIT_USAGE, EXIT_INTERRUPT = 1, 2, 130


class Interrupted(Exception):
    """Ctrl-C inside a command, carried past typer (which would turn it into a bare exit 130)."""


def _guard(invoke):
    def guarded(ctx):
        try:
            return invoke(ctx)
        except KeyboardInterrupt as e:
            raise Interrupted(str(e) if e.args else NOTHING_WRITTEN) from e

    return guarded


class _LineHandler(logging.Handler):
    """``warning: message`` on stderr, one line per record, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage().strip().splitlines()
            line = f"{record.levelname.lower()}: {msg[0] if msg else ''}"
            if record.levelno < logging.WARNING:
                line = msg[0] if msg else ""
            try:
                from tqdm import tqdm

                tqdm.write(line, file=sys.stderr)
            except ImportError:  # pragma: no cover - tqdm is a core dependency
                print(line, file=sys.stderr)
        except Exception:  # noqa: BLE001 - a broken log line must not kill the command
            self.handleError(record)


def setup_logging(debug: bool = False) -> None:
    """Route the ``vocadapt`` logger and Python warnings to one-line stderr messages (idempotent)."""
    log = logging.getLogger("vocadapt")
    if not any(isinstance(h, _LineHandler) for h in log.handlers):
        log.addHandler(_LineHandler())
        log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    # transformers draws a nameless "Loading weights" bar for every model it loads (dozens in a
    # recipe); vocadapt's own lines say which model is loading. Set before transformers is
    # imported, which reads it once; a user's explicit setting wins.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    def showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        name = "" if category in (UserWarning, RuntimeWarning) else f"{category.__name__}: "
        log.warning("%s%s", name, str(message).strip())

    warnings.showwarning = showwarning


def _crash_file(exc: BaseException) -> Path | None:
    """Write the traceback under ``$VOCADAPT_CACHE/logs``; None if even that fails."""
    try:
        from vocadapt.cache import cache_dir

        folder = cache_dir() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = folder / f"error-{stamp}-{os.getpid()}.txt"
        path.write_text("vocadapt " + " ".join(sys.argv[1:]) + "\n\n" + "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)), encoding="utf-8")
        return path
    except Exception:  # noqa: BLE001
        return None


def _main_process() -> bool:
    """Whether this is rank 0 of a `torchrun`/`accelerate launch` (or a plain run): a Ctrl-C
    reaches every process, and the one line is printed once."""
    return os.environ.get("RANK", "0") in ("", "0")


def _one_line(text: str) -> str:
    return " ".join(text.split()) if text else ""


def run_app(app: typer.Typer, argv: list[str] | None, *, debug: bool = False) -> int:
    """Run the typer ``app`` on ``argv`` under the contract above; returns the exit status."""
    STATE["debug"] = debug or os.environ.get("VOCADAPT_DEBUG", "") not in ("", "0")
    setup_logging(STATE["debug"])
    err = sys.stderr
    try:
        command = typer.main.get_command(app)
        command.invoke = _guard(command.invoke)
        rv = command.main(args=argv, standalone_mode=False)
        # In non-standalone mode click returns Exit codes instead of raising them (``--help``: 0).
        # A command that exits with a code has printed its own line; a Ctrl-C is never an exit
        # code (commands let KeyboardInterrupt through to the branch below), so nothing to add.
        return rv if isinstance(rv, int) else 0
    except CLICK.exceptions.ClickException as e:
        e.show()
        return e.exit_code
    except _ABORT:
        print("aborted", file=err)
        return EXIT_INTERRUPT
    except Interrupted as e:
        if _main_process():
            print(_one_line(str(e)), file=err)
        return EXIT_INTERRUPT
    except KeyboardInterrupt:
        if _main_process():
            print(NOTHING_WRITTEN, file=err)
        return EXIT_INTERRUPT
    except _EXIT as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except Exception as e:  # noqa: BLE001 - the contract's last line
        from vocadapt.errors import VocadaptError

        if isinstance(e, VocadaptError):
            print(f"error: {_one_line(str(e))}", file=err)
            return EXIT_USAGE
        what = f"unexpected {type(e).__name__}" + (f": {_one_line(str(e))}" if str(e) else "")
        if STATE["debug"]:
            traceback.print_exception(type(e), e, e.__traceback__, file=err)
            print(f"error: {what}", file=err)
        else:
            path = _crash_file(e)
            where = f"full traceback in {path}" if path else "rerun with --debug for the traceback"
            print(f"error: {what} ({where}; please report it)", file=err)
        return EXIT_BUG
