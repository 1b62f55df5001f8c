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
    # One `error:` line, last; what comes before it can only be the progress lines of steps
    # that had started (`init mean: ...`), never a traceback or a second error.
    lines = err.splitlines()
    assert lines[-1].startswith("error: "), err
    assert not any(ln.startswith(("error", "Traceback", "  File")) for ln in lines[:-1]), err
    for n in needles:
        assert n in lines[-1], lines[-1]
    assert not out_dir.exists()
    if out_dir.parent.exists():
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


# -- corrupt or foreign inputs: one line naming the file, no output folder -----------------------

@pytest.fixture
def broken_model(tmp_path, source_models):
    """A copy of a tiny llama whose files a test may damage."""
    return _copy_model(source_models["llama-bytelevel-tied"], tmp_path / "model")


def _eval(model, out, capsys, text):
    return run_cli(["eval", str(model), "--text", str(text), "--tasks", "bpb", "--out", str(out)], capsys)


@pytest.fixture
def heldout(tmp_path):
    path = tmp_path / "heldout.txt"
    path.write_text("Привет, мир.\n%\nВторой документ.\n", encoding="utf-8")
    return path


def test_truncated_weights(broken_model, target_tokenizers, heldout, tmp_path, capsys):
    weights = broken_model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    out = tmp_path / "out" / "adapted"
    code, err = run_cli(["init", str(broken_model), str(target_tokenizers["byte_level"]), str(out)], capsys)
    assert_clean_failure(code, err, out, str(weights), "truncated")
    assert not (tmp_path / "out").exists()  # the parent it would have made is gone too
    code, err = _eval(broken_model, out, capsys, heldout)
    assert_clean_failure(code, err, out, str(weights), "truncated")


@pytest.mark.parametrize("content", [b"", b"\x00" * 20, b"<html>404 not found</html>" * 10,
                                     (40).to_bytes(8, "little") + b"{not json" + b" " * 31])
def test_weights_that_are_not_safetensors(broken_model, target_tokenizers, heldout, tmp_path, capsys, content):
    (broken_model / "model.safetensors").write_bytes(content)
    out = tmp_path / "out"
    code, err = run_cli(["init", str(broken_model), str(target_tokenizers["byte_level"]), str(out)], capsys)
    assert_clean_failure(code, err, out, "model.safetensors", "not a safetensors file")
    code, err = _eval(broken_model, out, capsys, heldout)
    assert_clean_failure(code, err, out, "model.safetensors", "not a safetensors file")


@pytest.mark.parametrize("key,value,needle", [("vocab_size", 12345, "vocab_size is 12345"),
                                              ("hidden_size", 48, "hidden size is 48")])
