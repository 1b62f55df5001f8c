"""Bridge to EleutherAI's lm-evaluation-harness, imported only when asked for.

``vocadapt eval MODEL --lm-eval arc_easy,hellaswag`` runs the harness's own ``hf`` backend on
the model directory and writes its results beside ours. lm-eval is an optional extra
(``pip install 'vocadapt[lm-eval]'``); without it this is a one-line error, not an ImportError.
"""

from __future__ import annotations

import json
from pathlib import Path

from vocadapt.errors import VocadaptError


def run_lm_eval(model_dir: str | Path, tasks: list[str], out: str | Path, *, batch_size: int = 8,
                limit: int | None = None, dtype: str = "float32", device: str = "cpu",
                include_path: str | Path | None = None) -> dict:
    """Run lm-eval ``tasks`` on ``model_dir``; writes ``out/<model>/lm_eval.json``, returns its
    ``results`` mapping {task: {metric: value}}.

    ``include_path`` is a folder of task YAMLs of one's own: with ``dataset_path: json`` and local
    ``data_files`` they run without any hub (see ``docs/tasks.md``). The harness's built-in tasks
    download their datasets from the Hugging Face hub, so they need one.
    """
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as e:
        raise VocadaptError("--lm-eval needs lm-evaluation-harness: pip install 'vocadapt[lm-eval]'") from e
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise VocadaptError(f"model directory not found: {model_dir}")
    if include_path is not None and not Path(include_path).is_dir():
        raise VocadaptError(f"lm-eval task folder not found: {include_path}")
    manager = TaskManager(include_path=str(include_path)) if include_path else TaskManager()
    known = set(manager.all_tasks)
    for t in tasks:
        if t not in known:
            from vocadapt.errors import did_you_mean

            raise VocadaptError(f"unknown lm-eval task {t!r}{did_you_mean(t, known)}")
    res = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype={dtype}",
        tasks=tasks,
        batch_size=batch_size,
        device=device,
        limit=limit,
        task_manager=manager,
    )
    results = res.get("results", {}) if res else {}
    dest = Path(out) / model_dir.name
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "lm_eval.json").write_text(json.dumps({"results": results, "configs": res.get("configs", {})},
                                                  indent=2, default=str) + "\n", encoding="utf-8")
    return results
