"""``vocadapt run RECIPE`` and ``vocadapt demo``: a whole adaptation run from one YAML file."""

from __future__ import annotations

from pathlib import Path

import typer


def _print_plan(plan) -> None:
    from rich.console import Console
    from rich.table import Table

    from vocadapt.recipe import describe_plan

    table = Table(title=f"plan for {plan.recipe.out}")
    for col in ("stage", "action", "why"):
        table.add_column(col)
    for sid, action, why in describe_plan(plan):
        table.add_row(sid, f"[bold]{action}[/]" if action == "run" else action, why)
    Console().print(table)


_SHORT = {"chars_per_token": "chars/token", "init_s": "init s", "init_peak_gib": "init peak GiB",
          "train_tokens_per_s": "train tok/s", "copy_sentence": "copy sent. (length)",
          "copy_sentence_match": "copy sent. (chars)", "copy_paragraph": "copy para."}


def print_leaderboard(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from vocadapt.evaluate.runner import fmt

    console = Console()
    if not console.is_terminal:  # a log file or pipe: rich's default 80 columns would fold every header
        console = Console(width=200)
    for part, title in (("leaderboard", "leaderboard: init methods (bits per byte: lower is better)"),
                        ("instruct", "instruct model: propagation and calibration")):
        rows = summary.get(part) or []
        if not rows:
            continue
        cols = list(dict.fromkeys(k for r in rows for k in r))
        table = Table(title=title)
        for c in cols:
            # Short headers that fold rather than end in "…": an 80-column terminal (or a pipe)
            # must still show which column is which.
            table.add_column(_SHORT.get(c, c), justify="left" if c == "model" else "right", overflow="fold",
                             no_wrap=c == "model")
        for r in rows:
            table.add_row(*[fmt(r.get(c)) for c in cols])
        console.print(table)


def _run(recipe_path: Path, out: Path | None, dry_run: bool, validate: bool, only: list[str], force: list[str]) -> None:
    from vocadapt.recipe import load_recipe, plan_recipe, run_recipe, validate_recipe

    if validate:
        r = load_recipe(recipe_path, out, fetch=False)
        notes = validate_recipe(r)
        from vocadapt.recipe.plan import build_plan

        n = len(build_plan(r).stages)
        typer.echo(f"{recipe_path}: valid ({len(r.init)} init methods, {n} stages)")
        for note in notes:
            typer.echo(f"note: {note}")
        return
    r = load_recipe(recipe_path, out)
    if dry_run:
        _print_plan(plan_recipe(r, force=tuple(force), only=tuple(only)))
        return
    summary = run_recipe(r, echo=typer.echo, force=tuple(force), only=tuple(only))
    print_leaderboard(summary)
    report = r.out / "report.html"
    typer.echo(f"results in {r.out}" + (f" (report: {report}, leaderboard: {r.out / 'leaderboard.md'})" if report.exists() else ""))


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        recipe: Path = typer.Argument(..., help="YAML recipe (see recipes/ and `vocadapt demo --show`)."),
        out: Path = typer.Option(None, "--out", help="Override the recipe's output folder."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (what runs, what is reused, and why) and exit."),
        validate: bool = typer.Option(False, "--validate", help="Check the recipe, its paths and options; run and fetch nothing."),
        only: list[str] = typer.Option([], "--only", help="Run only these stages (a kind such as train, or an id such as init:mean)."),
        force: list[str] = typer.Option([], "--force", help="Rerun these stages (and what depends on them) even if done."),
    ) -> None:
        """Run a whole adaptation from a YAML recipe: tokenizer, init, train, propagate, calibrate, eval, report."""
        _run(recipe, out, dry_run, validate, only, force)

    @app.command("demo")
    def demo(
        out: Path = typer.Option(None, "--out", help="Output folder (default out/demo, or out/demo-quick with --quick)."),
        quick: bool = typer.Option(False, "--quick", help="The small demo: about 10 minutes on a 2-core CPU."),
        show: bool = typer.Option(False, "--show", help="Print the demo recipe and exit."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and exit."),
    ) -> None:
        """Adapt SmolLM2-135M-Instruct to Russian on the offline assets; print the leaderboard."""
        from vocadapt.recipe import demo_recipe_path

        path = demo_recipe_path(quick)
        if show:
            typer.echo(path.read_text(encoding="utf-8"))
            return
        _run(path, out, dry_run, False, [], [])
