"""``extend``: append N tokens learned on the target corpus to a model's own tokenizer.

Every original token keeps its id and string; new tokens get ids after the largest id in use
(special and added tokens included: Llama-3 and Qwen keep theirs after the BPE ids), so an
embedding matrix grows by appending rows (``vocab_mapping.json`` says which rows are old). See
``docs/tokenizers.md`` for the layouts of real families.

``script`` (default ``auto``: the corpus's most common script): only tokens and merges whose
text contains a character of that Unicode script are added, so text without it (English, code)
encodes to exactly the same ids as before; ``any`` adds whatever the corpus yields.

BPE (byte-level and SentencePiece-style): continued BPE training
(:mod:`vocadapt.tokenizer.continue_bpe`). The corpus is segmented by the source itself and new
merges are learned on those segments and appended after all of the source's merges, so for
every text ``len(extended(text)) <= len(source(text))`` by construction, and every new token is
reachable (checked: an unreachable one is dropped with the merges that need it).

Unigram and WordPiece: no construction guarantees that inequality (a new Unigram piece changes
the best segmentation; a new WordPiece entry changes greedy longest matches). A target model is
trained with the source's normalizer and pre-tokenizer and its new pieces are appended (Unigram
scores shifted onto the source's scale, median difference over shared pieces); then every
corpus line is encoded with both tokenizers, and new pieces used in a word (pre-token) that got
longer, or never produced for their own text, are dropped and replaced by the next candidates,
until no corpus word is longer (a word the source can only write as the unknown token may be
spelled out). The inequality is thus verified on the corpus, not guaranteed on other text.
Other model types cannot be extended.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vocadapt.corpus import CorpusStats, read_texts
from vocadapt.errors import VocadaptError
from vocadapt.io.atomic import check_output_dir
from vocadapt.tokenizer import build as C
from vocadapt.tokenizer.canonical import (
    canonical_token,
    check_id_layout,
    detect_family,
    letter_script,
    model_vocab,
    script_chars,
    touches_script,
)

log = logging.getLogger("vocadapt")


@dataclass
class ExtendConfig(C.CorpusOptions):
    """Options of ``vocadapt tokenizer extend``."""

    # 16,000, the demo's size and `optimize`'s. Measured on SmolLM2, the demo's Russian text, 30
    # training steps (docs/distill.md, "How many tokens to add"): more tokens gave lower held-out
    # bits per byte (+32k best of 4k-32k), fewer a better copy after calibration (+4k best); no
    # size was best at both, and 16k is the demo's balance of the two.
    add: int = field(default=16000, metadata={"help": "number of new tokens to append"})
    min_frequency: int = field(default=2, metadata={"help": "a pair must occur this often to become a token"})
    script: str = field(
        default="auto",
        metadata={
            "help": "add only tokens and merges containing this Unicode script (e.g. Cyrillic), so text "
            "without it encodes exactly as before; auto: the corpus's most common script; any: no restriction"
        },
    )


TextSource = Callable[[], Iterator[str]]

_SCRIPT_SAMPLE_CHARS = 1_000_000


def detect_script(texts: Iterator[str]) -> str:
    """The most common Unicode script among the letters of the first ~1M characters (e.g. "Cyrillic")."""
    from collections import Counter

    counts: Counter = Counter()
    seen = 0
    for doc in texts:
        for ch in doc:
            if ch.isalpha():
                counts[ch] += 1
        seen += len(doc)
        if seen >= _SCRIPT_SAMPLE_CHARS:
            break
    by_script: Counter = Counter()
    for ch, n in counts.items():
        by_script[letter_script(ch)] += n
    if not by_script:
        raise VocadaptError("the corpus has no letters to detect its script from; pass --script NAME or --script any")
    return by_script.most_common(1)[0][0]


def script_filter(cfg: ExtendConfig, texts: TextSource) -> tuple[str, Callable[[str], bool] | None]:
    """``cfg.script`` as (script name, text predicate); the predicate is None for ``any``."""
    if cfg.script == "any":
        return "any", None
    name = detect_script(texts()) if cfg.script == "auto" else cfg.script
    try:
        has = script_chars(name)
    except ValueError as e:
        raise VocadaptError(f"--script: {e}") from None
    log.info("extend: adding only tokens that contain %s characters (--script any adds any token)", name)
    if name == "Latin":
        log.warning("extend: the target script is Latin; English text will change too")
    return name, has


def _train_target(tj: dict, texts: TextSource, size: int, cfg: ExtendConfig, kind: str) -> dict:
    """Train a target Unigram or WordPiece model with the source's normalizer/pre-tokenizer; its JSON."""
    from tokenizers import trainers

    src_model = tj["model"]

    if kind == "Unigram":
        model = {"type": "Unigram", "vocab": [], "unk_id": None}
        trainer = trainers.UnigramTrainer(vocab_size=size, show_progress=C.rust_progress(cfg.show_progress), max_piece_length=16)
    else:  # WordPiece
        prefix = src_model.get("continuing_subword_prefix", "##")
        model = {
            "type": "WordPiece", "vocab": {}, "unk_token": src_model.get("unk_token", "[UNK]"),
            "continuing_subword_prefix": prefix, "max_input_chars_per_word": src_model.get("max_input_chars_per_word", 100),
        }
        trainer = trainers.WordPieceTrainer(
            vocab_size=size, min_frequency=cfg.min_frequency, show_progress=C.rust_progress(cfg.show_progress), continuing_subword_prefix=prefix
        )
    tok = C.build_tokenizer(C.empty_tokenizer_like(tj, model))
    tok.train_from_iterator(C.announced(texts(), f"tokenizer: training {size} {kind} target tokens", cfg.show_progress),
                            trainer=trainer)
    return json.loads(tok.to_str())["model"]


