"""Tiny tokenizers and models for hermetic tests: trained or built in-process, never downloaded.

Tokenizers of every family vocadapt must handle, trained on a small mixed English/Russian
corpus: byte-level BPE (GPT-2 / Llama-3 / Qwen style), SentencePiece-style BPE with byte
fallback (Llama-2 / Mistral style), Unigram (SentencePiece unigram), WordPiece (BERT). Models
are random, 2 layers, hidden size 32, built from configs and saved as safetensors.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

EN_WORDS = (
    "the model reads text and the tokenizer splits words into pieces while training runs on small data "
    "language adaptation needs new embeddings for every new token in the vocabulary of a model"
).split()
RU_WORDS = (
    "модель читает текст и токенизатор делит слова на части пока обучение идёт на малых данных "
    "адаптация языка требует новых векторов для каждого нового токена в словаре модели привет мир"
).split()
EXTRA = ["2024", "3.14", "😀", "ёжик", "naïve", "Ωmega", "\t", "  "]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus(lang: str = "mixed", n: int = 400, seed: int = 0) -> list[str]:
    """Deterministic sentences: 'en', 'ru' or 'mixed' (both plus digits, emoji, odd spacing)."""
    rng = random.Random(seed)
    words = {"en": EN_WORDS, "ru": RU_WORDS, "mixed": EN_WORDS + RU_WORDS + EXTRA}[lang]
    out = []
    for _ in range(n):
        sent = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        out.append(sent[0].upper() + sent[1:] + rng.choice([".", "!", "?", ""]))
    return out


BL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SP_SPECIALS = ["<unk>", "<s>", "</s>"]
WP_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def byte_level_bpe(texts: list[str], vocab_size: int = 500) -> PreTrainedTokenizerFast:
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(
        texts,
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=BL_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<|endoftext|>",
        pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE,
    )


def sentencepiece_bpe(texts: list[str], vocab_size: int = 500) -> PreTrainedTokenizerFast:
    """Llama-2 style: Metaspace, BPE with byte fallback, <s> prepended by the post-processor."""
    tk = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tk.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"), decoders.ByteFallback(), decoders.Fuse()])
    bytes_alphabet = [f"<0x{b:02X}>" for b in range(256)]
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size + 256, special_tokens=SP_SPECIALS + bytes_alphabet, show_progress=False))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def unigram(texts: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tk = Tokenizer(models.Unigram())
    tk.normalizer = normalizers.NFKC()
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tk.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SP_SPECIALS, unk_token="<unk>", show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def wordpiece(texts: list[str], vocab_size: int = 500) -> PreTrainedTokenizerFast:
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=False)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    tk.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=WP_SPECIALS, show_progress=False))
    tk.post_processor = processors.BertProcessing(("[SEP]", tk.token_to_id("[SEP]")), ("[CLS]", tk.token_to_id("[CLS]")))
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )


TOKENIZERS = {"byte_level": byte_level_bpe, "sentencepiece": sentencepiece_bpe, "unigram": unigram, "wordpiece": wordpiece}


def tiny_model(arch: str, n_vocab: int, tied: bool, seed: int = 0):
    """A random 2-layer model of ``arch`` ('llama', 'qwen2', 'gpt2', 'gpt_neox', 'bert', 'xlm-roberta')."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=n_vocab, tie_word_embeddings=tied)
    if arch in ("llama", "qwen2", "mistral"):
        cfg_cls = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "mistral": tf.MistralConfig}[arch]
        cfg = cfg_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, **common)
        return tf.AutoModelForCausalLM.from_config(cfg)
    if arch == "gpt2":
        cfg = tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common)
        return tf.GPT2LMHeadModel(cfg)
    if arch == "gpt_neox":
        cfg = tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               max_position_embeddings=128, **common)
        return tf.GPTNeoXForCausalLM(cfg)
    if arch == "bert":
        cfg = tf.BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            max_position_embeddings=128, **common)
        return tf.BertForMaskedLM(cfg)
    if arch == "xlm-roberta":
        cfg = tf.XLMRobertaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  max_position_embeddings=130, **common)
        return tf.XLMRobertaForMaskedLM(cfg)
    raise ValueError(arch)


def save_model(model, tokenizer, path: Path, max_shard_size: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, safe_serialization=True, **kwargs)
    tokenizer.save_pretrained(path)
    return path
