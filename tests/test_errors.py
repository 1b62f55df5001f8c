"""Bad input gets one clear line, a non-zero exit, and nothing left in OUT_DIR."""

from __future__ import annotations

import json

import factories as fx
import pytest
import torch
from safetensors.torch import load_file, save_file

from vocadapt.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip()
    return e.value.code, err


def assert_clean_failure(code, err, out_dir, *needles):
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    assert not out_dir.exists()
    assert not any(p.name.startswith(f".{out_dir.name}.tmp") for p in out_dir.parent.iterdir())


def test_missing_source(tmp_path, target_tokenizers, capsys):
    out = tmp_path / "out"
    code, err = run_cli(["init", str(tmp_path / "nope"), str(target_tokenizers["byte_level"]), str(out)], capsys)
    assert_clean_failure(code, err, out, "model not found", "nope")


def test_missing_target_tokenizer(tmp_path, source_models, capsys):
    out = tmp_path / "out"
    code, err = run_cli(["init", str(source_models["gpt2-bytelevel-tied"]), str(tmp_path / "tok"), str(out)], capsys)
    assert_clean_failure(code, err, out, "target tokenizer not found")


def test_unknown_method_suggests_closest(tmp_path, source_models, target_tokenizers, capsys):
    out = tmp_path / "out"
    code, err = run_cli(
        ["init", str(source_models["gpt2-bytelevel-tied"]), str(target_tokenizers["byte_level"]), str(out), "--method", "maen"], capsys
    )
    assert_clean_failure(code, err, out, "unknown init method 'maen'", "did you mean 'mean'")


def test_unknown_method_option(tmp_path, source_models, target_tokenizers, capsys):
    out = tmp_path / "out"
    code, err = run_cli(
        ["init", str(source_models["gpt2-bytelevel-tied"]), str(target_tokenizers["byte_level"]), str(out), "--weightin", "length"], capsys
    )
    assert_clean_failure(code, err, out, "no option --weightin", "did you mean 'weighting'")


def _copy_model(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_tokenizer_larger_than_embedding(tmp_path, source_models, target_tokenizers, capsys):
    # A model whose tokenizer was swapped for a bigger one: ids past the embedding rows.
    model = _copy_model(source_models["gpt2-bytelevel-tied"], tmp_path / "model")
    fx.byte_level_bpe(fx.corpus("mixed", 400), vocab_size=900).save_pretrained(model)
    out = tmp_path / "out"
    code, err = run_cli(["init", str(model), str(target_tokenizers["byte_level"]), str(out)], capsys)
    assert_clean_failure(code, err, out, "tokenizer and model do not match")


def test_nan_in_source_embedding(tmp_path, source_models, target_tokenizers, capsys):
    model = _copy_model(source_models["llama-bytelevel-tied"], tmp_path / "model")
    tensors = load_file(model / "model.safetensors")
    tensors["model.embed_tokens.weight"][5, 3] = float("nan")
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "out"
    code, err = run_cli(["init", str(model), str(target_tokenizers["byte_level"]), str(out)], capsys)
    assert_clean_failure(code, err, out, "NaN/inf", "model.embed_tokens.weight", "[5]")


def test_not_a_model_directory(tmp_path, target_tokenizers, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    code, err = run_cli(["init", str(tmp_path / "empty"), str(target_tokenizers["byte_level"]), str(out)], capsys)
    assert_clean_failure(code, err, out, "no config.json")


def test_untied_config_without_head(tmp_path, source_models, target_tokenizers, capsys):
    model = _copy_model(source_models["llama-bytelevel-tied"], tmp_path / "model")
    cfg = json.loads((model / "config.json").read_text())
    cfg["tie_word_embeddings"] = False
    (model / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    code, err = run_cli(["init", str(model), str(target_tokenizers["byte_level"]), str(out)], capsys)
    assert_clean_failure(code, err, out, "untied", "lm_head.weight")


def test_existing_output_is_not_clobbered(tmp_path, source_models, target_tokenizers, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = run_cli(["init", str(source_models["gpt2-bytelevel-tied"]), str(target_tokenizers["byte_level"]), str(out)], capsys)
    assert code == 2 and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"


def test_methods_lists_random_and_mean(capsys):
    main(["methods"])  # success returns normally (exit code 0 from the console script)
    shown = capsys.readouterr().out
    assert "random" in shown and "mean" in shown and "FVT" in shown


def test_random_rows_follow_source_statistics():
    from vocadapt.init.context import column_stats, random_rows

    src = torch.randn(4000, 8) * torch.arange(1, 9) + 3
    rows = random_rows(src, 4000, torch.Generator().manual_seed(0))
    mean, std = column_stats(src)
    torch.testing.assert_close(rows.mean(0), mean, atol=0.3, rtol=0.05)
    torch.testing.assert_close(rows.std(0), std, atol=0.3, rtol=0.08)