def _target_candidates(model: dict) -> list[str]:
    """Target tokens in the order they should be added (training order / best score first)."""
    if model["type"] == "Unigram":
        return [p for p, _ in sorted(model["vocab"], key=lambda ps: -ps[1])]
    return [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]


def _append_pieces(out: dict, target: dict, pieces: list[str], start: int, offset: float) -> dict:
    """``out`` (not modified) with Unigram/WordPiece ``pieces`` appended at ids ``start``..."""
    ext = copy.deepcopy(out)
    model = ext["model"]
    if model["type"] == "Unigram":
        scores = dict((p, s) for p, s in target["vocab"])
        model["vocab"] = model["vocab"] + [[t, scores[t] + offset] for t in pieces]
    else:
        for i, t in enumerate(pieces):
            model["vocab"][t] = start + i
    return ext


_MAX_REFILL_ROUNDS = 8


def _word_lengths(enc) -> dict[int | None, list[int]]:
    """word index -> the ids of that word (pre-token) in one encoding."""
    out: dict[int | None, list[int]] = {}
    for w, i in zip(enc.word_ids, enc.ids):
        out.setdefault(w, []).append(i)
    return out


def _verified_pieces(
    src: dict, out: dict, target: dict, candidates: list[str], add: int, lines: list[str], start: int, offset: float
) -> tuple[dict, list[str], dict[str, Any]]:
    """Append the first ``add`` candidates that make no corpus word longer and are reachable.

    Unigram and WordPiece segment each pre-token ("word") on its own, so a line is no longer
    than before when none of its words is. Each round encodes every corpus line with the source
    and the extension; the new pieces used in a word that got longer (and unreachable pieces)
    are dropped and the next candidates take their places. A word the source could only write
    as the unknown token is exempt: spelling it out is longer but loses nothing. After a few
    rounds no more candidates are taken, so the loop ends (each round drops one or more).
    """
    from vocadapt.tokenizer.continue_bpe import unreachable

    old = C.build_tokenizer(src)
    unk = src["model"].get("unk_token")
    unk_id = old.token_to_id(unk) if isinstance(unk, str) else src["model"].get("unk_id")
    old_words = [_word_lengths(e) for e in old.encode_batch(lines, add_special_tokens=False)]
    dropped: set[str] = set()
    pool = list(candidates)
    rounds = 0
    while True:
        rounds += 1
        chosen = [t for t in pool if t not in dropped][:add]
        if rounds > _MAX_REFILL_ROUNDS:
            pool = chosen  # stop refilling: only drop from here on
        ext = _append_pieces(out, target, chosen, start, offset)
        new = C.build_tokenizer(ext)
        bad = set(unreachable(ext, chosen))
        for before, e in zip(old_words, new.encode_batch(lines, add_special_tokens=False)):
            for w, ids in _word_lengths(e).items():
                was = before.get(w, [])
                if len(ids) > len(was) and was != [unk_id]:
                    bad.update(new.id_to_token(i) for i in ids if i >= start)
        if not bad:
            return ext, chosen, {"verify_rounds": rounds, "dropped_pieces": len(dropped), "verified_lines": len(lines)}
        dropped |= bad


