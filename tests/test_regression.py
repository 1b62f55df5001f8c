"""Linear-regression transfer (``--method regression``) and ``vocadapt helper train``.

The shared matrix (test_init_matrix.py) runs regression with fastText features on every model
family; here: a helper model as the target (tied and untied), a case where the true map is
known, the ridge choice, the bad inputs, and a helper trained by ``helper train``.
"""

from __future__ import annotations

import json

import factories as fx
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vocadapt.errors import VocadaptError
from vocadapt.train.scratch import HelperConfig, train_helper
from vocadapt.init import init_embeddings, load_tokenizer
from vocadapt.init.regression import RegressionConfig, RidgePath, choose_ridge
from vocadapt.io.checkpoint import Checkpoint
from vocadapt.tokenizer.align import align_vocabularies


def _helper(path, tokenizer_dir, hidden: int, tied: bool = True, arch: str = "llama"):
    """A tiny random model with the target tokenizer: a stand-in for a language-specific helper."""
    tok = load_tokenizer(tokenizer_dir)
    model = fx.tiny_model(arch, len(tok), tied, seed=3)
    if hidden != 32:
        import transformers as tf

        cfg = tf.LlamaConfig(hidden_size=hidden, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, vocab_size=len(tok), tie_word_embeddings=tied)
        model = tf.AutoModelForCausalLM.from_config(cfg)
    return fx.save_model(model, tok, path)


def _tensors(path):
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.mark.parametrize("case", ["llama-bytelevel-tied", "llama-sentencepiece-untied"])
@pytest.mark.parametrize("helper_tied", [True, False])
def test_helper_model_as_target(case, helper_tied, source_models, target_tokenizers, tmp_path):
    family = "byte_level" if "bytelevel" in case else "sentencepiece"
    helper = _helper(tmp_path / "helper", target_tokenizers[family], 32, tied=helper_tied)
    out = tmp_path / "out"
    report = init_embeddings(source_models[case], helper, out, "regression", options={"base": "none"})
    stats = report.stats["regression"]
    src_untied = "untied" in case
    assert set(stats) == ({"input", "output"} if src_untied else {"input"})
    assert stats["input"]["features"].startswith("helper input embedding")
    if src_untied:
        # the LLM's head gets its own map, from the helper's head when the helper has one
        assert stats["output"]["features"].startswith("helper head" if not helper_tied else "helper input embedding")
    for s in stats.values():
        assert s["common_tokens"] >= 20 and s["feature_dim"] == 32 and s["ridge"] >= 0
        assert np.isfinite(s["r2_heldout"]) and -1 <= s["cosine_heldout"] <= 1
    prov = json.loads((out / "vocadapt.json").read_text())
    assert prov["results"]["method_stats"]["regression"]["input"]["common_tokens"] == stats["input"]["common_tokens"]
    assert load_tokenizer(out).get_vocab() == load_tokenizer(helper).get_vocab()  # the helper's tokenizer is the new one


def test_truth_known_map_is_recovered(source_models, target_tokenizers, tmp_path):
    """LLM rows of the common tokens = helper rows @ A + b + noise: W recovers A, R^2 near 1,
    and every new token gets helper row @ A + b."""
    case = "llama-bytelevel-tied"
    helper = _helper(tmp_path / "helper", target_tokenizers["byte_level"], 16)
    src_tok, tgt_tok = load_tokenizer(source_models[case]), load_tokenizer(helper)
    a = align_vocabularies(src_tok, tgt_tok, decompose=False)
    x = _tensors(helper)[Checkpoint(helper).vocab.input].double()
    g = torch.Generator().manual_seed(0)
    true_a = torch.randn(16, 32, generator=g, dtype=torch.float64)
    b = torch.randn(32, generator=g, dtype=torch.float64)
    # rewrite the source model so that its rows for the common tokens follow the map exactly
    src = tmp_path / "src"
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source_models[case])
    emb = model.get_input_embeddings().weight.data
    common = [int(t) for t in a.copied_ids if a.how[t] == "canonical"]
    rows = x[common] @ true_a + b + 1e-4 * torch.randn(len(common), 32, generator=g, dtype=torch.float64)
    emb[torch.as_tensor(a.copy_from[common])] = rows.float()
    fx.save_model(model, src_tok, src)

    out = tmp_path / "out"
    report = init_embeddings(src, helper, out, "regression", options={"base": "none", "ridge": "0"})
    s = report.stats["regression"]["input"]
    assert s["common_tokens"] == len(common) > 16
    assert s["r2_heldout"] > 0.999 and s["cosine_heldout"] > 0.999
    new = torch.as_tensor(a.new_ids)
    got = _tensors(out)[Checkpoint(out).vocab.input][new].double()
    want = x[new] @ true_a + b
    assert torch.allclose(got, want, atol=1e-2, rtol=1e-3)
    # the map itself, from the unit that fitted it
    path = RidgePath.fit(x[common].float(), rows)
    assert torch.allclose(path.weights(0.0), true_a, atol=1e-2)


