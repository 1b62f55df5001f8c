"""Checkpoint I/O: lazy reads, streamed writes, sharded indexes, tying, architecture table."""

from __future__ import annotations

import json

import factories as fx
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vocadapt.errors import VocadaptError
from vocadapt.init import init_embeddings
from vocadapt.io.checkpoint import Checkpoint, architectures
from vocadapt.io.safetensors_stream import read_header, read_tensor, write_file


def test_stream_writer_round_trip(tmp_path):
    tensors = {
        "a": torch.randn(5, 3, dtype=torch.bfloat16),
        "b": torch.arange(7, dtype=torch.int64),
        "c": torch.randn(2, 2, 2),
        "scalar": torch.tensor(3.5),
    }
    save_file(tensors, tmp_path / "src.safetensors")
    infos, _ = read_header(tmp_path / "src.safetensors")
    replaced = torch.ones(9, 3, dtype=torch.bfloat16)
    write_file(tmp_path / "out.safetensors", [(n, replaced if n == "a" else infos[n]) for n in infos])
    out = load_file(tmp_path / "out.safetensors")
    assert torch.equal(out["a"], replaced)
    for name in ("b", "c", "scalar"):
        assert torch.equal(out[name], tensors[name])
        assert torch.equal(read_tensor(infos[name]), tensors[name])


@pytest.mark.parametrize(
    "arch,tied,expect_input,expect_output",
    [
        ("llama", True, "model.embed_tokens.weight", None),
        ("llama", False, "model.embed_tokens.weight", "lm_head.weight"),
        ("gpt2", True, "transformer.wte.weight", None),
        ("gpt_neox", False, "gpt_neox.embed_in.weight", "embed_out.weight"),
        ("bert", True, "bert.embeddings.word_embeddings.weight", None),
        ("xlm-roberta", True, "roberta.embeddings.word_embeddings.weight", None),
    ],
)
def test_vocab_tensors_found_from_config(tmp_path, arch, tied, expect_input, expect_output):
    tok = fx.byte_level_bpe(fx.corpus("en", 100), 300)
    path = fx.save_model(fx.tiny_model(arch, len(tok), tied), tok, tmp_path / arch)
    ck = Checkpoint(path)
    assert ck.vocab.input == expect_input
    assert ck.vocab.tied == tied
    if not tied:
        assert ck.vocab.output == expect_output
    if arch in ("bert", "xlm-roberta"):
        assert ck.vocab.output_bias is not None
    assert ck.embedding_rows == len(tok) and ck.hidden_size == 32


def test_every_table_entry_names_an_input():
    for name, entry in architectures().items():
        assert entry["input"], name
        assert isinstance(entry["tied_default"], bool), name


def test_unknown_architecture_names_what_was_looked_for(tmp_path):
    save_file({"weird.weight": torch.zeros(3, 3)}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "martian"}))
    with pytest.raises(VocadaptError, match="unknown architecture 'martian'.*model.embed_tokens.weight"):
        Checkpoint(tmp_path)


def test_sharded_checkpoint_copies_untouched_shards(tmp_path, target_tokenizers):
    tok = fx.sentencepiece_bpe(fx.corpus("en", 200))
    src = fx.save_model(fx.tiny_model("llama", len(tok), tied=False), tok, tmp_path / "src", max_shard_size="20KB")
    ck = Checkpoint(src)
    assert len(ck.files) > 2, "fixture should be sharded"
    out = tmp_path / "out"
    init_embeddings(src, target_tokenizers["sentencepiece"], out, "mean", pad_to_multiple_of=64)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(ck.tensors)
    changed = set(ck.vocab.names())
    for shard in ck.files:
        with safe_open(shard, "pt") as before, safe_open(out / shard.name, "pt") as after:
            names = set(before.keys())
            if not names & changed:
                assert (out / shard.name).read_bytes() == shard.read_bytes()
            for n in names - changed:
                assert torch.equal(before.get_tensor(n), after.get_tensor(n))
    emb = Checkpoint(out)
    assert emb.embedding_rows % 64 == 0
    assert json.loads((out / "config.json").read_text())["vocab_size"] == emb.embedding_rows
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_output_embeddings().weight.shape[0] == emb.embedding_rows


def test_provenance_counts_and_inputs(tmp_path, source_models, target_tokenizers):
    out = tmp_path / "out"
    report = init_embeddings(source_models["gpt2-bytelevel-tied"], target_tokenizers["byte_level"], out, "mean", seed=3)
    prov = json.loads((out / "vocadapt.json").read_text())
    assert prov["step"] == "init" and prov["config"]["method"] == "mean" and prov["config"]["seed"] == 3
    assert prov["results"]["counts"]["input"] == report.counts["input"]
    assert set(prov["inputs"]) == {"source_model", "target_tokenizer"}
    assert all(len(v["fingerprint"]) == 16 for v in prov["inputs"].values())
    assert "torch" in prov["versions"]


def test_chat_template_carried_over(tmp_path, source_models, target_tokenizers):
    from transformers import AutoTokenizer

    out = tmp_path / "out"
    init_embeddings(source_models["llama-bytelevel-tied"], target_tokenizers["sentencepiece"], out, "mean")
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template


def test_mean_fallback_fills_rows_without_signal_with_the_fvt_mean(tmp_path, source_models, target_tokenizers):
    """`random` gives no signal for any row, so with fallback=mean it must equal `mean`."""
    src, tgt = source_models["llama-sentencepiece-untied"], target_tokenizers["byte_level"]
    rep = init_embeddings(src, tgt, tmp_path / "rnd-mean", "random", fallback="mean")
    init_embeddings(src, tgt, tmp_path / "mean", "mean")
    a, b = load_file(tmp_path / "rnd-mean" / "model.safetensors"), load_file(tmp_path / "mean" / "model.safetensors")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(a[name], b[name])
    c = rep.counts["input"]
    assert c["computed"] == 0 and c["fallback_mean"] > 0
    assert c["copied"] + c["fallback_mean"] + c["fallback"] + c["padding"] == rep.target_rows
    with pytest.raises(VocadaptError, match="fallback must be one of random, mean"):
        init_embeddings(src, tgt, tmp_path / "bad", "mean", fallback="zeros")
