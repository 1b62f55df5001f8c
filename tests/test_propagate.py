"""LEP propagation where the truth is known: instruct = base @ M + small noise, perturbed layers."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import factories as fx
from vocadapt.errors import VocadaptError
from vocadapt.init import init_embeddings
from vocadapt.propagate import PropagateConfig, propagate
from vocadapt.tokenizer.load import load_tokenizer

INSTRUCT_TEMPLATE = fx.CHAT_TEMPLATE + "{# instruct twin #}"
EXTRA_CHAT_TOKEN = "<|tool|>"
NOISE = 1e-5


def _weights(path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _known_map(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.eye(d) + 0.3 * torch.randn(d, d, generator=g) / d**0.5


def make_pair(root: Path, tied: bool, arch: str = "llama") -> dict:
    """Base, instruct twin (known maps, noisy, perturbed layers, an extra chat token) and adapted base."""
    base_tok = fx.byte_level_bpe(fx.corpus("en", 300) + fx.corpus("mixed", 100, seed=1))
    base = fx.tiny_model(arch, len(base_tok), tied, seed=0)
    base_dir = fx.save_model(base, base_tok, root / "base")

    g = torch.Generator().manual_seed(7)
    d = base.config.hidden_size
    m_in, m_out = _known_map(d, 1), _known_map(d, 2)
    inst = fx.tiny_model(arch, len(base_tok), tied, seed=0)
    inst_tok = load_tokenizer(base_dir)
    inst_tok.add_tokens([EXTRA_CHAT_TOKEN], special_tokens=True)
    inst_tok.chat_template = INSTRUCT_TEMPLATE
    with torch.no_grad():
        for name, p in inst.named_parameters():  # the instruct model's layers moved away from the base's
            p.add_(0.01 * torch.randn(p.shape, generator=g))
        e = base.get_input_embeddings().weight
        inst.get_input_embeddings().weight.copy_(e @ m_in + NOISE * torch.randn(e.shape, generator=g))
        if not tied:
            o = base.get_output_embeddings().weight
            inst.get_output_embeddings().weight.copy_(o @ m_out + NOISE * torch.randn(o.shape, generator=g))
        inst.resize_token_embeddings(len(inst_tok))
        chat_rows = {}
        for t in ("<|im_start|>", "<|im_end|>", EXTRA_CHAT_TOKEN):  # chat tokens: trained apart, not on the map
            tid = inst_tok.convert_tokens_to_ids(t)
            inst.get_input_embeddings().weight[tid] = torch.randn(d, generator=g)
            if not tied:
                inst.get_output_embeddings().weight[tid] = torch.randn(d, generator=g)
            chat_rows[t] = tid
    inst_dir = fx.save_model(inst, inst_tok, root / "instruct")

    tgt_tok = fx.byte_level_bpe(fx.corpus("ru", 300, seed=2) + fx.corpus("mixed", 100, seed=3))
    tgt_dir = root / "target_tok"
    tgt_tok.save_pretrained(tgt_dir)
    adapted_dir = root / "adapted"
    init_embeddings(base_dir, tgt_dir, adapted_dir, "mean")
    return {"base": base_dir, "instruct": inst_dir, "adapted": adapted_dir, "m_in": m_in, "m_out": m_out, "tied": tied}


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def pair(request, tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp(f"pair-{request.param}"), request.param)


def _vocab_names(tied: bool) -> tuple[str, ...]:
    return ("model.embed_tokens.weight",) if tied else ("model.embed_tokens.weight", "lm_head.weight")


def _ordinary_ids(tok) -> list[int]:
    from vocadapt.tokenizer.canonical import special_ids

    specials = special_ids(tok)
    return [i for i in range(len(tok)) if i not in specials]


def _refit(pair: dict, method: str, name: str) -> torch.Tensor:
    """The map the method fits, recomputed from its parts (propagate writes only its product)."""
    from vocadapt.propagate.lep import fit_map, fit_pairs, mean_rows
    from vocadapt.tokenizer.align import align_vocabularies
    from vocadapt.tokenizer.canonical import special_ids

    base_tok, inst_tok = load_tokenizer(pair["base"]), load_tokenizer(pair["instruct"])
    alignment = align_vocabularies(base_tok, load_tokenizer(pair["adapted"]))
    pairs = fit_pairs(alignment, method, special_ids(base_tok) | special_ids(inst_tok))
    return fit_map(mean_rows(_weights(pair["base"])[name], pairs), mean_rows(_weights(pair["instruct"])[name], pairs))


@pytest.mark.parametrize("method", ["swap", "overlap", "conversion"])
def test_propagation_recovers_the_known_map(pair, method, tmp_path):
    out = tmp_path / "out"
    report = propagate(pair["base"], pair["instruct"], pair["adapted"], out, PropagateConfig(method=method))
    got, inst, adapted = _weights(out), _weights(pair["instruct"]), _weights(pair["adapted"])
    out_tok = load_tokenizer(out)
    ordinary = torch.tensor(_ordinary_ids(load_tokenizer(pair["adapted"])))

    for name, m, matrix in zip(_vocab_names(pair["tied"]), (pair["m_in"], pair["m_out"]), ("input", "output")):
        fit = report.fits[matrix]
        rows = got[name][ordinary].double()
        if method == "swap":
            assert fit.fit_tokens == 0
            assert torch.equal(got[name][ordinary], adapted[name][ordinary])  # P = I exactly
            continue
        truth = adapted[name][ordinary].double() @ m.double()
        row_err = float(torch.linalg.norm(rows - truth) / torch.linalg.norm(truth))
        p = _refit(pair, method, name)
        map_err = float(torch.linalg.norm(p - m.double()) / torch.linalg.norm(m.double()))
        print(f"{method} {matrix} {'tied' if pair['tied'] else 'untied'}: fit on {fit.fit_tokens} tokens, "
              f"residual {fit.residual:.2e}, map error {map_err:.2e}, propagated-row error {row_err:.2e}")
        assert fit.fit_tokens >= got[name].shape[1]
        assert fit.residual < 1e-2  # only the small noise is left
        assert map_err < 1e-2 and row_err < 1e-3

    # Layers: the instruct model's, bit for bit; nothing else changed.
    assert set(got) == set(inst)
    for name in inst:
        if name not in _vocab_names(pair["tied"]):
            assert torch.equal(got[name], inst[name]), name
    # Special and chat tokens keep their instruct rows; the missing one was appended.
    inst_tok = load_tokenizer(pair["instruct"])
    for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", EXTRA_CHAT_TOKEN):
        for name in _vocab_names(pair["tied"]):
            assert torch.equal(got[name][out_tok.convert_tokens_to_ids(t)], inst[name][inst_tok.convert_tokens_to_ids(t)]), t
    assert report.appended_tokens == [EXTRA_CHAT_TOKEN]
    assert out_tok.chat_template == INSTRUCT_TEMPLATE
    assert out_tok.eos_token == inst_tok.eos_token
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == got["model.embed_tokens.weight"].shape[0] == len(out_tok)
    prov = json.loads((out / "vocadapt.json").read_text())
    assert prov["step"] == "propagate" and prov["results"]["fits"]["input"]["residual"] == report.fits["input"].residual
    # It loads and generates through the instruct chat template.
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = out_tok.apply_chat_template([{"role": "user", "content": "привет мир"}], tokenize=False, add_generation_prompt=True)
    ids = out_tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3


def test_refusals_name_the_mismatch(pair, tmp_path):
    base, inst, adapted = pair["base"], pair["instruct"], pair["adapted"]
    with pytest.raises(VocadaptError, match="still has the base model's vocabulary"):
        propagate(base, inst, base, tmp_path / "a")
    other_tok = load_tokenizer(base)
    wide = fx.save_model(fx.tiny_model("qwen2", len(other_tok), pair["tied"]), other_tok, tmp_path / "qwen")
    with pytest.raises(VocadaptError, match="qwen2 model but the base is llama"):
        propagate(base, wide, adapted, tmp_path / "b")
    deeper = AutoModelForCausalLM.from_pretrained(base)
    deeper.config.num_hidden_layers = 3
    deep_dir = fx.save_model(type(deeper)(deeper.config), other_tok, tmp_path / "deep")
    with pytest.raises(VocadaptError, match="not a same-shaped twin of the base: extra"):
        propagate(base, deep_dir, adapted, tmp_path / "c")
    assert not (tmp_path / "c").exists()
    with pytest.raises(VocadaptError, match=r"overlap: only \d+ tokens to fit a 32 x 32 map \(need 100000\)"):
        propagate(base, inst, adapted, tmp_path / "d", PropagateConfig(method="overlap", min_fit_tokens=100_000))
    with pytest.raises(ValueError, match="did you mean 'overlap'"):
        PropagateConfig(method="overlapp")


def test_an_adapted_model_with_trained_layers_is_warned_about(pair, tmp_path, caplog):
    """--body instruct (LEP proper) carries embedding rows only: a base that trained decoder layers loses them, and is told so."""
    def warned(adapted: Path) -> bool:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vocadapt"):
            propagate(pair["base"], pair["instruct"], adapted, tmp_path / adapted.name / "out",
                      PropagateConfig(method="swap", body="instruct"))
        return any("trained decoder layers (--trainable layers:0,-1)" in r.getMessage() for r in caplog.records)

    assert not warned(pair["adapted"])  # init provenance: no trainable set
    layered = tmp_path / "layered"
    shutil.copytree(pair["adapted"], layered)
    record = json.loads((layered / "vocadapt.json").read_text(encoding="utf-8"))
    record.update(step="train", config={"trainable": "layers:0,-1"})
    (layered / "vocadapt.json").write_text(json.dumps(record), encoding="utf-8")
    assert warned(layered)


def test_body_delta_adds_what_training_changed_in_the_layers(pair, tmp_path):
    """--body delta: each body tensor the adapted base changed is W_inst + (W_adapted - W_base);
    the untouched ones (and, with --body instruct, all of them) stay the instruct model's."""
    from safetensors.torch import load_file, save_file

    layered = tmp_path / "layered"
    shutil.copytree(pair["adapted"], layered)
    tensors = load_file(layered / "model.safetensors")
    body = sorted(n for n in tensors if ".layers." in n)
    changed = [n for n in body if n.startswith("model.layers.0.")]
    g = torch.Generator().manual_seed(3)
    for n in changed:
        tensors[n] = tensors[n] + 0.1 * torch.randn(tensors[n].shape, generator=g)
    save_file(tensors, layered / "model.safetensors", metadata={"format": "pt"})
    base, inst = load_file(pair["base"] / "model.safetensors"), load_file(pair["instruct"] / "model.safetensors")

    report = propagate(pair["base"], pair["instruct"], layered, tmp_path / "delta", PropagateConfig(body="delta"))
    out = load_file(tmp_path / "delta" / "model.safetensors")
    assert report.body_deltas == sorted(changed) and changed and report.body == "delta"
    for n in body:
        want = inst[n] + (tensors[n] - base[n]) if n in changed else inst[n]
        torch.testing.assert_close(out[n], want.to(inst[n].dtype), rtol=0, atol=1e-6)
    assert not torch.equal(out[changed[0]], inst[changed[0]])
    # The vocabulary rows do not depend on the body choice; auto is instruct for a base whose
    # provenance does not say it trained layers...
    auto = propagate(pair["base"], pair["instruct"], layered, tmp_path / "plain")
    plain = load_file(tmp_path / "plain" / "model.safetensors")
    assert auto.body == "instruct" and not auto.body_deltas
    for n in plain:
        assert torch.equal(plain[n], inst[n] if n in body else out[n]), n
    # ... and delta for one whose provenance does (vocadapt train --trainable layers:...).
    record = json.loads((layered / "vocadapt.json").read_text(encoding="utf-8"))
    record.update(step="train", config={"trainable": "layers:0"})
    (layered / "vocadapt.json").write_text(json.dumps(record), encoding="utf-8")
    auto = propagate(pair["base"], pair["instruct"], layered, tmp_path / "auto")
    assert auto.body == "delta" and auto.body_deltas == sorted(changed)
    assert load_file(tmp_path / "auto" / "model.safetensors").keys() == out.keys()
    for n, t in load_file(tmp_path / "auto" / "model.safetensors").items():
        assert torch.equal(t, out[n]), n
    with pytest.raises(ValueError, match="body must be one of auto, instruct, delta"):
        PropagateConfig(body="deltas")