def test_ridge_auto_picks_small_for_signal_large_for_noise():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 16, generator=g)
    a = torch.randn(16, 8, generator=g)
    config = RegressionConfig()
    signal, stats = choose_ridge(x, (x @ a + 0.01 * torch.randn(400, 8, generator=g)).double(), None, config, torch.Generator().manual_seed(0))
    assert signal <= 1e-3 and stats["r2_heldout"] > 0.99
    noise, stats = choose_ridge(x, torch.randn(400, 8, generator=g).double(), None, config, torch.Generator().manual_seed(0))
    assert noise >= 3 and stats["r2_heldout"] < 0.05
    # fewer training rows than features: ridge 0 is not even tried
    few, _ = choose_ridge(x[:12], torch.randn(12, 8, generator=g).double(), None, config, torch.Generator().manual_seed(0))
    assert few > 0


def test_residual_over_mean_reports_both_and_beats_nothing_worse(source_models, target_tokenizers, tmp_path):
    """--base mean: held-out quality is reported next to the FVT mean alone; with ridge auto the
    fit cannot be much worse than the mean it falls back to."""
    case = "llama-bytelevel-tied"
    helper = _helper(tmp_path / "helper", target_tokenizers["byte_level"], 16)
    report = init_embeddings(source_models[case], helper, tmp_path / "out", "regression", options={"base": "mean"})
    s = report.stats["regression"]["input"]
    assert {"base_r2_heldout", "base_cosine_heldout", "ridge_path"} <= set(s)
    assert s["r2_heldout"] >= s["base_r2_heldout"] - 0.1


# ------------------------------------------------------------------------------------------------
# Bad input: one line, nothing written
# ------------------------------------------------------------------------------------------------


def test_fewer_common_tokens_than_features_with_plain_least_squares(source_models, target_tokenizers, tmp_path):
    helper = _helper(tmp_path / "helper", target_tokenizers["byte_level"], 512)
    out = tmp_path / "out"
    with pytest.raises(VocadaptError, match=r"common tokens for 512 feature dimensions.*--ridge"):
        init_embeddings(source_models["llama-bytelevel-tied"], helper, out, "regression", options={"ridge": "0"})
    assert not out.exists()


def test_helper_sharing_almost_nothing(source_models, tmp_path):
    greek = ["αβγ δεζ ηθι", "κλμ νξο πρσ", "τυφ χψω αβδ"] * 50
    tok = fx.unigram(greek, vocab_size=60)
    tok_dir = tmp_path / "greek-tok"
    tok.save_pretrained(tok_dir)
    helper = _helper(tmp_path / "helper", tok_dir, 32)
    out = tmp_path / "out"
    with pytest.raises(VocadaptError, match="almost nothing in common"):
        init_embeddings(source_models["llama-sentencepiece-untied"], helper, out, "regression")
    assert not out.exists()


