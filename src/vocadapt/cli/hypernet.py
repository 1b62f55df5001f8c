"""``vocadapt hypernet``: train HyperOFA's hypernetwork (reconstruction), then optionally through the LM loss."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from vocadapt.hypernet.lm import LmStageConfig
    from vocadapt.hypernet.train import HypernetConfig
    from vocadapt.options import with_config

    hn_app = typer.Typer(help="HyperOFA's hypernetwork: word sets -> embedding rows.", no_args_is_help=True)
    app.add_typer(hn_app, name="hypernet")

    @hn_app.command("train")
    @with_config(HypernetConfig, required=("vectors",))
    def train(
        source_model: Path = typer.Argument(..., help="source model: HF directory (safetensors) or .gguf"),
        out: Path = typer.Option(..., "--out", help="run directory; the hypernetwork is written to OUT/model"),
        resume: bool = typer.Option(False, "--resume", help="continue the run in OUT from its last checkpoint"),
        config: HypernetConfig = None,
    ) -> None:
        """Fit a hypernetwork to SOURCE_MODEL's token rows (OFA coordinates) from multilingual word vectors."""
        from vocadapt.hypernet.quality import format_report
        from vocadapt.hypernet.train import train_hypernet

        r = train_hypernet(source_model, out, config, resume=resume)
        typer.echo(format_report(r.quality))
        chosen = f" (the network of step {r.model_step}, the lowest val_loss)" if r.model_step not in (None, r.steps) else ""
        typer.echo(f"{r.steps} steps in {r.seconds:.1f} s{' (stopped early)' if r.stopped_early else ''}; "
                   f"wrote {out / 'model'}{chosen}")

    @hn_app.command("tune")
    @with_config(LmStageConfig, exclude=("trainable", "gradient_checkpointing"))
    def tune(
        hypernet: Path = typer.Argument(..., help="hypernetwork directory (or run directory) from `vocadapt hypernet train`"),
        model: Path = typer.Argument(..., help="model made by `vocadapt init ... --method hyperofa --hypernet HYPERNET`"),
        corpus: list[Path] = typer.Argument(..., help="target-language training text: files, directories, .gz or JSONL"),
        out: Path = typer.Option(..., "--out", help="run directory; the tuned hypernetwork is written to OUT/model"),
        eval_text: Optional[list[Path]] = typer.Option(None, "--eval-text", help="held-out text scored in bits per byte"),
        resume: bool = typer.Option(False, "--resume", help="continue the run in OUT from its last checkpoint"),
        config: LmStageConfig = None,
    ) -> None:
        """Train the hypernetwork through MODEL's own next-token loss (the model stays frozen)."""
        from vocadapt.hypernet.lm import tune_hypernet

        r = tune_hypernet(hypernet, model, corpus, out, config, eval_text=eval_text, resume=resume)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in r.metrics.items())
        typer.echo(f"{r.steps} steps, {r.tokens} tokens in {r.seconds:.1f} s; {shown}; wrote {out / 'model'}")
