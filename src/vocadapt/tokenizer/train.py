"""``train``: a new tokenizer learned on the target corpus, shaped like the source model's.

With ``like=SOURCE`` the source's normalizer, pre-tokenizer (digit splitting, byte-level
mapping), decoder, post-processor, special tokens and chat template are copied and only the
model (vocabulary + merges or scored pieces) is learned, so the result drops into that model's
pipeline. Without ``like`` the conventions are SentencePiece-style as in the LEP paper: spaces
as '▁', digits split one by one, ``<0xNN>`` byte fallback, specials ``<unk> <s> </s>``.
``--kind unigram --like`` a byte-level model takes those SentencePiece conventions with the
source's special tokens and chat template (see :func:`_unigram_like_bytelevel` for why).

Vocabulary layout of the result: added/special tokens first (in the source's order), then the
256 byte pieces for byte-fallback families, then the learned tokens.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vocadapt.corpus import CorpusStats
from vocadapt.errors import VocadaptError
from vocadapt.io.atomic import check_output_dir
from vocadapt.tokenizer import build as C
from vocadapt.tokenizer.canonical import check_id_layout, model_vocab

KINDS = ("bpe", "unigram")


@dataclass
class TrainConfig(C.CorpusOptions):
    """Options of ``vocadapt tokenizer train``."""

    kind: str = field(default="bpe", metadata={"help": "model type to learn: bpe or unigram"})
    vocab_size: int = field(default=32000, metadata={"help": "total size: specials + byte pieces + learned tokens"})
    like: str | None = field(default=None, metadata={"help": "source model/tokenizer dir whose conventions to copy"})
    min_frequency: int = field(default=2, metadata={"help": "BPE: a pair must occur this often to be merged"})
    max_alphabet: int = field(
        default=1000, metadata={"help": "byte-fallback families: keep only the N most frequent characters"}
    )


def _default_sentencepiece_json() -> dict:
    """tokenizer.json skeleton with LEP/Llama-2 conventions (model filled in by training)."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for i, t in enumerate(["<unk>", "<s>", "</s>"])
        ],
        # Legacy Llama-2 spelling: always prepend '▁' and write spaces as '▁'. Unlike Metaspace's
        # "first" scheme this keeps a leading space through decode(encode(x)).
        "normalizer": {
            "type": "Sequence",
            "normalizers": [{"type": "Prepend", "prepend": C.SP_SPACE}, {"type": "Replace", "pattern": {"String": " "}, "content": C.SP_SPACE}],
        },
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"String": C.SP_SPACE}, "behavior": "MergedWithNext", "invert": False},
                {"type": "Digits", "individual_digits": True},
            ],
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": C.SP_SPACE}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {"type": "BPE", "vocab": {}, "merges": [], "byte_fallback": True, "unk_token": "<unk>", "fuse_unk": True},
    }


