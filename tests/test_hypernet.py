"""HyperOFA's hypernetwork: data, model/loss (overfit), training, save/load, refusals, LM stage."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from method_options import _ofa, _word_vectors, _write_w2v
from safetensors.torch import load_file

from vocadapt.errors import VocadaptError
from vocadapt.hypernet.data import BucketedBatches, WordSets, make_batch, sample_words, split_tokens
from vocadapt.hypernet.model import HyperNet, LossWeights, NetShape, set_loss
from vocadapt.hypernet.train import HypernetConfig, load_hypernet, train_hypernet
from vocadapt.init import init_embeddings

CASE = "llama-sentencepiece-untied"


def _sets(n_tokens=40, n_words=60, dim=6, seed=0) -> WordSets:
    from scipy import sparse

    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for t in range(n_tokens):
        ws = rng.choice(n_words, rng.integers(1, 12), replace=False)
        rows += [t] * len(ws)
        cols += ws.tolist()
    inc = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_tokens, n_words))
    return WordSets.from_incidence(inc, rng.standard_normal((n_words, dim)).astype(np.float32))


# -- data ---------------------------------------------------------------------------------------


def test_word_sets_compact_table_keeps_each_tokens_words():
    from scipy import sparse

    inc = sparse.csr_matrix(np.array([[0, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 1]]))
    vecs = np.arange(8, dtype=np.float32).reshape(4, 2)
    s = WordSets.from_incidence(inc, vecs)
    assert s.table.shape == (2, 2)  # words 0 and 2 are used by no token
    assert s.table[s.words(0)].tolist() == [[2, 3], [6, 7]]
    assert s.has_words().tolist() == [True, False, True]


def test_sample_words_caps_shuffles_and_augments():
    words = np.arange(100)
    rng = np.random.default_rng(0)
    sizes = [len(sample_words(words, rng, 1000, 1.0)) for _ in range(200)]
    assert min(sizes) >= 50 and max(sizes) <= 100 and len(set(sizes)) > 10  # a 50-100% subset every time
    assert len(sample_words(words, rng, 16, 0.0)) == 16
    small = np.arange(4)  # sets of <= 4 words are never subsampled
    assert all(len(sample_words(small, rng, 10, 1.0)) == 4 for _ in range(20))
    assert not np.array_equal(sample_words(words, rng, 100, 0.0), words)  # shuffled


def test_split_is_seeded_and_disjoint():
    cand = np.arange(100, 300)
    tr, va = split_tokens(cand, 0.1, seed=3)
    assert len(va) == 20 and not set(tr) & set(va) and sorted(np.concatenate([tr, va])) == cand.tolist()
    assert np.array_equal(split_tokens(cand, 0.1, seed=3)[1], va)
    assert not np.array_equal(split_tokens(cand, 0.1, seed=4)[1], va)


def test_bucketed_batches_cover_an_epoch_with_little_padding():
    sets = _sets(200)
    b = BucketedBatches(sets, np.arange(200), batch_size=20, seed=0, bucket_pool=10)
    epoch = [b.tokens_for(s) for s in range(b.per_epoch)]
    assert sorted(np.concatenate(epoch).tolist()) == list(range(200))
    spread = [np.ptp(sets.lengths[t]) for t in epoch]
    assert max(spread) <= 3  # sorted pools: lengths within a batch are close
    assert np.array_equal(BucketedBatches(sets, np.arange(200), 20, 0, 10).tokens_for(3), epoch[3])


# -- model and loss -----------------------------------------------------------------------------


def test_overfits_a_tiny_set():
    torch.manual_seed(0)
    sets = _sets(16)
    targets = torch.randn(16, 16)
    net = HyperNet(NetShape(6, 16, 16, hidden=32, layers=1, dropout=0.0), torch.from_numpy(sets.table))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    batch = make_batch(sets, np.arange(16), np.random.default_rng(0), 64, 0.0, targets)
    w = LossWeights(0.1, 0.9, 0.25)
    losses = []
    for _ in range(200):
        loss = set_loss(net(batch.words, batch.lengths), batch.target, 16, w).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = net(batch.words, batch.lengths).detach()
    # L1 near zero; InfoNCE near its floor (0.1 * log(1 + 15 e^(-1/T)) with orthogonal negatives)
    assert losses[0] > 0.8 and losses[-1] < 0.08
    assert (pred - targets).abs().mean() < 0.06
    nearest = torch.nn.functional.normalize(pred, dim=1) @ torch.nn.functional.normalize(targets, dim=1).T
    assert torch.equal(nearest.argmax(1), torch.arange(16))  # each prediction retrieves its own target


def test_padding_is_never_read():
    sets = _sets(4)
    net = HyperNet(NetShape(6, 3, 3, hidden=8, layers=2, dropout=0.0), torch.from_numpy(sets.table)).eval()
    words = torch.tensor([[1, 2, 0, 0]])
    a = net(words, torch.tensor([2]))
    b = net(torch.tensor([[1, 2, 5, 7]]), torch.tensor([2]))
    torch.testing.assert_close(a, b)


def test_config_rejects_bad_values():
    for bad in ({"rank": "abc"}, {"matrix": "both"}, {"val_fraction": 1.0}, {"hidden": 0}, {"infonce_weight": 0, "l1_weight": 0}):
        with pytest.raises(ValueError):
            HypernetConfig(**bad)


# -- training, save/load, init ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(source_models, workdir):
    """A tiny hypernetwork for the untied llama case, trained through the CLI."""
    from vocadapt.cli import main

    vectors = _ofa(workdir / "hn-inputs")["vectors"]
    out = workdir / "hn-run"
    if not (out / "model").exists():
        main(["hypernet", "train", str(source_models[CASE]), "--vectors", vectors, "--rank", "8", "--out", str(out),
              "--steps", "8", "--hidden", "16", "--eval-every", "4", "--no-progress"])
    assert (out / "model" / "hypernet.json").is_file()
    return out, vectors


def test_hypernet_dir_is_complete(trained):
    out, _ = trained
    d = out / "model"
    record = json.loads((d / "hypernet.json").read_text())
    assert record["matrices"] == ["input", "output"] and record["rank"] == 8 and record["objective"] == "reconstruct"
    assert set(record["model_fingerprints"]) == {"input", "output"}
    quality = json.loads((d / "quality.json").read_text())
    assert quality["tokens"] > 0
    for m in ("input", "output"):
        assert set(quality[m]) == {"hyperofa", "ofa", "rank_k"}
        assert -1 <= quality[m]["hyperofa"]["cosine"] <= 1
    assert (d / "train_log.jsonl").read_text().count("val_loss") >= 2
    assert json.loads((d / "vocadapt.json").read_text())["step"] == "hypernet.train"


def test_save_load_round_trip(trained):
    out, _ = trained
    hn = load_hypernet(out)  # a run directory resolves to its model/
    ckpt = sorted((out / "checkpoints").iterdir())[-1]
    engine_state = load_file(str(ckpt / "model.safetensors"))  # what the engine trained
    loaded = hn.net.state_dict()
    assert engine_state and all(torch.equal(loaded[k], v) for k, v in engine_state.items())
    assert set(hn.primitives) == {"input", "output"} and hn.primitives["input"].shape[0] == 8


def test_init_with_saved_hypernet_and_refusals(trained, source_models, target_tokenizers, workdir):
    import factories as fx

    out, vectors = trained
    tgt = target_tokenizers["sentencepiece"]
    report = init_embeddings(source_models[CASE], tgt, workdir / "hyp-init", "hyperofa", options={"hypernet": [str(out)]})
    assert report.counts["input"]["computed"] > 0 and report.counts["output"]["computed"] > 0
    # another model with the same tokenizer: refused, naming both fingerprints
    other = workdir / "other-model"
    if not other.exists():
        from vocadapt.tokenizer.load import load_tokenizer

        tok = load_tokenizer(source_models[CASE])
        fx.save_model(fx.tiny_model("llama", len(tok), False, seed=5), tok, other)
    hn = json.loads((out / "model" / "hypernet.json").read_text())
    with pytest.raises(VocadaptError, match=hn["model_fingerprints"]["input"]) as e:
        init_embeddings(other, tgt, workdir / "refused", "hyperofa", options={"hypernet": [str(out)]})
    assert "trained for another model" in str(e.value) and not (workdir / "refused").exists()
    with pytest.raises(VocadaptError, match="rank 8"):
        init_embeddings(source_models[CASE], tgt, workdir / "refused", "hyperofa", options={"hypernet": [str(out)], "rank": "4"})
    # the untied head needs a hypernetwork that predicts it
    with pytest.raises(VocadaptError, match="not a hypernetwork directory"):
        init_embeddings(source_models[CASE], tgt, workdir / "refused", "hyperofa", options={"hypernet": [str(workdir)]})
    with pytest.raises(VocadaptError, match="fingerprint"):
        init_embeddings(source_models[CASE], tgt, workdir / "refused", "hyperofa",
                        options={"hypernet": [str(out)], "vectors": _write_w2v(workdir / "other.vec", _word_vectors(["eng:a", "eng:b"], 12, 9))})
    assert not (workdir / "refused").exists()


def test_refuses_vectors_covering_no_target_token(source_models, target_tokenizers, workdir):
    # English-only words: the source side trains, but the target language has no word at all
    en = [w for w in _ofa.__globals__["_vocab"]("en") if w.isascii()]
    vec = _write_w2v(workdir / "en-only" / "v.vec", _word_vectors(en, 12, 3, "eng:"))
    with pytest.raises(VocadaptError, match=r"no words of languages \['rus'\] .* for the target tokenizer"):
        init_embeddings(source_models[CASE], target_tokenizers["sentencepiece"], workdir / "refused2", "hyperofa",
                        options={"vectors": vec, "rank": "8", "steps": 2, "hidden": 8, "target_langs": ["rus"]})
    assert not (workdir / "refused2").exists()


def test_bad_inputs(source_models, target_tokenizers, workdir):
    with pytest.raises(VocadaptError, match="--hypernet DIR .* or --vectors FILE"):
        init_embeddings(source_models[CASE], target_tokenizers["sentencepiece"], workdir / "bad", "hyperofa")
    with pytest.raises(VocadaptError, match="needs multilingual word vectors"):
        train_hypernet(source_models[CASE], workdir / "bad-hn", HypernetConfig(progress=False))
    with pytest.raises(VocadaptError, match="tied head"):
        train_hypernet(source_models["llama-bytelevel-tied"], workdir / "bad-hn",
                       HypernetConfig(vectors=_ofa(workdir / "hn-inputs")["vectors"], matrix="output", progress=False))


def test_lm_stage_trains_only_the_hypernetwork(trained, source_models, target_tokenizers, workdir):
    import factories as fx

    from vocadapt.hypernet.lm import LmStageConfig, tune_hypernet

    out, _ = trained
    tgt = target_tokenizers["sentencepiece"]
    model = workdir / "hyp-init-lm"
    if not model.exists():
        init_embeddings(source_models[CASE], tgt, model, "hyperofa", options={"hypernet": [str(out)]})
    corpus = workdir / "lm-train.txt"
    corpus.write_text("\n\n".join(fx.corpus("ru", 120, seed=21)) + "\n", encoding="utf-8")
    cfg = LmStageConfig(steps=2, seq_len=32, batch_size=2, eval_every=0, lr=1e-2, warmup_steps=0, progress=False)
    r = tune_hypernet(out, model, corpus, workdir / "lm-run", cfg, eval_text=fx.corpus("ru", 6, seed=22))
    assert r.steps == 2 and "bpb" in r.metrics
    before, after = load_hypernet(out), load_hypernet(workdir / "lm-run")
    assert after.record["objective"] == "lm"
    changed = [k for k, v in before.net.state_dict().items() if not k.startswith("table.") and not torch.equal(v, after.net.state_dict()[k])]
    assert changed, "the LM stage did not change the hypernetwork"
    # the tuned hypernetwork is a drop-in for init, and copied rows are still the source's
    init_embeddings(source_models[CASE], tgt, workdir / "hyp-init-tuned", "hyperofa", options={"hypernet": [str(workdir / "lm-run")]})
    a = load_file(str(workdir / "hyp-init-lm" / "model.safetensors"))
    b = load_file(str(workdir / "hyp-init-tuned" / "model.safetensors"))
    name = "model.embed_tokens.weight"
    from vocadapt.tokenizer.align import align_vocabularies
    from vocadapt.tokenizer.load import load_tokenizer

    al = align_vocabularies(load_tokenizer(source_models[CASE]), load_tokenizer(tgt), decompose=False)
    copied = torch.as_tensor(al.copied_ids)
    assert torch.equal(a[name][copied], b[name][copied]) and not torch.equal(a[name], b[name])


def test_base_mean_predicts_residuals_over_the_fvt_mean(source_models, target_tokenizers, workdir):
    """--base mean: trained on leave-one-out residuals; at init rows = FVT mean + prediction, so a
    network that predicts zero reproduces `mean` exactly; the LM stage keeps the base."""
    from safetensors.torch import save_file

    from vocadapt.hypernet.lm import LmStageConfig, tune_hypernet
    from vocadapt.hypernet.train import WEIGHTS_FILE
    from vocadapt.tokenizer.align import align_vocabularies
    from vocadapt.tokenizer.load import load_tokenizer

    vectors = _ofa(workdir / "hn-inputs")["vectors"]
    out = workdir / "hn-base"
    cfg = HypernetConfig(vectors=vectors, rank="8", steps=6, hidden=16, eval_every=3, base="mean", progress=False)
    train_hypernet(source_models[CASE], out, cfg)
    hn = load_hypernet(out)
    assert hn.base == "mean" and hn.record["base"] == "mean"
    quality = json.loads((out / "model" / "quality.json").read_text())
    for m in ("input", "output"):
        assert set(quality[m]) == {"hyperofa", "ofa", "fvt_mean", "rank_k"}

    # zero the output layer: the residual is 0 and hyperofa must equal mean on every predicted row
    zero = workdir / "hn-base-zero"
    import shutil

    shutil.copytree(out / "model", zero, dirs_exist_ok=True)
    tensors = load_file(str(zero / WEIGHTS_FILE))
    last = max(k for k in tensors if k.startswith("net.mlp.") and k.endswith(".weight"))
    tensors[last] = torch.zeros_like(tensors[last])
    tensors[last.replace(".weight", ".bias")] = torch.zeros_like(tensors[last.replace(".weight", ".bias")])
    save_file(tensors, str(zero / WEIGHTS_FILE))
    tgt = target_tokenizers["sentencepiece"]
    init_embeddings(source_models[CASE], tgt, workdir / "base-zero", "hyperofa", options={"hypernet": [str(zero)]})
    init_embeddings(source_models[CASE], tgt, workdir / "base-mean", "mean")
    a = load_file(str(workdir / "base-zero" / "model.safetensors"))
    b = load_file(str(workdir / "base-mean" / "model.safetensors"))
    al = align_vocabularies(load_tokenizer(source_models[CASE]), load_tokenizer(tgt))
    with_pieces = torch.as_tensor([t for t in al.new_ids if al.decompositions.get(t)])
    assert len(with_pieces) > 0
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        torch.testing.assert_close(a[name][with_pieces], b[name][with_pieces])

    # the trained residual network moves rows away from the mean, and the LM stage runs on it
    init_embeddings(source_models[CASE], tgt, workdir / "base-init", "hyperofa", options={"hypernet": [str(out)]})
    c = load_file(str(workdir / "base-init" / "model.safetensors"))
    assert not torch.equal(c["model.embed_tokens.weight"][with_pieces], b["model.embed_tokens.weight"][with_pieces])
    import factories as fx

    corpus = workdir / "lm-base.txt"
    corpus.write_text("\n\n".join(fx.corpus("ru", 120, seed=21)) + "\n", encoding="utf-8")
    lm = LmStageConfig(steps=2, seq_len=32, batch_size=2, eval_every=0, lr=1e-2, warmup_steps=0, progress=False)
    r = tune_hypernet(out, workdir / "base-init", corpus, workdir / "lm-base-run", lm, eval_text=fx.corpus("ru", 6, seed=22))
    tuned = load_hypernet(workdir / "lm-base-run")
    assert r.steps == 2 and tuned.base == "mean"
    start = tuned.record["lm_stage"]["start"]
    assert start["from"] == "base" and start["gate_mean_abs"] > 0, "the gate did not move"

    # the gated stage starts exactly at mean, and the saved network (gate folded in) reproduces
    # the rows the stage ended with: bits per byte at step 0 = mean's, at the end = its init's
    from transformers import AutoModelForCausalLM

    from vocadapt.evaluate.bpb import bits_per_byte

    held = fx.corpus("ru", 6, seed=22)
    logged = [json.loads(line) for line in (workdir / "lm-base-run" / "train_log.jsonl").read_text().splitlines()]
    evals = [e for e in logged if "bpb" in e]
    assert [e["step"] for e in evals] == [0, 2]
    init_embeddings(source_models[CASE], tgt, workdir / "base-tuned", "hyperofa", options={"hypernet": [str(workdir / "lm-base-run")]})
    tok = load_tokenizer(tgt)
    for model_dir, expected in ((workdir / "base-mean", evals[0]["bpb"]), (workdir / "base-tuned", evals[1]["bpb"])):
        m = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        assert bits_per_byte(m, tok, held, max_length=lm.seq_len).bits_per_byte == pytest.approx(expected, rel=1e-5)
    assert evals[1]["bpb"] != evals[0]["bpb"]
    # start: network is the ungated stage: it starts from the reconstruction's residual
    free = tune_hypernet(out, workdir / "base-init", corpus, workdir / "lm-free-run", replace(lm, start="network"))
    assert load_hypernet(free.out_dir).record["lm_stage"]["start"] == {"from": "network"}


def test_init_runs_the_lm_stage_on_request(trained, source_models, target_tokenizers, workdir, capsys):
    """--tune-steps: init tunes the given network through the model's loss before predicting,
    records it in the provenance, and leaves the given network untouched."""
    import factories as fx

    out, _ = trained
    tgt = target_tokenizers["sentencepiece"]
    corpus = workdir / "lm-init.txt"
    corpus.write_text("\n\n".join(fx.corpus("ru", 120, seed=23)) + "\n", encoding="utf-8")
    before = load_file(str(out / "model" / "hypernet.safetensors"))
    plain, tuned = workdir / "hyp-init-plain", workdir / "hyp-init-tune"
    if not plain.exists():
        init_embeddings(source_models[CASE], tgt, plain, "hyperofa", options={"hypernet": [str(out)]})
    from vocadapt.cli import main

    main(["init", str(source_models[CASE]), str(tgt), str(tuned), "--method", "hyperofa", "--hypernet", str(out),
          "--tune-steps", "2", "--tune-corpus", str(corpus)])
    assert "hyperofa lm stage (input+output): steps=2" in capsys.readouterr().out
    stats = json.loads((tuned / "vocadapt.json").read_text())["results"]["method_stats"]["hyperofa"]
    assert [s["steps"] for s in stats.values()] == [2]
    a = load_file(str(plain / "model.safetensors"))["model.embed_tokens.weight"]
    b = load_file(str(tuned / "model.safetensors"))["model.embed_tokens.weight"]
    assert not torch.equal(a, b)
    after = load_file(str(out / "model" / "hypernet.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(VocadaptError, match="tune_steps needs tune_corpus"):
        init_embeddings(source_models[CASE], tgt, workdir / "hyp-bad", "hyperofa", options={"hypernet": [str(out)], "tune_steps": 2})


def test_hyperofa_defaults_are_the_measured_best():
    """`--method hyperofa` without options is the documented best: a residual over the FVT mean,
    and the 30-step LM stage whenever target text is given (reconstruction alone measured worse
    than `mean`)."""
    from vocadapt.init.hyperofa import DEFAULT_TUNE_STEPS, HyperOfaConfig

    assert HyperOfaConfig().base == "mean"
    assert HyperOfaConfig().tune_steps == 0  # nothing to tune on: a warning says what to pass
    assert HyperOfaConfig(tune_corpus=["ru.txt"]).tune_steps == DEFAULT_TUNE_STEPS == 30
    assert HyperOfaConfig(tune_corpus=["ru.txt"], tune_steps=0).tune_steps == 0
    with pytest.raises(ValueError, match="tune_steps needs tune_corpus"):
        HyperOfaConfig(tune_steps=5)
    # Init warns when the LM stage is off by default, not when it was switched off on purpose.
    assert HyperOfaConfig().warn_no_lm_stage and not HyperOfaConfig(tune_steps=0).warn_no_lm_stage
    from vocadapt.errors import VocadaptError
    from vocadapt.options import parse_options

    with pytest.raises(VocadaptError):  # derived state, not an option
        parse_options(["--warn-no-lm-stage", "true"], HyperOfaConfig, "hyperofa")
