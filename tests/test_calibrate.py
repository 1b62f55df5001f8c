"""Calibration: chat data with assistant-only loss, copy examples, LoRA through the engine, merge/adapter;
and the whole LEP chain train -> propagate -> calibrate -> generate on a tiny in-process pair."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import factories as fx
from vocadapt.errors import VocadaptError
from vocadapt.propagate import CalibrateConfig, PropagateConfig, calibrate, propagate
from vocadapt.propagate.calibrate import copy_conversations, encode_conversation, read_conversations
from vocadapt.tokenizer.load import load_tokenizer

FAST = dict(steps=4, warmup_steps=0, eval_every=0, batch_size=4, val_examples=2, lora_r=4, lora_alpha=8,
            progress=False, lr=5e-3, max_length=96)


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    return _chat_model(tmp_path_factory.mktemp("calib"), tied=False)


def _chat_model(root, tied: bool) -> dict:
    tok = fx.byte_level_bpe(fx.corpus("mixed", 300))
    model_dir = fx.save_model(fx.tiny_model("llama", len(tok), tied=tied), tok, root / "model")
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "OK: " + q[::-1]}]}
            for q in fx.corpus("en", 24, seed=5)]
    data = root / "chat.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    text = root / "ru.txt"
    text.write_text("\n%\n".join(" ".join(fx.corpus("ru", 4, seed=i)) for i in range(12)) + "\n", encoding="utf-8")
    return {"model": model_dir, "data": data, "text": text}


def test_loss_only_on_assistant_turns(chat_model):
    tok = load_tokenizer(chat_model["model"])
    conv = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello there"}, {"role": "user", "content": "again"},
            {"role": "assistant", "content": "мир"}]
    ids, labels = encode_conversation(tok, conv, 1000)
    assert ids == tok(tok.apply_chat_template(conv, tokenize=False), add_special_tokens=False)["input_ids"]
    learned = tok.decode([i for i, lab in zip(ids, labels) if lab != -100])
    assert learned == "hello there<|im_end|>\nмир<|im_end|>\n"
    ids, labels = encode_conversation(tok, conv, 10)
    assert len(ids) == len(labels) == 10


def test_copy_conversations_and_bad_jsonl(chat_model, tmp_path):
    texts = ["Короткий.", "Это абзац текста на русском языке, достаточно длинный, чтобы стать примером копирования."]
    convs = copy_conversations(texts, 3, chars=(40, 600))
    assert len(convs) == 3 and convs[0][1]["content"] == texts[1] and texts[1] in convs[0][0]["content"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "x"}]}\n', encoding="utf-8")
    with pytest.raises(VocadaptError, match="bad.jsonl:1: no assistant turn"):
        read_conversations(bad)
    with pytest.raises(ValueError, match="keep_adapter stores only the LoRA weights"):
        CalibrateConfig(keep_adapter=True, train_embeddings=True)


def test_calibrate_merges_lora_into_the_changed_tensors_only(chat_model, tmp_path):
    cfg = CalibrateConfig(**FAST, train_embeddings=True, copy_examples=8, copy_chars=[40, 600])
    result = calibrate(chat_model["model"], tmp_path / "run", cfg, instructions=chat_model["data"], copy_text=chat_model["text"])
    assert result.examples == {"instructions": 24, "copy": 8, "validation": 2}
    before, after = load_file(chat_model["model"] / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    assert set(before) == set(after)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    # LoRA on every linear layer of the body, the embedding trained; norms and the frozen head untouched.
    assert "model.embed_tokens.weight" in changed and "lm_head.weight" not in changed
    assert {n for n in changed if "layers" in n} == {n for n in before if n.endswith("proj.weight")}
    assert not any("norm" in n for n in changed)
    assert (result.model_dir / "tokenizer.json").exists()
    prov = json.loads((result.model_dir / "vocadapt.json").read_text())
    assert prov["step"] == "calibrate" and prov["results"]["steps"] == 4


def test_embedding_lr_bounds_how_far_the_rows_move(chat_model, tmp_path):
    # Adam moves a parameter by at most about lr per step: 4 steps at 1e-7 stay far below 1e-5,
    # while the LoRA layers (lr 5e-3) change.
    cfg = CalibrateConfig(**FAST, train_embeddings=True, embedding_lr=1e-7, copy_examples=0)
    result = calibrate(chat_model["model"], tmp_path / "run", cfg, instructions=chat_model["data"])
    before, after = load_file(chat_model["model"] / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    moved = (after["model.embed_tokens.weight"] - before["model.embed_tokens.weight"]).abs().max()
    assert 0 < moved < 1e-5
    assert (after["model.layers.0.self_attn.q_proj.weight"] - before["model.layers.0.self_attn.q_proj.weight"]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="embedding_lr must be 0"):
        CalibrateConfig(embedding_lr=-1.0)


def test_calibrate_keeps_an_adapter(chat_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = CalibrateConfig(**{**FAST, "steps": 2}, keep_adapter=True, target_modules=["q_proj", "v_proj"], lora_layers=[-1])
    result = calibrate(chat_model["model"], tmp_path / "run", cfg, instructions=chat_model["data"])
    assert (result.model_dir / "adapter_config.json").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(chat_model["model"]), result.model_dir)
    lora = [n for n, _ in model.named_parameters() if "lora_A" in n]
    assert lora and all(".layers.1." in n for n in lora) and {n.split(".")[-4] for n in lora} == {"q_proj", "v_proj"}
    with pytest.raises(VocadaptError, match="nothing to calibrate on"):
        calibrate(chat_model["model"], tmp_path / "none", cfg)


def test_chain_train_propagate_calibrate_generate(tmp_path):
    """The LEP pipeline end to end on a tiny pair made in-process."""
    from test_propagate import make_pair

    from vocadapt.evaluate.lm import GenArgs, HFLM
    from vocadapt.train import TrainConfig, train_embeddings

    pair = make_pair(tmp_path / "pair", tied=True)
    corpus = tmp_path / "ru.txt"
    corpus.write_text("\n%\n".join(fx.corpus("ru", 200, seed=9)) + "\n", encoding="utf-8")
    trained = train_embeddings(pair["adapted"], corpus, tmp_path / "train",
                               TrainConfig(steps=3, batch_size=4, seq_len=32, eval_every=0, progress=False, warmup_steps=0))
    prop = propagate(pair["base"], pair["instruct"], trained.model_dir, tmp_path / "prop", PropagateConfig(method="conversion"))
    assert prop.fits["input"].fit_tokens > 0
    from pathlib import Path

    from vocadapt.propagate.calibrate import teacher_from

    assert teacher_from(tmp_path / "prop") == Path(pair["instruct"])  # whose answers --copy-answers instruct learns
    assert teacher_from(trained.model_dir) is None
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": s}, {"role": "assistant", "content": s}]},
                                       ensure_ascii=False) + "\n" for s in fx.corpus("ru", 12, seed=4)), encoding="utf-8")
    calib = calibrate(tmp_path / "prop", tmp_path / "calib", CalibrateConfig(**FAST), instructions=chat, copy_text=corpus)
    lm = HFLM.from_dir(calib.model_dir)
    assert lm.tokenizer.chat_template == load_tokenizer(pair["instruct"]).chat_template
    prompt = lm.chat("привет мир")
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    gen = lm.generate_until([(prompt, GenArgs(max_new_tokens=4, min_new_tokens=4))])[0]
    assert gen.n_tokens == 4


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_merged_tensors_reproduce_the_peft_model(tmp_path, tied):
    """LoRA merged, and the trained embedding and head rows written as trained (not the input's)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from vocadapt.io.checkpoint import Checkpoint, write_checkpoint
    from vocadapt.propagate.calibrate import merged_tensors

    ckpt = Checkpoint(_chat_model(tmp_path / "in", tied)["model"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(ckpt.path), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    g = torch.Generator().manual_seed(0)
    trained = [model.get_input_embeddings().weight] + ([] if tied else [model.get_output_embeddings().weight])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)  # B starts at zero: give the adapters an effect
        for p in trained:  # as training would have moved them
            p.requires_grad_(True)
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    out = merged_tensors(model, ckpt)
    names = [ckpt.vocab.input] + ([] if tied else [ckpt.vocab.output])
    assert (ckpt.vocab.output is None) == tied
    for name, p in zip(names, trained):
        assert torch.equal(out[name], p.detach()), name
    write_checkpoint(ckpt, tmp_path / "out", out, {})
    written = load_file(tmp_path / "out" / "model.safetensors")
    assert all(torch.equal(written[name], p.detach()) for name, p in zip(names, trained))
    assert ("lm_head.weight" in written) != tied
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = torch.tensor([[1, 5, 9, 30, 2]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, model.eval()(ids).logits, atol=1e-4)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_train_head_writes_the_trained_head(tmp_path, tied):
    """--train-head: the output holds exactly the head the run trained (its checkpoint's tensor);
    untied, the input embedding stays the input's; tied, the one shared matrix is the head."""
    data = _chat_model(tmp_path / "in", tied)
    cfg = CalibrateConfig(**{**FAST, "steps": 2}, train_head=True, copy_examples=0, target_modules=["q_proj"],
                          lora_layers=[-1])
    result = calibrate(data["model"], tmp_path / "run", cfg, instructions=data["data"])
    before, after = load_file(data["model"] / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    # The engine's checkpoint holds the trainable tensors as the optimizer left them.
    state = load_file(tmp_path / "run" / "checkpoints" / "step-000002" / "model.safetensors")
    head = "model.embed_tokens.weight" if tied else "lm_head.weight"
    trained = [v for k, v in state.items() if k.endswith(head)]
    assert len(trained) == 1, sorted(state)
    assert torch.equal(after[head], trained[0]) and not torch.equal(after[head], before[head])
    if not tied:
        assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert set(after) == set(before)


def test_copy_answers_come_from_the_instruct_model(monkeypatch):
    """``copy_answers: instruct``: the assistant turn is the instruct model's own answer (its
    marker kept), asked once per distinct paragraph; an answer that is not a copy is dropped."""
    from vocadapt.evaluate import lm as lm_module
    from vocadapt.propagate.calibrate import instruct_answers

    texts = ["Первый абзац текста, который модель должна повторить дословно.",
             "Второй абзац, который модель перескажет своими словами вместо копии."]
    asked: list[str] = []

    class Teacher:
        def chat(self, q):
            return q

        def count_tokens(self, text):
            return len(text.split())

        def generate_batched(self, requests):
            asked.extend(p for p, _ in requests)
            return [f" [m] {texts[0]}" if texts[0] in p else "Не буду." for p, _ in requests]

    loaded: list[str] = []
    monkeypatch.setattr(lm_module.HFLM, "from_dir", classmethod(lambda cls, *a, **k: loaded.append(k["dtype"]) or Teacher()))
    monkeypatch.setattr("vocadapt.model.cpu_has_native_bf16", lambda: True)
    convs = copy_conversations(texts, 5, chars=(40, 600))
    kept, dropped = instruct_answers("teacher", convs, progress=False)
    assert loaded == ["bfloat16"]  # answers are data: bf16 where the CPU does it natively
    assert len(asked) == 2  # five examples over two paragraphs: two generations
    assert dropped == len(convs) - len(kept) > 0
    assert kept and all(c[1]["content"] == f"[m] {texts[0]}" and texts[0] in c[0]["content"] for c in kept)


def test_batched_generation_equals_one_at_a_time(chat_model):
    from vocadapt.evaluate.lm import GenArgs, HFLM

    lm = HFLM.from_dir(chat_model["model"], batch_size=2)
    prompts = [lm.chat(q) for q in ("a", "привет, как дела у тебя сегодня?", "one two three")]
    one = [g.text for g in lm.generate_until([(p, GenArgs(max_new_tokens=n)) for p, n in zip(prompts, (5, 7, 3))])]
    assert lm.generate_batched(list(zip(prompts, (5, 7, 3)))) == one


def test_copy_answers_instruct_needs_the_instruct_model(chat_model, tmp_path):
    cfg = CalibrateConfig(**FAST, copy_answers="instruct", copy_examples=4, copy_chars=[20, 600])
    with pytest.raises(VocadaptError, match="the instruct model to answer the copy examples is unknown; pass --teacher") as e:
        calibrate(chat_model["model"], tmp_path / "c", cfg, copy_text=chat_model["text"])
    assert "\n" not in str(e.value) and not (tmp_path / "c").exists()
    # A random tiny model copies nothing: said in one line, nothing written.
    cfg = CalibrateConfig(**{**FAST, "max_length": 64}, copy_answers="instruct", copy_examples=4, copy_chars=[20, 600],
                          teacher=str(chat_model["model"]))
    with pytest.raises(VocadaptError, match="copied none of the copy examples"):
        calibrate(chat_model["model"], tmp_path / "c", cfg, copy_text=chat_model["text"])
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="copy_answers must be one of auto, instruct, text"):
        CalibrateConfig(copy_answers="teacher")


def test_instruct_answers_are_reused_from_the_cache_until_the_model_changes(chat_model, tmp_path, monkeypatch):
    """The instruct model's answers are cached by its content, dtype and prompts: the same
    calibration run again generates nothing; another model (one weight changed) answers anew."""
    import shutil

    from safetensors.torch import load_file, save_file

    from vocadapt.evaluate.lm import HFLM
    from vocadapt.propagate.calibrate import instruct_answers

    generated: list[int] = []
    real = HFLM.generate_batched
    monkeypatch.setattr(HFLM, "generate_batched", lambda self, reqs: generated.append(len(reqs)) or real(self, reqs))
    convs = copy_conversations([" ".join(fx.corpus("ru", 4, seed=i)) for i in range(3)], 4, chars=(20, 2000))
    first = instruct_answers(chat_model["model"], convs, progress=False)
    assert generated == [3]  # four examples over three paragraphs
    assert instruct_answers(chat_model["model"], convs, progress=False) == first and generated == [3]
    assert instruct_answers(chat_model["model"], convs, progress=False, use_cache=False) == first and generated == [3, 3]
    other = shutil.copytree(chat_model["model"], tmp_path / "other")
    weights = load_file(other / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    instruct_answers(other, convs, progress=False)
    assert generated == [3, 3, 3]
    assert instruct_answers(chat_model["model"], convs[:2], progress=False)[0] is not None and generated == [3, 3, 3, 2]


def test_a_missing_model_is_refused_before_the_instruct_model_answers(chat_model, tmp_path, monkeypatch):
    from vocadapt.evaluate.lm import HFLM

    monkeypatch.setattr(HFLM, "generate_batched", lambda self, reqs: pytest.fail("answered copy prompts for a missing model"))
    cfg = CalibrateConfig(**FAST, copy_answers="instruct", copy_examples=4, copy_chars=[20, 600], teacher=str(chat_model["model"]))
    with pytest.raises(VocadaptError, match="model directory not found: .*missing") as e:
        calibrate(tmp_path / "missing", tmp_path / "c", cfg, copy_text=chat_model["text"])
    assert "\n" not in str(e.value) and not (tmp_path / "c").exists()