def test_features_covering_no_target_token(source_models, target_tokenizers, tmp_path):
    vec = tmp_path / "other.vec"
    vec.write_text("2 3\nzzzq 0.1 0.2 0.3\nqqqz 0.3 0.2 0.1\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(VocadaptError, match="cover none of the target tokens"):
        init_embeddings(source_models["llama-bytelevel-tied"], target_tokenizers["byte_level"], out, "regression",
                        options={"features": str(vec)})
    assert not out.exists()


def test_no_features_and_no_helper(source_models, target_tokenizers, tmp_path):
    with pytest.raises(VocadaptError, match="helper train"):
        init_embeddings(source_models["llama-bytelevel-tied"], target_tokenizers["byte_level"], tmp_path / "out", "regression")


@pytest.mark.parametrize("options", [{"ridge": "-1"}, {"ridge": "lots"}, {"base": "median"}, {"holdout": 0.7}])
def test_bad_options(options, source_models, target_tokenizers, tmp_path):
    with pytest.raises(VocadaptError, match="regression"):
        init_embeddings(source_models["llama-bytelevel-tied"], target_tokenizers["byte_level"], tmp_path / "out", "regression", options=options)


# ------------------------------------------------------------------------------------------------
# helper train
# ------------------------------------------------------------------------------------------------


def test_helper_train_then_regression(source_models, target_tokenizers, tmp_path):
    from _traintiny import write_corpus
    from transformers import AutoModelForCausalLM

    corpus = write_corpus(tmp_path / "ru.txt", n=60)
    config = HelperConfig(steps=3, hidden_size=16, layers=1, heads=2, seq_len=32, batch_size=4, warmup_steps=1,
                          eval_every=0, progress=False, tie_embeddings=False)
    r = train_helper(target_tokenizers["byte_level"], corpus, tmp_path / "run", config)
    assert r.steps == 3 and r.tokens > 0 and r.parameters > 0
    model = AutoModelForCausalLM.from_pretrained(r.model_dir)
    assert model.config.hidden_size == 16 and not model.config.tie_word_embeddings
    prov = json.loads((r.model_dir / "vocadapt.json").read_text())
    assert prov["step"] == "helper" and prov["results"]["steps"] == 3
    # the run directory stands for its model: it is the target of the regression init
    report = init_embeddings(source_models["llama-sentencepiece-untied"], tmp_path / "run", tmp_path / "out", "regression")
    assert report.stats["regression"]["output"]["features"].startswith("helper head")


def test_helper_config_validation():
    with pytest.raises(ValueError, match="heads"):
        HelperConfig(hidden_size=30, heads=4)


@pytest.mark.parametrize("case", ["llama-bytelevel-tied", "qwen2-unigram-untied"])
def test_training_base_never_contains_the_token_itself(case, source_models, target_tokenizers):
    """A common token's training base comes from its sub-pieces (BPE parents, or its text split
    in two), never from itself: otherwise the FVT mean would leak the answer into training."""
    from conftest import MODEL_CASES

    from vocadapt.init.context import InitContext
    from vocadapt.init.regression import common_tokens, sub_pieces

    family = next(c[2] for c in MODEL_CASES if c[0] == case)
    src_tok, tgt_tok = load_tokenizer(source_models[case]), load_tokenizer(target_tokenizers[family])
    ctx = InitContext(src_tok, tgt_tok, align_vocabularies(src_tok, tgt_tok))
    common = common_tokens(ctx)
    pieces = sub_pieces(ctx, common)
    spelled = [(t, p) for t, p in zip(common, pieces) if p]
    assert len(spelled) > len(common) // 3
    for t, p in spelled:
        assert int(ctx.alignment.copy_from[t]) not in p and len(p) >= 2
        assert ctx.alignment.target_tokens[int(t)].surface() == _decode(src_tok, p)  # same text, other pieces


def _decode(tok, ids):
    from vocadapt.tokenizer.canonical import canonical_vocab

    vocab = canonical_vocab(tok)
    return b"".join(vocab[i].surface() for i in ids)


def test_without_intercept_average_features_predict_zero():
    """--intercept false: a token with the average features gets exactly the base (zero residual)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(100, 8, generator=g)
    y = (x @ torch.randn(8, 4, generator=g) + 5.0).double()
    with_b, without_b = RidgePath.fit(x, y), RidgePath.fit(x, y, intercept=False)
    centre = x.double().mean(0, keepdim=True)
    assert torch.allclose(with_b.predict(centre, with_b.weights(0.0)), torch.full((1, 4), 5.0, dtype=torch.float64), atol=0.5)
    assert torch.equal(without_b.predict(centre, without_b.weights(0.0)), torch.zeros(1, 4, dtype=torch.float64))
