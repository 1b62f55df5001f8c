"""``vocadapt train`` (embedding-only continued pretraining) and ``vocadapt plot`` (its curves)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from vocadapt.options import with_config
    from vocadapt.train.lm import TrainConfig

    @app.command("train")
    @with_config(TrainConfig)
    def train(
        model_dir: Path = typer.Argument(..., help="model to train: an init output, any HF causal LM, or a run directory"),
        corpus: list[Path] = typer.Argument(..., help="training text: files, directories, .gz or JSONL"),
        out: Path = typer.Option(..., "--out", help="run directory (log, checkpoints, final model in RUN_DIR/model)"),
        eval_text: Optional[list[Path]] = typer.Option(None, "--eval-text", help="held-out text scored in bits per byte (repeatable)"),
        resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its latest checkpoint"),
        config: TrainConfig = None,
    ) -> None:
        """Continue pretraining MODEL_DIR on CORPUS with only the embeddings trainable.

        Runs on CPU, one GPU, or many processes: `accelerate launch -m vocadapt train ...`.
        """
        from vocadapt.train import train_embeddings

        # Ctrl-C: the engine's KeyboardInterrupt names the checkpoint; the CLI contract prints it.
        result = train_embeddings(model_dir, corpus, out, config, eval_text=eval_text or None, resume=resume)
        if _is_main():
            bpb = "-" if result.final_bpb is None else f"{result.final_bpb:.4f}"
            from rich.console import Console
            from rich.table import Table

            table = Table(title=f"trained {result.model_dir}", show_header=False)
            for key, value in {
                "steps": f"{result.steps}{' (stopped early)' if result.stopped_early else ''}",
                "tokens seen": f"{result.tokens:,}", "tokens/s": f"{result.tokens_per_s:,.0f}",
                **({"model of step": f"{result.model_step} (the lowest held-out loss)"}
                   if result.model_step not in (None, result.steps) else {}),
                "held-out bits per byte": bpb, "log": result.run_dir / "train_log.jsonl",
            }.items():
                table.add_row(key, str(value))
            Console().print(table)

    @app.command("plot")
    def plot(
        run_dirs: list[Path] = typer.Argument(..., help="run directories of `vocadapt train`"),
        out: Path = typer.Option(..., "--out", help="image file to write (.png, .svg, .pdf)"),
    ) -> None:
        """Loss and held-out bits per byte against step and tokens seen, one curve per run."""
        from vocadapt.train.plot import plot_runs

        typer.echo(f"wrote {plot_runs(run_dirs, out)}")


def _is_main() -> bool:
    """Whether this is the main process of an `accelerate launch` (or a plain run)."""
    return int(os.environ.get("RANK", "0")) == 0