_DEFAULT_HF_KWARGS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def _unigram_like_bytelevel(source: dict) -> dict:
    """Conventions for ``--kind unigram --like`` a byte-level BPE model.

    A Unigram model over the byte-level alphabet splits characters into byte symbols, and its
    Viterbi search then picks pieces that cut Cyrillic letters: on the Russian fortunes (16k,
    SmolLM2) it reaches 2.87 characters/token against 3.64 for a SentencePiece-style Unigram
    (characters, '▁' word starts, ``<0xNN>`` byte fallback) on the same text, and a longer
    maximum piece does not close the gap (2.89). So the model, normalizer, pre-tokenizer and
    decoder are SentencePiece's; the source's special tokens (same strings, first ids), roles,
    chat template and post-processor are kept, and ``<unk>`` follows them (Unigram needs one).
    """
    from vocadapt.tokenizer.canonical import components

    base = _default_sentencepiece_json()
    base["added_tokens"] = copy.deepcopy(source.get("added_tokens", []))
    post = source.get("post_processor")
    # A ByteLevel post-processor only fixes byte-level offsets; it has no place in a '▁' tokenizer.
    base["post_processor"] = None if post is None or any(c.get("type") == "ByteLevel" for c in components(post)) else copy.deepcopy(post)
    # Unigram needs an unknown piece even with byte fallback; the source (byte-level) has none.
    if "<unk>" not in {t["content"] for t in base["added_tokens"]}:
        next_id = max((t["id"] for t in base["added_tokens"]), default=-1) + 1
        base["added_tokens"].append(
            {"id": next_id, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        )
    return base


def _bpe_model_flags(source_model: dict) -> dict:
    keep = ("dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges")
    return {k: source_model[k] for k in keep if k in source_model}


def train_tokenizer(
    corpus: list[str | Path] | str | Path,
    kind: str = "bpe",
    vocab_size: int = 32000,
    like: str | Path | None = None,
    out: str | Path | None = None,
    *,
    config: TrainConfig | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Learn a ``kind`` tokenizer of ``vocab_size`` tokens on ``corpus``; save to ``out`` if given.

    Returns a summary dict: ``vocab_size`` (achieved), ``requested``, ``family``, corpus counts,
    ``tokenizer_json`` (the data) and ``out``.
    """
    from tokenizers import pre_tokenizers, trainers

    if out is not None:
        check_output_dir(out, overwrite)  # before minutes of training, not after
    cfg = config or TrainConfig(kind=kind, vocab_size=vocab_size, like=str(like) if like else None)
    if cfg.kind not in KINDS:
        from vocadapt.errors import did_you_mean

        raise VocadaptError(f"unknown tokenizer kind {cfg.kind!r}{did_you_mean(cfg.kind, KINDS)}; choose bpe or unigram")
    corpus = [corpus] if isinstance(corpus, (str, Path)) else list(corpus)

    if cfg.like:
        src = C.load_source(cfg.like)
        check_id_layout(src.json, f"--like {cfg.like}")
        base = src.json
        hf_kwargs = src.hf_kwargs
        family = src.family
        if family not in (C.BYTELEVEL_BPE, C.SENTENCEPIECE_BPE, C.PLAIN_BPE, C.UNIGRAM):
            raise VocadaptError(f"--like {cfg.like}: cannot copy conventions of a {family} tokenizer; use a BPE or Unigram model")
        if cfg.kind == "unigram" and family == C.BYTELEVEL_BPE:
            base, family = _unigram_like_bytelevel(src.json), C.SENTENCEPIECE_BPE
    else:
        base = _default_sentencepiece_json()
        hf_kwargs = dict(_DEFAULT_HF_KWARGS)
        family = C.SENTENCEPIECE_BPE

    bytelevel = family == C.BYTELEVEL_BPE
    byte_fallback = family == C.SENTENCEPIECE_BPE or bool(base["model"].get("byte_fallback"))
    added = [t for t in base.get("added_tokens", [])]
    specials = [t["content"] for t in sorted(added, key=lambda t: t["id"])]
    n_bytes = 256 if (bytelevel or byte_fallback) else 0
    # The smallest sensible vocabulary: every special, every byte, and at least one character.
    floor = len(specials) + n_bytes + 1
    if cfg.vocab_size < floor:
        raise VocadaptError(
            f"--vocab-size {cfg.vocab_size} is smaller than the alphabet + specials ({len(specials)} specials"
            + (" + 256 bytes" if n_bytes else "") + f" + characters >= {floor})"
        )

    unk = base["model"].get("unk_token") or (hf_kwargs.get("unk_token") if not bytelevel else None)
    if unk is not None and unk not in specials:
        unk = None
    if cfg.kind == "bpe":
        model = {"type": "BPE", "vocab": {}, "merges": []}
        if base["model"].get("type") == "BPE":
            model.update(_bpe_model_flags(base["model"]))
        model["byte_fallback"] = byte_fallback
        model["unk_token"] = unk
    else:
        model = {"type": "Unigram", "vocab": [], "unk_id": None, "byte_fallback": byte_fallback}
    work = C.empty_tokenizer_like(base, model)
    tok = C.build_tokenizer(work)

    # Byte-fallback pieces are inserted after training (they are ordinary vocabulary entries,
    # not specials), so the trainer gets the rest of the budget.
    budget = cfg.vocab_size - (256 if byte_fallback and not bytelevel else 0)
    alphabet = pre_tokenizers.ByteLevel.alphabet() if bytelevel else []
    if cfg.kind == "bpe":
        opts: dict[str, Any] = {}
        if not bytelevel:
            opts["limit_alphabet"] = cfg.max_alphabet
        for key in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(key):
                opts[key] = model[key]
        trainer = trainers.BpeTrainer(
            vocab_size=budget,
            min_frequency=cfg.min_frequency,
            special_tokens=specials,
            initial_alphabet=alphabet,
            show_progress=C.rust_progress(cfg.show_progress),
            **opts,
        )
    else:
        trainer = trainers.UnigramTrainer(
            vocab_size=budget,
            special_tokens=specials,
            initial_alphabet=alphabet,
            show_progress=C.rust_progress(cfg.show_progress),
            max_piece_length=16,
            **({"unk_token": unk} if unk else {}),
        )
    stats = CorpusStats()
    texts = C.announced(cfg.reader(corpus, stats)(), f"tokenizer train: {cfg.vocab_size} {cfg.kind} tokens"
                        + (f" for {out}" if out is not None else ""), cfg.show_progress)
    tok.train_from_iterator(texts, trainer=trainer)

    import json

    trained = json.loads(tok.to_str())
    tj = copy.deepcopy(base)
    tj["model"] = trained["model"]
    # The trainer builds a fresh model and forgets flags such as Unigram's byte_fallback.
    tj["model"]["byte_fallback"] = byte_fallback
    if byte_fallback and not bytelevel:
        _insert_byte_pieces(tj, n_specials=len(specials))
    # Restore the source's added-token flags (lstrip, normalized, ...) under the new ids.
    vocab = model_vocab(tj)
    tj["added_tokens"] = [dict(t, id=vocab[t["content"]]) for t in sorted(added, key=lambda t: t["id"])]
    if cfg.kind == "unigram" and unk is not None:
        tj["model"]["unk_id"] = vocab[unk]
    tj["post_processor"] = C.remap_post_processor(base.get("post_processor"), {**vocab, **{t["content"]: t["id"] for t in tj["added_tokens"]}})
    achieved = C.build_tokenizer(tj).get_vocab_size(with_added_tokens=True)
    if achieved > cfg.vocab_size:
        raise VocadaptError(
            f"--vocab-size {cfg.vocab_size} is smaller than the alphabet + specials of this corpus "
            f"({achieved} tokens before any merge); raise it or lower --max-alphabet"
        )
    summary: dict[str, Any] = {
        "kind": cfg.kind,
        "family": family,
        "requested": cfg.vocab_size,
        "vocab_size": achieved,
        "corpus": asdict(stats),
    }
    if out is not None:
        inputs = {f"corpus{i}": p for i, p in enumerate(corpus)}
        if cfg.like:
            inputs["like"] = cfg.like
        C.save_tokenizer_dir(
            tj, out, hf_kwargs=hf_kwargs, step="tokenizer.train", config=cfg, inputs=inputs, results=summary, overwrite=overwrite
        )
        summary["out"] = str(out)
    summary["tokenizer_json"] = tj
    return summary


def _insert_byte_pieces(tj: dict, n_specials: int) -> None:
    """Put the 256 ``<0xNN>`` pieces right after the specials (Llama-2 layout), shifting the rest."""
    model = tj["model"]
    if model["type"] == "BPE":
        ordered = sorted(model["vocab"].items(), key=lambda kv: kv[1])
        head = [t for t, _ in ordered[:n_specials]]
        rest = [t for t, _ in ordered[n_specials:] if t not in set(C.BYTE_PIECES)]
        model["vocab"] = {t: i for i, t in enumerate(head + C.BYTE_PIECES + rest)}
    else:
        pieces = model["vocab"]
        head, rest = pieces[:n_specials], [p for p in pieces[n_specials:] if p[0] not in set(C.BYTE_PIECES)]
        # Byte pieces are only reached through byte_fallback; a score below every learned piece
        # keeps the Viterbi search from ever choosing them over a real piece.
        low = min((s for _, s in rest), default=0.0) - 10.0
        model["vocab"] = head + [[b, low] for b in C.BYTE_PIECES] + rest
