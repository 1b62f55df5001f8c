"""Training curves of several runs on one figure: the seed papers' comparison of init methods.

Four panels: training loss and held-out bits per byte, each against optimizer step and against
tokens seen; one curve per run, labelled with the init method its model came from.
"""

from __future__ import annotations

from pathlib import Path

from vocadapt.errors import VocadaptError


def run_label(run_dir: Path) -> str:
    """'<init method> (<run name>)', or the run name for a model vocadapt did not initialize."""
    from vocadapt.train.export import init_method

    model = Path(run_dir) / "model"
    method = init_method(model) if model.is_dir() else None
    if method is None:
        ckpts = sorted((Path(run_dir) / "checkpoints").glob("step-*/model"))
        method = init_method(ckpts[-1]) if ckpts else None
    name = Path(run_dir).name
    return f"{method} ({name})" if method and method != name else name


def read_log(run_dir: Path) -> list[dict]:
    from vocadapt.corpus import iter_jsonl_records

    path = Path(run_dir) / "train_log.jsonl"
    if not path.is_file():
        raise VocadaptError(f"{run_dir}: no train_log.jsonl; is it a `vocadapt train` run directory?")
    return [row for _, row in iter_jsonl_records(path)]


def plot_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Draw the curves of ``run_dirs`` into the image ``out`` (format from its suffix); returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {run_label(Path(d)): read_log(Path(d)) for d in run_dirs}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=110)
    panels = [("loss", "training loss (nats/token)"), ("bpb", "held-out bits per byte")]
    for row, (key, ylabel) in enumerate(panels):
        for col, (x, xlabel) in enumerate((("step", "step"), ("tokens", "tokens seen"))):
            ax = axes[row][col]
            for label, log in runs.items():
                pts = [(r[x], r[key]) for r in log if r.get(key) is not None and x in r]
                if pts:
                    ax.plot(*zip(*pts), label=label, marker="o" if len(pts) < 20 else None, markersize=3)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
