"""The ``vocadapt`` command line: a thin layer over the Python API.

Each subcommand parses its options, calls one public function, and prints a short summary.
Subcommand groups live in sibling modules that expose ``register(app)``; a
:class:`~vocadapt.errors.VocadaptError` becomes one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="vocadapt",
    help="Adapt a pretrained language model to a new language by vocabulary surgery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Order is the order of the pipeline, which is also the order of `vocadapt --help`.
_COMMAND_MODULES = ["assets", "tokenizer", "vectors", "init", "evaluate", "demo"]
_COMMAND_MODULES.insert(_COMMAND_MODULES.index("evaluate"), "train")
_COMMAND_MODULES.insert(_COMMAND_MODULES.index("evaluate"), "hypernet")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"vocadapt.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    from vocadapt.errors import VocadaptError

    try:
        app(args=argv, standalone_mode=False)
    except VocadaptError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code or 0)
    except Exception as e:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            sys.exit(130)
        raise
