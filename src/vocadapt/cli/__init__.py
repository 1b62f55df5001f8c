"""The ``vocadapt`` command line: a thin layer over the Python API.

Each subcommand parses its options, calls one public function, and prints a short summary.
Subcommand groups live in sibling modules that expose ``register(app)``. What each kind of
mistake prints, and its exit status, is the contract in :mod:`vocadapt.cli._contract`.
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
_COMMAND_MODULES = ["assets", "tokenizer", "vectors", "helper", "hypernet", "init", "train", "propagate", "evaluate", "demo"]

for _name in _COMMAND_MODULES:
    importlib.import_module(f"vocadapt.cli.{_name}").register(app)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Print the full traceback of an unexpected error (also: VOCADAPT_DEBUG=1)."),
) -> None:
    from vocadapt.cli import _contract

    if debug:
        _contract.STATE["debug"] = True
        _contract.setup_logging(debug=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command; any failure exits with the contract's status."""
    from vocadapt.cli._contract import run_app

    code = run_app(app, argv)
    if code:
        sys.exit(code)
