"""``vocadapt eval`` and ``vocadapt report``: parse, call one public function, print a table."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("report")(report_cmd)


def eval_cmd(
    model_dirs: list[Path] = typer.Argument(..., help="Hugging Face model directories to evaluate."),
    text: list[Path] = typer.Option(None, "--text", help="Held-out text: files, dirs, .gz, JSONL (repeatable)."),
    errors: str = typer.Option("fail", "--errors", help="Non-UTF-8 lines in --text: fail or skip."),
    tasks: str = typer.Option("bpb,copy,choice,speed", help="Comma-separated: bpb, copy, choice, summary, speed."),
    data: Path = typer.Option(None, "--data", help="Folder with task files choice*.jsonl, summary*.jsonl, ..."),
    out: Path = typer.Option(..., "--out", help="Output folder for results."),
    max_docs: int = typer.Option(None, help="Use only the first N held-out documents."),
    max_chars: int = typer.Option(None, help="Use at most N characters of held-out text (the last document cut)."),
    max_length: int = typer.Option(1024, help="Tokens per scoring window."),
    batch_size: int = typer.Option(8, help="Windows per forward pass."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16."),
    n_choice: int = typer.Option(40, help="Items of the built-in completion choice set."),
    copy_sentences: int = typer.Option(16, help="Sentences for the copy task."),
    copy_paragraphs: int = typer.Option(4, help="Paragraphs for the copy task."),
    speed_tokens: int = typer.Option(64, help="New tokens per speed prompt."),
    lemmatize: bool = typer.Option(False, help="ROUGE on pymorphy3 lemmas (Russian)."),
    lm_eval: str = typer.Option(None, "--lm-eval", help="Run these lm-evaluation-harness tasks instead."),
    limit: int = typer.Option(None, help="With --lm-eval: items per task."),
    lm_eval_tasks: Path = typer.Option(None, "--lm-eval-tasks", help="With --lm-eval: a folder of task YAMLs of your own (local data, no hub)."),
) -> None:
    """Score models: bits per byte, copy, multiple choice, summaries, speed."""
    from rich.console import Console

    from vocadapt.errors import VocadaptError

    from vocadapt.model import check_model_dir

    for d in model_dirs:  # before reading text or creating OUT: the cheapest mistakes first
        check_model_dir(d)
    console = Console()
    if lm_eval:
        from vocadapt.evaluate.lm_eval import run_lm_eval

        done = 0
        try:
            for d in model_dirs:
                res = run_lm_eval(d, [t for t in lm_eval.split(",") if t], out, batch_size=batch_size, limit=limit,
                                  dtype=dtype, include_path=lm_eval_tasks)
                done += 1
                for task, metrics in res.items():
                    console.print(f"{d.name} {task}: " + ", ".join(f"{k}={v}" for k, v in metrics.items()))
        except KeyboardInterrupt:
            if done:  # each model's lm_eval.json is written whole once its tasks finish
                raise KeyboardInterrupt(f"interrupted; lm-eval results of {done} of {len(model_dirs)} models kept in {out}") from None
            raise
        return
    from vocadapt.corpus import CorpusStats, read_texts
    from vocadapt.evaluate.runner import EvalConfig, evaluate

    stats = CorpusStats()
    texts = read_texts(text, errors=errors, stats=stats) if text else []
    if stats.skipped_lines:
        import logging

        logging.getLogger("vocadapt").warning(
            "skipped %d non-UTF-8 lines of --text (first: %s)", stats.skipped_lines, stats.skipped_examples[0])
    if not texts and any(t in tasks for t in ("bpb", "copy", "speed")) and not data:
        raise VocadaptError("give held-out text with --text")
    cfg = EvalConfig(max_length=max_length, batch_size=batch_size, dtype=dtype, max_docs=max_docs, max_chars=max_chars,
                     n_copy_sentences=copy_sentences, n_copy_paragraphs=copy_paragraphs, n_choice=n_choice,
                     lemmatize=lemmatize, speed_new_tokens=speed_tokens)
    summary = evaluate(model_dirs, texts, tasks.split(","), data, out, cfg, text_paths=text or [],
                       on_model_done=lambda n, r: console.print(f"[green]done[/] {n} in {r['seconds']} s"))
    print_summary(summary["models"])
    console.print(f"results in {out}/ (summary.json, summary.md)")


def report_cmd(
    dirs: list[Path] = typer.Argument(..., help="Eval, init or training output folders."),
    out: Path = typer.Option(Path("report.html"), "--out", help="report.html or report.md (PNG plots beside it)."),
    title: str = typer.Option("vocadapt report", help="Page title."),
) -> None:
    """One page that puts runs side by side: metrics table, loss / bpb curves, characters per token."""
    from rich.console import Console

    from vocadapt.evaluate.report import build_report

    page = build_report(dirs, out, title=title)
    Console().print(f"wrote {page.path} ({len(page.images)} plots, {len(page.rows)} rows)")


def print_summary(rows: list[dict], title: str | None = None) -> None:
    """One table row per model: characters per token and bits per byte first, then the rest."""
    from rich.console import Console
    from rich.table import Table

    from vocadapt.evaluate.runner import columns, fmt

    first = [c for c in ("chars_per_token", "bits_per_byte") if any(c in r["metrics"] for r in rows)]
    cols = first + [c for c in columns(rows) if c not in first]
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(r["model"], *[fmt(r["metrics"].get(c)) for c in cols])
    Console().print(table)
