"""``vocadapt init`` and ``vocadapt methods``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command(
        "init",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def init(
        ctx: typer.Context,
        source_model: Path = typer.Argument(..., help="Source model: HF directory (safetensors) or .gguf file."),
        target_tokenizer: Path = typer.Argument(..., help="Target tokenizer directory or tokenizer.json."),
        out_dir: Path = typer.Argument(..., help="Output model directory (written atomically)."),
        method: str = typer.Option("mean", "--method", "-m", help="Init method; see `vocadapt methods`."),
        seed: int = typer.Option(0, help="Seed of every random draw (local generators only)."),
        pad_to: int = typer.Option(None, "--pad-to", help="Pad the vocabulary to a multiple of this (e.g. 64)."),
        overwrite: bool = typer.Option(False, help="Replace an existing non-empty OUT_DIR."),
        fallback: str = typer.Option("random", help="Rows a method has no signal for: random, or mean (FVT mean of the decomposition)."),
    ) -> None:
        """Give SOURCE_MODEL the TARGET_TOKENIZER and initialize the new embedding rows.

        Method options follow as --name value (see `vocadapt methods`).
        """
        from rich.console import Console
        from rich.table import Table

        from vocadapt.init import get_method, init_embeddings
        from vocadapt.options import parse_options

        spec = get_method(method)
        _check_typos(ctx, spec.config)
        options = parse_options(list(ctx.args), spec.config, method)
        report = init_embeddings(
            source_model, target_tokenizer, out_dir, method,
            seed=seed, pad_to_multiple_of=pad_to, overwrite=overwrite, options=options, fallback=fallback,
        )
        table = Table(title=f"{method}: {report.source_rows} -> {report.target_rows} rows ({report.seconds:.1f} s)")
        cols = ("copied", "computed", "fallback_mean", "fallback", "padding")
        table.add_column("matrix")
        for col in cols:
            table.add_column(col.replace("_", " "), justify="right")
        for matrix, c in report.counts.items():
            table.add_row(matrix, *(str(c[k]) for k in cols))
        Console().print(table)
        for name, per_matrix in report.stats.items():  # a method's own figures (e.g. regression's fit)
            for matrix, stats in per_matrix.items():
                shown = (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items() if not isinstance(v, dict))
                typer.echo(f"{name} {matrix}: " + ", ".join(shown))
        typer.echo(f"wrote {report.out_dir}")

    def _check_typos(ctx: typer.Context, config: type) -> None:
        """Method options pass through unparsed; a near-miss of init's own options (--sed) is a typo."""
        import dataclasses

        from vocadapt.errors import VocadaptError, did_you_mean

        own = [o for p in ctx.command.params for o in getattr(p, "opts", []) if o.startswith("--")]
        fields = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(config) if f.init}
        for arg in ctx.args:
            name = arg.split("=", 1)[0]
            hint = did_you_mean(name, own) if name.startswith("--") and name not in fields else ""
            if hint:
                raise VocadaptError(f"no such option: {name}{hint}")

    @app.command("methods")
    def methods_cmd(
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Also list each method's options."),
    ) -> None:
        """List the registered init methods with their papers, extras and options."""
        from rich.console import Console
        from rich.table import Table

        from vocadapt.init import methods
        from vocadapt.options import describe

        table = Table(title="init methods")
        for col in ("method", "what it does", "paper", "extras"):
            table.add_column(col)
        for name, spec in sorted(methods().items()):
            table.add_row(name, spec.summary, spec.paper, ", ".join(spec.extras) or "-")
        console = Console()
        console.print(table)
        if verbose:
            for name, spec in sorted(methods().items()):
                rows = describe(spec.config)
                if rows:
                    t = Table(title=f"{name} options")
                    for col in ("option", "default", "help"):
                        t.add_column(col)
                    for r in rows:
                        t.add_row(*r)
                    console.print(t)