def test_config_that_does_not_match_the_tensors(broken_model, target_tokenizers, heldout, tmp_path, capsys,
                                                key, value, needle):
    cfg = json.loads((broken_model / "config.json").read_text())
    cfg[key] = value
    (broken_model / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    code, err = run_cli(["init", str(broken_model), str(target_tokenizers["byte_level"]), str(out)], capsys)
    assert_clean_failure(code, err, out, "config.json", "does not match the weights", needle)
    code, err = _eval(broken_model, out, capsys, heldout)
    assert_clean_failure(code, err, out, "config.json", "does not match the weights", needle)


def test_broken_config_json(broken_model, heldout, tmp_path, capsys):
    (broken_model / "config.json").write_text("{ oops")
    out = tmp_path / "out"
    code, err = _eval(broken_model, out, capsys, heldout)
    assert_clean_failure(code, err, out, "config.json", "not valid JSON")


def test_eval_on_a_folder_that_is_not_a_model(tmp_path, heldout, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    out = tmp_path / "out"
    code, err = _eval(tmp_path / "notes", out, capsys, heldout)
    assert_clean_failure(code, err, out, "no config.json", "notes")


@pytest.mark.parametrize("missing", ["tokenizer.json", "all"])
def test_tokenizer_folder_without_tokenizer_files(tmp_path, source_models, target_tokenizers, capsys, missing):
    tok = _copy_model(target_tokenizers["byte_level"], tmp_path / "tok")
    for f in tok.iterdir():
        if missing == "all" or f.name == "tokenizer.json":
            f.unlink()
    out = tmp_path / "out"
    code, err = run_cli(["init", str(source_models["gpt2-bytelevel-tied"]), str(tok), str(out)], capsys)
    assert_clean_failure(code, err, out, str(tok), "tokenizer.json is missing")


def test_model_without_tokenizer_for_eval(broken_model, heldout, tmp_path, capsys):
    (broken_model / "tokenizer.json").unlink()
    out = tmp_path / "out"
    code, err = _eval(broken_model, out, capsys, heldout)
    assert_clean_failure(code, err, out, "tokenizer.json is missing")


def test_non_utf8_text_names_the_real_option(tmp_path, tiny_dir, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("Привет, мир.\n".encode() + b"\xff\xfe broken\n" + "Ещё строка.\n".encode())
    out = tmp_path / "out"
    code, err = run_cli(["tokenizer", "train", str(bad), "--out", str(out), "--vocab-size", "300"], capsys)
    assert_clean_failure(code, err, out, "bad.txt:2", "--errors skip")
    assert "--skip-bad-lines" not in err
    code, err = run_cli(["eval", str(tiny_dir), "--text", str(bad), "--tasks", "bpb", "--out", str(out)], capsys)
    assert_clean_failure(code, err, out, "--errors skip")
    main(["eval", str(tiny_dir), "--text", str(bad), "--errors", "skip", "--tasks", "bpb", "--out", str(out),
          "--max-length", "32"])
    captured = capsys.readouterr()
    assert "warning: skipped 1 non-UTF-8 lines of --text" in captured.err
    assert json.loads((out / "summary.json").read_text())["n_docs"] == 1


# -- outputs readable by the group -------------------------------------------------------------

@pytest.mark.parametrize("mask,dir_mode,file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640), (0o077, 0o700, 0o600)])
def test_atomic_dir_outputs_follow_the_umask(tmp_path, mask, dir_mode, file_mode):
    import os
    import stat

    from vocadapt.io.atomic import atomic_dir

    old = os.umask(mask)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "a.txt").write_text("x")
            private = tmp / "weights.bin"  # the way save_pretrained leaves model.safetensors
            private.write_bytes(b"x")
            private.chmod(0o600)
    finally:
        os.umask(old)
    out = tmp_path / "out"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert modes == {"out": dir_mode, "sub": dir_mode, "a.txt": file_mode, "weights.bin": file_mode}


def test_init_output_is_group_readable(tmp_path, source_models, target_tokenizers):
    import os
    import stat

    from vocadapt.init import init_embeddings

    old = os.umask(0o022)
    try:
        out = init_embeddings(source_models["llama-bytelevel-tied"], target_tokenizers["byte_level"], tmp_path / "m").out_dir
    finally:
        os.umask(old)
    for p in [out, *out.rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044, p


def test_failed_init_removes_the_folders_it_made(tmp_path, source_models, target_tokenizers, capsys):
    """An error inside the method (here: FOCUS's corpus is missing) comes after the output's
    parent folders were made; they go with the temporary folder."""
    out = tmp_path / "runs" / "ru" / "focus"
    code, err = run_cli(["init", str(source_models["llama-bytelevel-tied"]), str(target_tokenizers["byte_level"]), str(out),
                         "--method", "focus", "--aux-corpus", str(tmp_path / "nope.txt")], capsys)
    assert_clean_failure(code, err, out, "nope.txt")
    assert not (tmp_path / "runs").exists()


def test_the_suite_writes_derived_files_only_under_its_temporary_cache(hermetic_cache, tmp_path):
    """conftest's hermetic_cache: fastText models, GGUF conversions, tokenized corpora and error
    logs go to a pytest folder; only the fetched assets are the user's (linked, read)."""
    from vocadapt.cache import cache_dir
    from vocadapt.vectors.train import train_token_vectors
    import factories as fx

    assert cache_dir() == hermetic_cache
    for name in ("fasttext", "converted", "tokenized", "logs"):
        assert not (cache_dir() / name).is_symlink()
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(fx.corpus("ru", 200, seed=5)), encoding="utf-8")
    tok = fx.byte_level_bpe(fx.corpus("ru", 200, seed=5))
    path = train_token_vectors([text], tok, dim=8, epochs=1, min_count=2, threads=1)
    assert path.is_relative_to(hermetic_cache / "fasttext")
