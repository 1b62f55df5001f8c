"""``vocadapt run RECIPE`` and ``vocadapt demo``: a whole adaptation run from one YAML file."""

from __future__ import annotations

from pathlib import Path

import typer

from vocadapt.cli.evaluate import print_summary


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        recipe: Path = typer.Argument(..., help="YAML recipe (see recipes/ and `vocadapt demo --show`)."),
        out: Path = typer.Option(None, "--out", help="Override the recipe's output folder."),
    ) -> None:
        """Run a whole adaptation from a YAML recipe: tokenizer, init methods, eval, report."""
        from vocadapt.recipe import load_recipe, run_recipe

        r = load_recipe(recipe, out)
        print_summary(run_recipe(r, echo=typer.echo)["models"], "held-out target text")
        typer.echo(f"results in {r.out}")

    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("out/demo"), "--out", help="Output folder."),
        show: bool = typer.Option(False, "--show", help="Print the demo recipe and exit."),
    ) -> None:
        """Adapt SmolLM2-135M-Instruct to Russian on the offline assets and print the table."""
        from vocadapt.recipe import demo_recipe_path, load_recipe, run_recipe

        if show:
            typer.echo(demo_recipe_path().read_text(encoding="utf-8"))
            return
        r = load_recipe(demo_recipe_path(), out)
        print_summary(run_recipe(r, echo=typer.echo)["models"], "held-out target text")
        typer.echo(f"results in {r.out} (report: {r.out / 'report.html'})")
