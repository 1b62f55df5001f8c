"""``vocadapt helper train``: a small causal LM with the target tokenizer, for ``--method regression``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    helper_app = typer.Typer(help="Helper models for linear-regression transfer (init --method regression).", no_args_is_help=True)
    app.add_typer(helper_app, name="helper")

    from vocadapt.options import with_config
    from vocadapt.train.scratch import HelperConfig

    @helper_app.command("train")
    @with_config(HelperConfig)
    def train(
        target_tokenizer: Path = typer.Argument(..., help="the target tokenizer (directory or tokenizer.json)"),
        corpus: list[Path] = typer.Argument(..., help="target-language text: files, directories, .gz or JSONL"),
        out: Path = typer.Option(..., "--out", help="run directory; the helper is written to OUT/model (OUT works as a model dir)"),
        eval_text: Optional[list[Path]] = typer.Option(None, "--eval-text", help="held-out text scored in bits per byte during training"),
        resume: bool = typer.Option(False, "--resume", help="continue the run in OUT from its latest checkpoint"),
        config: HelperConfig = None,
    ) -> None:
        """Train a small Llama from scratch with TARGET_TOKENIZER on CORPUS (the regression's helper)."""
        from vocadapt.train.scratch import train_helper

        r = train_helper(target_tokenizer, corpus, out, config, eval_text=eval_text or None, resume=resume)
        bpb = f", held-out {r.final_bpb:.3f} bits/byte" if r.final_bpb is not None else ""
        typer.echo(f"helper: {r.parameters / 1e6:.1f}M parameters, {r.steps} steps, {r.tokens} tokens in {r.seconds:.0f} s{bpb}")
        typer.echo(f"wrote {r.model_dir}")