def _corpus_lines(texts: TextSource) -> list[str]:
    return [line for doc in texts() for line in doc.split("\n") if line.strip()]


def extend_json(tj: dict, texts: TextSource, add: int, cfg: ExtendConfig) -> tuple[dict, list[str], dict[str, Any]]:
    """Extend tokenizer JSON ``tj`` by up to ``add`` tokens learned from ``texts()``.

    Returns (new JSON, new token strings in id order, info). Old ids are untouched; new ids
    start after the largest id in use (special and added tokens included). ``texts`` is called
    once per pass over the corpus (re-streamed).
    """
    from vocadapt.tokenizer.continue_bpe import check_continuable, continue_bpe

    if add <= 0:
        raise VocadaptError(f"--add must be a positive number of tokens, not {add}")
    family = C.tokenizer_family(tj)
    kind = tj["model"].get("type")
    if kind not in ("BPE", "Unigram", "WordPiece"):
        raise VocadaptError(f"a {family} tokenizer cannot be extended (only BPE, Unigram and WordPiece models can)")
    if tj["model"].get("dropout"):
        raise VocadaptError("a BPE tokenizer with dropout cannot be extended deterministically; remove dropout first")
    if kind == "BPE":
        check_continuable(tj)  # before the corpus is read
    out = copy.deepcopy(tj)
    start = C.absorb_added_tokens(out)  # validates the id layout; new ids start after every id in use
    taken = set(model_vocab(out))
    script, has_script = script_filter(cfg, texts)
    source_family = detect_family(tj)

    def wanted(piece: str) -> bool:
        return has_script is None or touches_script(canonical_token(piece, source_family), has_script)

    if kind == "BPE":
        new_tokens, info = continue_bpe(out, texts, add, start=start, min_frequency=cfg.min_frequency, wanted=wanted)
        info = {"requested": add, "added": len(new_tokens), "script": script, **info}
    else:
        # The target model must be big enough that `add` of its tokens are new to the source
        # (and a margin survives verification); grow it until it yields enough or the corpus runs dry.
        size = int(add * 1.5) + 100
        attempts = 0
        while True:
            attempts += 1
            target = _train_target(tj, texts, size, cfg, kind)
            candidates = [t for t in _target_candidates(target) if t not in taken and t not in C.BYTE_PIECES and wanted(t)]
            trained_size = len(target["vocab"])
            if len(candidates) >= add * 1.2 or trained_size < size * 0.98 or attempts >= 4:
                break
            size = trained_size + int((add * 1.2 - len(candidates)) * 1.5) + 100
        offset = 0.0
        if kind == "Unigram":
            src_scores = dict((p, s) for p, s in tj["model"]["vocab"])
            shared = [src_scores[p] - s for p, s in target["vocab"] if p in src_scores]
            offset = statistics.median(shared) if shared else 0.0
        out, new_tokens, verify = _verified_pieces(tj, out, target, candidates, add, _corpus_lines(texts), start, offset)
        info = {"requested": add, "added": len(new_tokens), "target_vocab_size": trained_size, "training_runs": attempts,
                "script": script, **verify}
        if kind == "Unigram":
            info["score_offset"] = offset
    if len(new_tokens) < add:
        info["warning"] = f"the corpus supports only {len(new_tokens)} new tokens, fewer than the {add} requested"
    return out, new_tokens, info


