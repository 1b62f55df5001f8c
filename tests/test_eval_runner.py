"""End to end on tiny models: `vocadapt eval` writes results, `vocadapt report` draws the page."""

from __future__ import annotations

import json

import pytest

from test_eval_tasks import FORTUNES
from vocadapt.cli import main
from vocadapt.errors import VocadaptError
from vocadapt.evaluate.report import build_report
from vocadapt.evaluate.runner import EvalConfig, evaluate, resolve_tasks
from vocadapt.provenance import read_provenance, write_provenance

SMALL = EvalConfig(n_copy_sentences=2, n_copy_paragraphs=1, n_choice=3, n_speed_prompts=1, speed_new_tokens=4,
                   copy_max_new_tokens=12, summary_new_tokens=8,
                   progress=False)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    p = tmp_path_factory.mktemp("text") / "heldout.txt"
    docs = FORTUNES * 2 + [" ".join(FORTUNES[:3])]  # the last one is long enough for paragraph copy
    p.write_text("\n%\n".join(docs) + "\n", encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory, tiny_dir, tiny_dir_b, held_out):
    data = tmp_path_factory.mktemp("data")
    (data / "summary-toy.jsonl").write_text(
        json.dumps({"text": FORTUNES[0], "summary": "умный гору обойдёт"}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("eval") / "ev"
    from vocadapt.corpus import read_texts

    evaluate([tiny_dir, tiny_dir_b], read_texts([held_out]), ["bpb", "copy", "choice", "summary", "speed"], data, out,
             SMALL, text_paths=[held_out])
    return out


def test_eval_writes_results_per_model_and_summary(eval_dir):
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["tiny-a", "tiny-b"]
    for m in summary["models"]:
        row = m["metrics"]
        for key in ("bits_per_byte", "chars_per_token", "copy_sentence", "copy_paragraph",
                    "choice-completion.acc_label", "choice-completion.f1_option", "summary-toy.rougeL",
                    "tokens_per_s", "chars_per_s", "read_chars_per_s", "read_tokens_per_s", "score",
                    "copy_sentence_match", "copy_paragraph_match"):
            assert key in row, key
        mains = [row["copy_sentence"], row["copy_paragraph"], row["choice-completion.acc_label"], row["summary-toy.rougeL"]]
        assert row["score"] == pytest.approx(sum(mains) / 4)  # micro-average over datasets
        for task in ("bpb", "copy", "choice-completion", "summary-toy", "speed"):
            res = json.loads((eval_dir / m["model"] / f"{task}.json").read_text())
            assert res["dataset"] == task and "metrics" in res
    assert "| tiny-a |" in (eval_dir / "summary.md").read_text()
    prov = read_provenance(eval_dir)
    assert prov["step"] == "eval" and "model:tiny-a" in prov["inputs"]


def test_bad_inputs(tmp_path, tiny_dir, held_out):
    with pytest.raises(VocadaptError, match="did you mean 'choice'"):
        resolve_tasks(["chioce"])
    with pytest.raises(VocadaptError, match="needs held-out text"):
        evaluate([tiny_dir], [" ", ""], ["bpb"], None, tmp_path / "o", SMALL)
    with pytest.raises(VocadaptError, match="model directory not found"):
        evaluate([tmp_path / "missing"], ["x"], ["bpb"], None, tmp_path / "o", SMALL)
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "choice-bad.jsonl").write_text('{"question": "q", "options": ["a", "b"]}\n')
    with pytest.raises(VocadaptError, match=r"choice-bad.jsonl:1: missing field answer"):
        evaluate([tiny_dir], ["x"], ["choice"], bad, tmp_path / "o", SMALL)
    with pytest.raises(VocadaptError, match="summary"):
        evaluate([tiny_dir], ["x"], ["summary"], None, tmp_path / "o", SMALL)


def test_cli_eval_and_errors(tmp_path, tiny_dir, held_out, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tiny_dir), "--text", str(held_out), "--tasks", "bpb,sped", "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "did you mean 'speed'" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tiny_dir), "--text", str(empty), "--tasks", "bpb", "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "empty" in capsys.readouterr().err
    main(["eval", str(tiny_dir), "--text", str(held_out), "--tasks", "bpb", "--out", str(tmp_path / "o2")])
    assert "bits_per_byte" in capsys.readouterr().out
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["models"][0]["metrics"]["bits_per_byte"] > 0


def test_report_html_and_markdown_with_plots(tmp_path, eval_dir):
    run = tmp_path / "init-mean"
    run.mkdir()
    write_provenance(run, "init", {"method": "mean"}, results={"counts": {"copied": 10, "computed": 5, "fallback": 1}})
    (run / "train_log.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 5.0 / (s + 1), "bpb": 3.0 - s * 0.1, "tokens": s * 1000}) + "\n"
        for s in range(10)))
    page = build_report([eval_dir, run], tmp_path / "rep" / "report.html")
    text = page.path.read_text().replace("<wbr>", "")  # header line-break hints
    assert "tiny-a" in text and "init-mean" in text and "bits_per_byte" in text and "init.copied" in text
    names = sorted(p.name for p in page.images)
    assert names == ["bits_per_byte.png", "bpb.png", "bpb_by_tokens.png", "chars_per_s.png", "chars_per_token.png", "loss.png", "read_chars_per_s.png"]
    for p in page.images:
        assert p.read_bytes()[:4] == b"\x89PNG" and f"report_files/{p.name}" in text
    md = build_report([eval_dir], tmp_path / "rep" / "report.md")
    assert "| ev/tiny-a |" in md.path.read_text() and "![characters per token](report_files/chars_per_token.png)" \
        in md.path.read_text()
    with pytest.raises(VocadaptError, match="nothing to report"):
        build_report([tmp_path / "rep"], tmp_path / "x.html")


def test_max_chars_is_a_character_budget_over_leading_documents(tmp_path, tiny_dir):
    from vocadapt.corpus import take_chars

    assert take_chars(["abcd", "efgh", "ij"], 6) == ["abcd", "ef"]
    assert take_chars(["abcd", "efgh"], None) == ["abcd", "efgh"]
    assert take_chars(["abcd", "efgh"], 4) == ["abcd"]
    docs = [FORTUNES[0] * 5, FORTUNES[1]]
    cfg = EvalConfig(max_chars=50, progress=False)
    summary = evaluate([tiny_dir], docs, ["bpb"], None, tmp_path / "ev", cfg)
    res = json.loads((tmp_path / "ev" / "tiny-a" / "bpb.json").read_text())
    assert res["metrics"]["n_bytes"] == len(docs[0][:50].encode("utf-8"))
    assert summary["models"][0]["metrics"]["bits_per_byte"] > 0


def test_copy_match_metric_says_whether_the_text_was_copied():
    from vocadapt.evaluate.copy_task import char_match, sentence_score

    ref = "Не спи на рельсах, простудишься."
    wrong = "не не не не не не не не не не не"  # the right length, the wrong words
    assert sentence_score(len(wrong), len(ref)) > 0.9  # DaruCopy's length score cannot tell
    assert char_match(wrong, ref) < 0.3 and char_match(ref, ref) == 1.0
