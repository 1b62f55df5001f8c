"""Tiny random causal LMs and in-process tokenizers for the evaluation tests (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = [
    "Умный в гору не пойдёт, умный гору обойдёт.",
    "Ничто так не старит, как третья фотография в паспорте.",
    "Обещанного три года ждут, а потом ещё немного.",
    "The quick brown fox jumps over the lazy dog.",
    "A bird in the hand is worth two in the bush.",
    "Кто рано встаёт, тому бог подаёт. Ответ: A, B, C, D.",
] * 4

CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant\n{% endif %}"
)


def make_tokenizer(vocab_size: int = 300, *, bos: bool = True, chat: bool = True):
    """A byte-level BPE trained here, wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<bos>", "<eos>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    kwargs = dict(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    if bos:
        kwargs["bos_token"] = "<bos>"
    fast = PreTrainedTokenizerFast(**kwargs)
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(vocab_size: int, seed: int = 0, **overrides):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    # Sharpen the random model a little so greedy decoding and probabilities are not flat.
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(20.0)
    return model


def save_tiny(dest: Path, *, bos: bool = True, chat: bool = True, seed: int = 0) -> Path:
    tok = make_tokenizer(bos=bos, chat=chat)
    model = make_model(len(tok), seed=seed)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "tiny-a")


@pytest.fixture(scope="session")
def tiny_dir_b(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "tiny-b", seed=1, chat=False)


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from vocadapt.model import load_model

    return load_model(tiny_dir)
