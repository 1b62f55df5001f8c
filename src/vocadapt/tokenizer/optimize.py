"""``optimize``: shrink a BPE vocabulary to what the target language uses, then extend it.

1. Count how often each source token is used when the source tokenizer encodes the corpus.
2. Keep always: added/special tokens, byte tokens (``<0xNN>``, the byte-level alphabet) and
   single-character tokens; then fill up to ``keep`` tokens by usage, most used first. A kept
   token brings the tokens its merge is made of (recursively), so it stays reachable.
3. Keep only the merges whose two parts and result all survive, in their original order.
4. Renumber kept tokens compactly in their old id order, then extend by ``add`` target tokens
   (see :mod:`vocadapt.tokenizer.extend`).

``vocab_mapping.json`` maps every new id to its old id (None for appended tokens), so an init
method copies exactly the right embedding rows.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vocadapt.corpus import CorpusStats, batched
from vocadapt.errors import VocadaptError
from vocadapt.io.atomic import check_output_dir
from vocadapt.tokenizer import build as C
from vocadapt.tokenizer.canonical import check_id_layout, model_vocab
from vocadapt.tokenizer.extend import ExtendConfig, extend_json, length_change


@dataclass
class OptimizeConfig(ExtendConfig):
    """Options of ``vocadapt tokenizer optimize``: extend's, plus how many source tokens to keep."""

    add: int = field(default=16000, metadata={"help": "new target tokens to append after shrinking"})
    keep: int = field(default=16000, metadata={"help": "source tokens to keep (specials, bytes, single characters included)"})


def count_usage(tj: dict, texts: Iterator[str], batch: int = 512) -> Counter:
    """id -> number of times the tokenizer ``tj`` emits it on ``texts`` (no special tokens)."""
    tok = C.build_tokenizer(tj)
    counts: Counter = Counter()
    for docs in batched(texts, batch):
        for e in tok.encode_batch(docs, add_special_tokens=False):
            counts.update(e.ids)
    return counts


def shrink_json(tj: dict, counts: Counter, keep: int) -> tuple[dict, list[int]]:
    """Keep ``keep`` tokens of BPE tokenizer ``tj`` (see module doc); returns (JSON, new_to_old)."""
    if tj["model"].get("type") != "BPE":
        raise VocadaptError(f"optimize needs a BPE tokenizer; this one is {C.tokenizer_family(tj)}")
    vocab = model_vocab(tj)
    added = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    prefix = tj["model"].get("continuing_subword_prefix") or ""
    merges = C.bpe_merges(tj["model"])

    must = {t for t in vocab if len(t) == 1 or t in C.BYTE_PIECES or t in added}
    if keep < len(must) + len(set(added) - set(vocab)):
        raise VocadaptError(
            f"--keep {keep} is smaller than the tokens that must stay ({len(must)} specials, bytes and single characters)"
        )
    producer = C.merge_producers(merges, prefix)
    kept = set(must)
    budget = keep - len(set(added) - set(vocab))  # added tokens outside the model vocab count too
    id_to_tok = {i: t for t, i in vocab.items()}
    order = sorted(vocab.values(), key=lambda i: (-counts.get(i, 0), i))
    for i in order:
        if len(kept) >= budget:
            break
        tok = id_to_tok[i]
        if tok in kept:
            continue
        closure, stack = set(), [tok]
        while stack:
            t = stack.pop()
            if t in kept or t in closure or t not in vocab:
                continue
            closure.add(t)
            stack.extend(producer.get(t, ()))
        if len(kept) + len(closure) <= budget:
            kept |= closure
    old_ids = sorted({vocab[t] for t in kept} | set(added.values()))
    new_id = {old: new for new, old in enumerate(old_ids)}
    out = copy.deepcopy(tj)
    out["model"]["vocab"] = {t: new_id[i] for t, i in vocab.items() if t in kept}
    C.set_bpe_merges(out["model"], [(a, b) for a, b in merges if a in kept and b in kept and C.merge_result(a, b, prefix) in kept])
    out["added_tokens"] = [dict(t, id=new_id[t["id"]]) for t in tj.get("added_tokens", [])]
    token_to_id = {**out["model"]["vocab"], **{t["content"]: t["id"] for t in out["added_tokens"]}}
    out["post_processor"] = C.remap_post_processor(tj.get("post_processor"), token_to_id)
    return out, old_ids


def optimize_tokenizer(
    source: str | Path,
    corpus: list[str | Path] | str | Path,
    keep: int = 16000,
    add: int = 16000,
    out: str | Path | None = None,
    *,
    config: OptimizeConfig | None = None,
    check_text: list[str | Path] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Shrink the source tokenizer to ``keep`` tokens used on ``corpus``, then append ``add``.

    Returns a summary dict (counts, ``new_to_old`` mapping, ``tokenizer_json``); saves to ``out``.
    """
    if out is not None:
        check_output_dir(out, overwrite)  # before minutes of training, not after
    cfg = config or OptimizeConfig(keep=keep, add=add)
    corpus = [corpus] if isinstance(corpus, (str, Path)) else list(corpus)
    src = C.load_source(source)
    if src.json["model"].get("type") != "BPE":
        raise VocadaptError(f"optimize needs a BPE tokenizer; {source} is {src.family}")
    check_id_layout(src.json, str(source))
    C.embedding_rows(src)  # refuses a vocabulary larger than the model's embedding
    stats = CorpusStats()
    texts = cfg.reader(corpus, stats)

    counts = count_usage(src.json, texts())
    used = sum(1 for c in counts.values() if c > 0)
    shrunk, new_to_old = shrink_json(src.json, counts, cfg.keep)
    if cfg.add > 0:
        tj, new_tokens, info = extend_json(shrunk, texts, cfg.add, cfg)
    else:  # optimize alone (no extension) is meaningful: --add 0 is allowed here
        tj, new_tokens, info = shrunk, [], {"requested": 0, "added": 0}
    n_total = C.build_tokenizer(tj).get_vocab_size(with_added_tokens=True)
    mapping = new_to_old + [None] * (n_total - len(new_to_old))
    kept_usage = sum(counts.get(i, 0) for i in new_to_old)
    summary: dict[str, Any] = {
        "family": src.family,
        "source_vocab_size": C.build_tokenizer(src.json).get_vocab_size(with_added_tokens=True),
        "source_tokens_used": used,
        "kept": len(new_to_old),
        "kept_usage_share": kept_usage / max(sum(counts.values()), 1),
        "vocab_size": n_total,
        **info,
        "corpus": asdict(stats),
    }
    if check_text:
        from vocadapt.corpus import read_texts

        summary["check_text"] = length_change(src.json, tj, read_texts(check_text))
    if out is not None:
        inputs = {"source": source, **{f"corpus{i}": p for i, p in enumerate(corpus)}}
        C.save_tokenizer_dir(
            tj, out, hf_kwargs=src.hf_kwargs, step="tokenizer.optimize", config=cfg, inputs=inputs,
            results={**summary, "new_tokens_first": new_tokens[:20]},
            vocab_mapping={"source": str(source), "new_to_old": mapping}, overwrite=overwrite,
        )
        summary["out"] = str(out)
    summary["new_to_old"] = mapping
    summary["new_tokens"] = new_tokens
    summary["tokenizer_json"] = tj
    return summary
