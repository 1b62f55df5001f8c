"""``vocadapt propagate`` and ``vocadapt calibrate`` (thin wrappers over vocadapt.propagate)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from vocadapt.options import with_config
    from vocadapt.propagate import CalibrateConfig, PropagateConfig

    @app.command("propagate")
    @with_config(PropagateConfig)
    def propagate_cmd(
        base: Path = typer.Option(..., "--base", help="original base model (HF directory or .gguf)"),
        instruct: Path = typer.Option(..., "--instruct", help="instruct model made from the base (same shapes)"),
        adapted: Path = typer.Option(..., "--adapted", help="adapted base: new tokenizer, learned rows (vocadapt init + train)"),
        out: Path = typer.Option(..., "--out", help="output model directory (written atomically)"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty output directory"),
        config: PropagateConfig = None,
    ) -> None:
        """Give the INSTRUCT model the ADAPTED base's vocabulary (Learned Embedding Propagation)."""
        from rich.console import Console
        from rich.table import Table

        from vocadapt.propagate import propagate

        report = propagate(base, instruct, adapted, out, config, overwrite=overwrite)
        table = Table(title=f"propagate ({report.method}): {report.rows} rows, {report.seconds:.1f} s")
        for col in ("matrix", "fit tokens", "residual (relative)", "measured on"):
            table.add_column(col, justify="right")
        for matrix, fit in report.fits.items():
            table.add_row(matrix, str(fit.fit_tokens), f"{fit.residual:.4f}", f"{fit.residual_tokens} tokens")
        Console().print(table)
        typer.echo(f"instruct rows kept for {report.kept_instruct_rows} special tokens"
                   + (f" ({len(report.appended_tokens)} appended: {', '.join(report.appended_tokens)})" if report.appended_tokens else ""))
        if report.grafted_tokens:
            typer.echo(f"kept text: {len(report.grafted_tokens)} base pieces grafted with their instruct rows")
        if report.body_deltas:
            typer.echo(f"decoder layers: the instruct model's plus the adapted base's change in {len(report.body_deltas)} "
                       "tensors (--body delta)")
        if report.kept_text_differs:
            typer.echo(f"kept text still split unlike the base: {report.kept_text_differs}")
        typer.echo(f"wrote {report.out_dir}")

    @app.command("calibrate")
    @with_config(CalibrateConfig)
    def calibrate_cmd(
        model_dir: Path = typer.Argument(..., help="propagated instruct model (or a run directory)"),
        instructions: Optional[list[Path]] = typer.Option(None, "--instructions", help='JSONL of {"messages": [...]} conversations'),
        copy_text: Optional[list[Path]] = typer.Option(None, "--copy-text", help="target-language text for copy-task examples"),
        out: Path = typer.Option(..., "--out", help="run directory (the model lands in OUT/model)"),
        resume: bool = typer.Option(False, "--resume", help="continue the run in OUT from its last checkpoint"),
        config: CalibrateConfig = None,
    ) -> None:
        """Short LoRA fine-tune on instruction data plus copy-task examples; merged or kept as an adapter."""
        from vocadapt.propagate import calibrate

        result = calibrate(model_dir, out, config, instructions=instructions, copy_text=copy_text, resume=resume)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
        typer.echo(f"calibrated {result.steps} steps on {result.examples}" + (f"; {shown}" if shown else ""))
        typer.echo(f"wrote {result.model_dir}")
