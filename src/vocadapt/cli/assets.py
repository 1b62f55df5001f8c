"""``vocadapt assets``: fetch the embedded default assets into the cache."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Fetch the offline default assets (model, texts, vectors) into the cache.", no_args_is_help=True)

    @group.command("fetch")
    def fetch(
        vectors: bool = typer.Option(False, "--vectors", help="Also fetch word vectors and the En-Ru dictionary."),
    ) -> None:
        """Download and unpack the default assets; print where they are."""
        from vocadapt import assets

        for name, path in assets.fetch_all(include_vectors=vectors).items():
            typer.echo(f"{name:18s} {path}")

    @group.command("path")
    def path() -> None:
        """Print the cache folder ($VOCADAPT_CACHE or ~/.cache/vocadapt)."""
        from vocadapt.cache import cache_dir

        typer.echo(str(cache_dir()))

    app.add_typer(group, name="assets")
