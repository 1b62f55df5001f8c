"""The lm-evaluation-harness bridge, run for real on a local task (no hub)."""

from __future__ import annotations

import json

import pytest

from vocadapt.cli import main

TASK = """task: vocadapt_tiny_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""

ITEMS = [
    {"question": "Умный в гору не пойдёт, умный гору", "choices": [" обойдёт.", " съест.", " купит."], "answer": 0},
    {"question": "The quick brown fox jumps over the lazy", "choices": [" dog.", " cat.", " car."], "answer": 0},
    {"question": "A bird in the hand is worth two in the", "choices": [" bush.", " sea.", " hat."], "answer": 0},
]


@pytest.fixture()
def local_task(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ITEMS), encoding="utf-8")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny.yaml").write_text(TASK.format(data=data), encoding="utf-8")
    return tasks


def test_lm_eval_bridge_runs_a_local_task(tiny_dir, local_task, tmp_path):
    out = tmp_path / "eval"
    main(["eval", str(tiny_dir), "--lm-eval", "vocadapt_tiny_choice", "--lm-eval-tasks", str(local_task), "--out", str(out)])
    written = json.loads((out / tiny_dir.name / "lm_eval.json").read_text())
    metrics = written["results"]["vocadapt_tiny_choice"]
    assert metrics["sample_len"] == 3
    assert 0.0 <= metrics["acc,none"] <= 1.0


def test_lm_eval_unknown_task_is_one_line(tiny_dir, local_task, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tiny_dir), "--lm-eval", "vocadapt_tiny_choise", "--lm-eval-tasks", str(local_task), "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown lm-eval task 'vocadapt_tiny_choise'") and "did you mean 'vocadapt_tiny_choice'" in err