def test_cli_propagate(pair, tmp_path, capsys):
    from vocadapt.cli import main

    out = tmp_path / "cli"
    main(["propagate", "--base", str(pair["base"]), "--instruct", str(pair["instruct"]), "--adapted", str(pair["adapted"]),
          "--method", "overlap", "--out", str(out)])
    text = capsys.readouterr().out
    assert "fit tokens" in text and "wrote" in text and (out / "model.safetensors").exists()


def test_keep_text_grafts_the_base_pieces_with_their_instruct_rows(pair, tmp_path):
    """A marker the instruct model writes and its chat template's role names split as in the base."""
    from vocadapt.propagate.lep import chat_template_text

    base_tok, inst_tok = load_tokenizer(pair["base"]), load_tokenizer(pair["instruct"])
    adapted_tok = load_tokenizer(pair["adapted"])
    words = sorted({w for s in fx.corpus("en", 300) for w in s.split() if w.isalpha()}, key=len, reverse=True)

    def pieces(tok, text):
        return tok.backend_tokenizer.encode(text, add_special_tokens=False).tokens

    # An English word with a base piece the Russian-trained tokenizer lacks, as "win" of "[twin]" in SmolLM2.
    new_vocab = adapted_tok.get_vocab()
    marker = next(f"[{w}]" for w in words if any(p not in new_vocab for p in pieces(base_tok, f"[{w}]")))
    assert chat_template_text(inst_tok) == ["system\n", "user\n", "assistant\n"]
    out = tmp_path / "out"
    report = propagate(pair["base"], pair["instruct"], pair["adapted"], out,
                       PropagateConfig(method="conversion", keep_text=[marker], keep_chat=True))
    out_tok = load_tokenizer(out)
    assert report.grafted_tokens and report.kept_text_differs == []
    for text in [marker, "assistant\n", "user\n"]:
        assert pieces(out_tok, text) == pieces(base_tok, text), text
    got, inst = _weights(out), _weights(pair["instruct"])
    for token in report.grafted_tokens:
        base_ids = [t.id for t in base_tok.backend_tokenizer.model.tokenize(token)]
        for name in _vocab_names(pair["tied"]):  # a base token's own instruct row; else the mean of its base pieces'
            assert torch.allclose(got[name][out_tok.convert_tokens_to_ids(token)], inst[name][base_ids].mean(0)), token
    # The other tokens are the plain conversion output, and the model loads with the grown vocabulary.
    plain = propagate(pair["base"], pair["instruct"], pair["adapted"], tmp_path / "plain", PropagateConfig(method="conversion"))
    assert plain.grafted_tokens == [] and torch.equal(_weights(tmp_path / "plain")["model.embed_tokens.weight"],
                                                      got["model.embed_tokens.weight"][: len(load_tokenizer(tmp_path / "plain"))])
    assert json.loads((out / "config.json").read_text())["vocab_size"] == len(out_tok) == got["model.embed_tokens.weight"].shape[0]
    assert AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.shape[0] == len(out_tok)
    prov = json.loads((out / "vocadapt.json").read_text())
    assert prov["results"]["grafted_tokens"] == report.grafted_tokens and prov["config"]["keep_text"] == [marker]
