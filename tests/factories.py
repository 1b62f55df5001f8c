"""Tiny tokenizers and models for hermetic tests: trained or built in-process, never downloaded.

Tokenizers of every family vocadapt must handle, trained on a small mixed English/Russian
corpus: byte-level BPE (GPT-2 / Llama-3 / Qwen style), SentencePiece-style BPE with byte
fallback (Llama-2 / Mistral style), Unigram (SentencePiece unigram), WordPiece (BERT). Models
are random, 2 layers, hidden size 32, built from configs and saved as safetensors.
"""

from __future__ import annotations

import json
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


# ------------------------------------------------------------------------------------------------
# Real-family id layouts, scaled down (issue 11). Each builder reproduces where a family keeps its
# special tokens and how it spells word boundaries; the sizes are small, the shapes are not.
# ------------------------------------------------------------------------------------------------

# Llama-3's pre-tokenizer regex (digits in groups of up to three, contractions, letter runs).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _added(content: str, tid: int, special: bool = True) -> dict:
    return {"id": tid, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


def _bytelevel_specials_after(texts: list[str], vocab_size: int, specials: list[str], regex: bool) -> Tokenizer:
    """Byte-level BPE trained without specials, the specials appended after the last BPE id."""
    tk = Tokenizer(models.BPE(ignore_merges=regex))
    if regex:  # Llama-3 / Qwen2: a Split regex, then ByteLevel without its own regex
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(pattern=tokenizers_regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tk.add_special_tokens(specials)  # ids len(vocab), len(vocab)+1, ...
    return tk


def tokenizers_regex(pattern: str):
    from tokenizers import Regex

    return Regex(pattern)


def llama3_layout(texts: list[str], vocab_size: int = 500, n_reserved: int = 14) -> PreTrainedTokenizerFast:
    """Llama-3: byte-level BPE (regex split, ignore_merges), specials after the BPE ids
    (128,000 + 256 in the real one; here ``vocab_size`` + 2 + ``n_reserved``)."""
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(n_reserved)]
    tk = _bytelevel_specials_after(texts, vocab_size, specials, regex=True)
    bos = tk.token_to_id("<|begin_of_text|>")
    tk.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")


def qwen_layout(texts: list[str], vocab_size: int = 500) -> PreTrainedTokenizerFast:
    """Qwen2/Qwen3: byte-level BPE, ``<|endoftext|>`` then chat specials after the BPE ids
    (151,643 in the real one). Pair with :func:`padded_rows` for the model's padded embedding."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<tool_call>", "</tool_call>"]
    tk = _bytelevel_specials_after(texts, vocab_size, specials, regex=True)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)


def padded_rows(n_ids: int, multiple: int = 64) -> int:
    """Embedding rows of a model whose vocabulary is padded past its tokenizer (Qwen: 151,936)."""
    return -(-n_ids // multiple) * multiple + multiple


def llama2_layout(texts: list[str], vocab_size: int = 500, legacy: bool = False) -> PreTrainedTokenizerFast:
    """Llama-2 / Mistral: ``<unk> <s> </s>``, 256 ``<0xNN>``, then BPE pieces; byte fallback.

    ``legacy=False``: the current conversion (a Metaspace pre-tokenizer with ``split=False``:
    one "word" per text, SentencePiece splits nothing). ``legacy=True``: no pre-tokenizer, a
    Prepend + Replace normalizer (older Llama-2 ``tokenizer.json`` files).
    """
    tk = sentencepiece_bpe(texts, vocab_size).backend_tokenizer
    spec = json.loads(tk.to_str())
    if legacy:
        spec["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        spec["pre_tokenizer"] = None
        spec["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    else:
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    tk = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def gemma_layout(texts: list[str], vocab_size: int = 500, n_unused: int = 60) -> PreTrainedTokenizerFast:
    """Gemma 2/3: ``<pad> <eos> <bos> <unk> <mask>``, hundreds of ``<unusedN>`` specials (here
    ``n_unused``), chat specials, 256 ``<0xNN>``, BPE pieces with byte fallback, spaces written
    as '▁' by a Replace normalizer with no pre-tokenizer, and one more special after the pieces
    (``<image_soft_token>``, the last id)."""
    head = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<unused{i}>" for i in range(n_unused)]
    head += ["<start_of_turn>", "<end_of_turn>"]
    bytes_alphabet = [f"<0x{b:02X}>" for b in range(256)]
    tk = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tk.normalizer = normalizers.Replace(" ", "▁")
    tk.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")  # training only
    tk.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size + len(head) + 256, special_tokens=head + bytes_alphabet, show_progress=False))
    spec = json.loads(tk.to_str())
    spec["pre_tokenizer"] = None
    spec["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]}
    # Byte pieces are ordinary vocabulary, not added tokens (as in the real file).
    spec["added_tokens"] = [t for t in spec["added_tokens"] if not t["content"].startswith("<0x")]
    n = max(spec["model"]["vocab"].values()) + 1
    spec["added_tokens"].append(_added("<image_soft_token>", n))
    spec["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                       {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}}
    tk = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>")


def xlmr_layout(texts: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """XLM-R: SentencePiece Unigram, ``<s> <pad> </s> <unk>`` first, ``<mask>`` as the last piece."""
    tk = Tokenizer(models.Unigram())
    tk.normalizer = normalizers.NFKC()
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tk.train_from_iterator(texts, trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False))
    spec = json.loads(tk.to_str())
    spec["model"]["vocab"].append(["<mask>", 0.0])
    spec["added_tokens"].append(_added("<mask>", len(spec["model"]["vocab"]) - 1))
    spec["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                              "trim_offsets": True, "add_prefix_space": True}
    tk = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")


# layout -> (tokenizer builder, model architecture, embedding rows from the tokenizer's id count)
LAYOUTS = {
    "smollm2": (byte_level_bpe, "llama", lambda n: n),
    "llama3": (llama3_layout, "llama", lambda n: n),
    "qwen3": (qwen_layout, "qwen2", padded_rows),
    "llama2": (llama2_layout, "llama", lambda n: n),
    "llama2-legacy": (lambda t: llama2_layout(t, legacy=True), "llama", lambda n: n),
    "gemma3": (gemma_layout, "llama", lambda n: n),
    "bert": (wordpiece, "bert", lambda n: n),
    "xlm-r": (xlmr_layout, "xlm-roberta", lambda n: n),
}


def layout_model(layout: str, path: Path, texts: list[str] | None = None) -> Path:
    """Save a tiny random model with the tokenizer of ``layout`` (see :data:`LAYOUTS`) at ``path``."""
    build, arch, rows = LAYOUTS[layout]
    tok = build(texts or corpus("en", 300) + corpus("mixed", 100, seed=1))
    n_ids = max(tok.get_vocab().values()) + 1
    return save_model(tiny_model(arch, rows(n_ids), tied=arch != "bert"), tok, path)


# Round-trip probes for tokenizers of every family: scripts, whitespace runs, emoji sequences,
# chat markup (also used by benchmarks/tokenizer_families.py).
MIXED = [
    "Привет, мир! Hello, world.",
    "def f(x):\n\treturn x + 1  # вернуть 😀👍🏽 👨‍👩‍👧",
    "  два  пробела\tи табуляция\n\n  отступ ",
    "ёжик naïve 2024 3.14159 ΩMEGA 日本語",
    "<|im_start|>user\nКак дела?<|im_end|>",
]