def identity_mapping(tj_old: dict, n_new_total: int, source: str) -> dict[str, Any]:
    """``new_to_old[i]`` = old id of new id ``i`` (the same id), or None for an appended token."""
    old_ids = set(model_vocab(tj_old).values()) | {t["id"] for t in tj_old.get("added_tokens", [])}
    return {"source": source, "new_to_old": [i if i in old_ids else None for i in range(n_new_total)]}


def length_change(tj_old: dict, tj_new: dict, texts: list[str]) -> dict[str, Any]:
    """How many more tokens the new tokenizer needs on ``texts`` than the old one (units: tokens)."""
    old, new = C.build_tokenizer(tj_old), C.build_tokenizer(tj_new)
    n_old = sum(len(e.ids) for e in old.encode_batch(texts, add_special_tokens=False))
    n_new = sum(len(e.ids) for e in new.encode_batch(texts, add_special_tokens=False))
    return {"tokens_before": n_old, "tokens_after": n_new, "increase_pct": 100.0 * (n_new - n_old) / max(n_old, 1)}


def extend_tokenizer(
    source: str | Path,
    corpus: list[str | Path] | str | Path,
    add: int = 16000,
    out: str | Path | None = None,
    *,
    config: ExtendConfig | None = None,
    check_text: list[str | Path] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Append ``add`` tokens learned on ``corpus`` to the tokenizer in ``source``; save to ``out``.

    ``check_text``: files of text the source handled well (English, code); the summary reports
    how much longer (in tokens, %) they get. Returns a summary dict including ``tokenizer_json``.
    """
    if out is not None:
        check_output_dir(out, overwrite)  # before minutes of training, not after
    cfg = config or ExtendConfig(add=add)
    corpus = [corpus] if isinstance(corpus, (str, Path)) else list(corpus)
    src = C.load_source(source)
    check_id_layout(src.json, str(source))
    rows = C.embedding_rows(src)  # refuses a vocabulary larger than the model's embedding
    stats = CorpusStats()
    tj, new_tokens, info = extend_json(src.json, cfg.reader(corpus, stats), cfg.add, cfg)
    n_total = C.build_tokenizer(tj).get_vocab_size(with_added_tokens=True)
    summary: dict[str, Any] = {
        "family": src.family,
        "source_vocab_size": C.build_tokenizer(src.json).get_vocab_size(with_added_tokens=True),
        "vocab_size": n_total,
        # `vocadapt init` keeps these rows and grows the model's vocab_size only past them.
        "model_embedding_rows": rows,
        **info,
        "corpus": asdict(stats),
    }
    if check_text:
        summary["check_text"] = length_change(src.json, tj, read_texts(check_text))
    if out is not None:
        mapping = identity_mapping(src.json, n_total, str(source))
        inputs = {"source": source, **{f"corpus{i}": p for i, p in enumerate(corpus)}}
        C.save_tokenizer_dir(
            tj, out, hf_kwargs=src.hf_kwargs, step="tokenizer.extend", config=cfg, inputs=inputs,
            results={**summary, "new_tokens_first": new_tokens[:20]}, vocab_mapping=mapping, overwrite=overwrite,
        )
        summary["out"] = str(out)
    summary["new_tokens"] = new_tokens
    summary["tokenizer_json"] = tj
    return summary
