"""The ``vocadapt tokenizer`` CLI: thin wrappers, one-line errors, real-asset smoke test."""

from __future__ import annotations

import json

import pytest

from vocadapt.cli import main

RU = "Съешь же ещё этих мягких французских булок, да выпей чаю. Широкая электрификация южных губерний. "


def _cli(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "ru.txt"
    p.write_text("\n%\n".join(RU * (i % 3 + 1) + str(i) for i in range(40)), encoding="utf-8")
    return p


def test_cli_train_extend_stats(tmp_path, corpus, capsys):
    code, out, err = _cli(["tokenizer", "train", str(corpus), "--vocab-size", "340", "--out", str(tmp_path / "t")], capsys)
    assert code == 0, err
    code, out, err = _cli(["tokenizer", "extend", str(tmp_path / "t"), str(corpus), "--add", "30", "--out", str(tmp_path / "x")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "x" / "vocab_mapping.json").read_text())["new_to_old"][-1] is None
    code, out, err = _cli(["tokenizer", "optimize", str(tmp_path / "t"), str(corpus), "--keep", "320", "--add", "20",
                           "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    code, out, err = _cli(["tokenizer", "stats", str(tmp_path / "t"), str(tmp_path / "x"), str(tmp_path / "o"),
                           "--text", str(corpus), "--reference", str(tmp_path / "t"), "--json", str(tmp_path / "s.json")], capsys)
    assert code == 0, err
    rows = json.loads((tmp_path / "s.json").read_text())
    assert [r["vocab_size"] for r in rows] == [340, 370, 340]
    assert rows[1]["chars_per_token"] > rows[0]["chars_per_token"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "{c}", "--vocab-size", "10", "--out", "{o}"], "smaller than the alphabet"),
        (["train", "{c}", "--kind", "bpee", "--out", "{o}"], "did you mean 'bpe'"),
        (["extend", "{t}", "{c}", "--add", "0", "--out", "{o}"], "--add must be a positive"),
        (["train", "{e}", "--out", "{o}"], "corpus is empty"),
        (["extend", "{t}", "{c}", "--add", "5", "--out", "{o}"], "cannot be extended"),
        # BPE merges that cannot be continued: a part the vocabulary lacks, a merge of one piece.
        (["extend", "{b}", "{c}", "--add", "5", "--out", "{o}"], "merge 'a' + 'x' names a piece its vocabulary lacks"),
        (["extend", "{m}", "{c}", "--add", "5", "--out", "{o}"], "merges are malformed"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, corpus, capsys, args, message):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordLevel", "vocab": {}}}))
    (tmp_path / "e.txt").write_text("\n")
    vocab = {"a": 0, "b": 1, "ab": 2}
    for name, merges in (("b", [["a", "b"], ["a", "x"]]), ("m", [["a", "b"], ["ab"]])):
        (tmp_path / name).mkdir()
        bpe = {"model": {"type": "BPE", "vocab": vocab, "merges": merges}, "added_tokens": []}
        (tmp_path / name / "tokenizer.json").write_text(json.dumps(bpe))
    argv = ["tokenizer"] + [a.format(c=corpus, o=tmp_path / "o", t=tmp_path / "t", e=tmp_path / "e.txt",
                                     b=tmp_path / "b", m=tmp_path / "m") for a in args]
    code, out, err = _cli(argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.real
def test_real_smollm2_extend_slice(tmp_path):
    from vocadapt import assets
    from vocadapt.tokenizer import ExtendConfig, extend_tokenizer, tokenizer_stats

    model, ru = assets.smollm2(), assets.russian_text()
    r = extend_tokenizer(model, ru / "train.txt", out=tmp_path / "x",
                         config=ExtendConfig(add=1000, max_chars=300_000, show_progress=False))
    rows = tokenizer_stats([model, r["out"]], [ru / "heldout.txt"])
    assert rows[1]["vocab_size"] == 49152 + 1000
    assert rows[1]["chars_per_token"] > 1.5 * rows[0]["chars_per_token"]
