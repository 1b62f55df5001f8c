"""``vocadapt tokenizer``: train, extend, optimize, stats (thin wrappers over vocadapt.tokenizer)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

def _print_summary(title: str, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        if key in ("tokenizer_json", "new_tokens", "new_to_old"):
            continue
        if key == "corpus":
            value = f"{value['documents']} docs, {value['characters']} chars" + (
                f", {value['skipped_lines']} bad lines skipped" if value["skipped_lines"] else ""
            )
        elif key == "check_text":
            value = f"{value['tokens_before']} -> {value['tokens_after']} tokens ({value['increase_pct']:+.2f}%)"
        table.add_row(key, str(value))
    Console().print(table)


def register(app: typer.Typer) -> None:
    tok_app = typer.Typer(help="Build and measure tokenizers for the target language.", no_args_is_help=True)
    app.add_typer(tok_app, name="tokenizer")

    from vocadapt.options import with_config
    from vocadapt.tokenizer import ExtendConfig, OptimizeConfig, TrainConfig

    @tok_app.command("train")
    @with_config(TrainConfig)
    def train(
        corpus: list[Path] = typer.Argument(..., help="text files, directories, .gz or JSONL"),
        out: Path = typer.Option(..., "--out", help="output directory"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty output directory"),
        config: TrainConfig = None,
    ) -> None:
        """Train a new BPE or Unigram tokenizer on the target corpus."""
        from vocadapt.tokenizer import train_tokenizer

        _print_summary(f"trained {out}", train_tokenizer(corpus, out=out, config=config, overwrite=overwrite))

    @tok_app.command("extend")
    @with_config(ExtendConfig, required=("add",))
    def extend(
        source: Path = typer.Argument(..., help="source model or tokenizer directory"),
        corpus: list[Path] = typer.Argument(..., help="text files, directories, .gz or JSONL"),
        out: Path = typer.Option(..., "--out", help="output directory"),
        check_text: Optional[list[Path]] = typer.Option(None, "--check-text", help="text that must not get much longer (English, code)"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty output directory"),
        config: ExtendConfig = None,
    ) -> None:
        """Append tokens learned on the corpus to the source tokenizer (old ids unchanged)."""
        from vocadapt.tokenizer import extend_tokenizer

        result = extend_tokenizer(source, corpus, out=out, config=config, check_text=check_text, overwrite=overwrite)
        _print_summary(f"extended {out}", result)

    @tok_app.command("optimize")
    @with_config(OptimizeConfig, required=("keep", "add"))
    def optimize(
        source: Path = typer.Argument(..., help="source model or tokenizer directory (BPE)"),
        corpus: list[Path] = typer.Argument(..., help="text files, directories, .gz or JSONL"),
        out: Path = typer.Option(..., "--out", help="output directory"),
        check_text: Optional[list[Path]] = typer.Option(None, "--check-text", help="text to measure the length change on"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty output directory"),
        config: OptimizeConfig = None,
    ) -> None:
        """Keep the K source tokens most used on the corpus, then append M new ones."""
        from vocadapt.tokenizer import optimize_tokenizer

        result = optimize_tokenizer(source, corpus, out=out, config=config, check_text=check_text, overwrite=overwrite)
        _print_summary(f"optimized {out}", result)

    @tok_app.command("stats")
    def stats(
        tokenizers: list[Path] = typer.Argument(..., help="tokenizer or model directories"),
        text: list[Path] = typer.Option(..., "--text", help="held-out text files"),
        reference: Optional[Path] = typer.Option(None, "--reference", help="tokenizer to measure vocabulary overlap with"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="also write the rows as JSON here"),
        text_field: str = typer.Option("text", "--text-field", help="JSONL field holding the text"),
    ) -> None:
        """Compression and vocabulary statistics, one row per tokenizer."""
        from rich.console import Console

        from vocadapt.tokenizer import tokenizer_stats
        from vocadapt.tokenizer.stats import stats_json, stats_table

        rows = tokenizer_stats(tokenizers, text, reference=reference, text_field=text_field)
        Console().print(stats_table(rows))
        if json_out is not None:
            json_out.write_text(stats_json(rows) + "\n", encoding="utf-8")
