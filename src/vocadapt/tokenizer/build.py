"""What building a tokenizer (train, extend, optimize) shares: tokenizer.json as data, families, merges, atomic output.

A fast tokenizer is one JSON document (``tokenizer.json``): a normalizer, a pre-tokenizer, a
model (vocab + merges for BPE, scored pieces for Unigram, vocab for WordPiece), a decoder, a
post-processor and a list of added (mostly special) tokens. Extension and pruning are edits of
the model section; everything else is carried over verbatim, which is what keeps a tokenizer
"like" its source (digit splitting, normalization, byte handling, special tokens).

Output directories are written into a temporary sibling and renamed at the end, so a failure
never leaves a half-written tokenizer behind.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vocadapt.corpus import CorpusStats, iter_texts, list_files
from vocadapt.errors import VocadaptError
from vocadapt.io.atomic import atomic_dir
from vocadapt.tokenizer.align import SPECIAL_ROLES
from vocadapt.tokenizer.canonical import SPIECE_SPACE as SP_SPACE
# bpe_merges lives in canonical (alignment reads merges too) and is offered here beside set_bpe_merges.
from vocadapt.tokenizer.canonical import bpe_merges  # noqa: F401
from vocadapt.tokenizer.canonical import check_id_layout, components, detect_family, model_vocab

VOCAB_MAPPING_FILE = "vocab_mapping.json"

# Families, by how a tokenizer spells text. Byte-level BPE (GPT-2, Llama-3, Qwen, SmolLM2)
# maps bytes to printable characters (`Ġ` = space); SentencePiece-style BPE (Llama-2, Mistral)
# writes spaces as `▁` and falls back to `<0xNN>` pieces for unseen characters.
BYTELEVEL_BPE = "bytelevel-bpe"
SENTENCEPIECE_BPE = "sentencepiece-bpe"
PLAIN_BPE = "bpe"
UNIGRAM = "unigram"
WORDPIECE = "wordpiece"

BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]


@dataclass
class SourceTokenizer:
    """A tokenizer directory read as data.

    ``json`` is the parsed tokenizer.json; ``hf_kwargs`` the special-token names, chat template
    and max length that ``PreTrainedTokenizerFast`` needs to behave like the source.
    """

    path: Path | None
    json: dict[str, Any]
    hf_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return tokenizer_family(self.json)


def load_source(source: str | Path) -> SourceTokenizer:
    """Read a model or tokenizer directory (or a bare tokenizer.json) that holds a fast tokenizer."""
    p = Path(source)
    if not p.exists():
        raise VocadaptError(f"source tokenizer not found: {p}")
    tj_path = p if p.is_file() else p / "tokenizer.json"
    if not tj_path.exists():
        raise VocadaptError(
            f"no tokenizer.json in {p}: vocadapt edits fast (tokenizers-library) tokenizers; "
            "convert a slow one first with AutoTokenizer.from_pretrained(...).save_pretrained(...)"
        )
    try:
        tj = json.loads(tj_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise VocadaptError(f"{tj_path}: not valid JSON ({e.msg})") from None
    if not isinstance(tj, dict) or "model" not in tj:
        raise VocadaptError(f"{tj_path}: not a tokenizer.json (no 'model' section)")
    return SourceTokenizer(path=p, json=tj, hf_kwargs=_hf_kwargs(p) if p.is_dir() else {})


def embedding_rows(src: SourceTokenizer) -> int | None:
    """The model's embedding rows (``vocab_size`` in a ``config.json`` beside the tokenizer), or
    None for a bare tokenizer. Refuses a tokenizer with more ids than the model has rows."""
    from vocadapt.io.checkpoint import vocab_config
    from vocadapt.tokenizer.canonical import vocab_size

    cfg_path = src.path / "config.json" if src.path is not None and src.path.is_dir() else None
    if cfg_path is None or not cfg_path.is_file():
        return None
    rows = vocab_config(json.loads(cfg_path.read_text(encoding="utf-8"))).get("vocab_size")
    n_ids = vocab_size(src.json)
    if isinstance(rows, int) and n_ids > rows:
        raise VocadaptError(
            f"{src.path}: the tokenizer has {n_ids} ids but the model's embedding has {rows} rows (config.json "
            "vocab_size): tokenizer and model do not match; use the model's own tokenizer"
        )
    return rows if isinstance(rows, int) else None


def _hf_kwargs(directory: Path) -> dict[str, Any]:
    """Special-token roles, chat template and max length of an HF tokenizer directory."""
    out: dict[str, Any] = {}
    cfg_path = directory / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
    stm_path = directory / "special_tokens_map.json"
    stm = json.loads(stm_path.read_text(encoding="utf-8")) if stm_path.exists() else {}
    for role in SPECIAL_ROLES:
        value = cfg.get(role, stm.get(role))
        if isinstance(value, dict):  # AddedToken serialized as a dict
            value = value.get("content")
        if isinstance(value, str):
            out[role] = value
    extra = cfg.get("additional_special_tokens", cfg.get("extra_special_tokens", stm.get("additional_special_tokens")))
    if isinstance(extra, list) and extra:
        out["additional_special_tokens"] = [t["content"] if isinstance(t, dict) else t for t in extra]
    template = cfg.get("chat_template")
    jinja = directory / "chat_template.jinja"
    if template is None and jinja.exists():
        template = jinja.read_text(encoding="utf-8")
    if template is not None:
        out["chat_template"] = template
    for key in ("model_max_length", "add_bos_token", "add_eos_token", "padding_side"):
        if key in cfg:
            out[key] = cfg[key]
    return out


def tokenizer_family(tj: dict) -> str:
    """One of the family constants above: the model type plus how it spells bytes and spaces."""
    fam = detect_family(tj)
    if fam.model == "BPE":
        if fam.kind == "byte_level":
            return BYTELEVEL_BPE
        if fam.byte_fallback or any(c.get("type") == "ByteFallback" for c in components(tj.get("decoder"))):
            return SENTENCEPIECE_BPE
        return PLAIN_BPE
    return {"Unigram": UNIGRAM, "WordPiece": WORDPIECE}.get(fam.model, str(fam.model).lower())


def set_bpe_merges(model: dict, merges: list[tuple[str, str]]) -> None:
    """Write merges back in the list-of-pairs spelling (unambiguous when pieces contain spaces)."""
    model["merges"] = [[a, b] for a, b in merges]


def merge_result(a: str, b: str, prefix: str = "") -> str:
    """The token a BPE merge makes; with a continuing-subword prefix ("##") the right part
    carries the prefix and the result does not."""
    return a + (b[len(prefix):] if prefix and b.startswith(prefix) else b)


def merge_producers(merges: Sequence[tuple[str, str]], prefix: str = "") -> dict[str, tuple[str, str]]:
    """token -> the first merge that makes it (a token's derivation path walks these back)."""
    producer: dict[str, tuple[str, str]] = {}
    for m in merges:
        producer.setdefault(merge_result(*m, prefix), m)
    return producer


@dataclass
class CorpusOptions:
    """How the target corpus is read; shared by ``train``, ``extend`` and ``optimize``."""

    text_field: str = field(default="text", metadata={"help": "JSONL field holding the text"})
    errors: str = field(default="fail", metadata={"help": "non-UTF-8 lines: fail or skip"})
    max_chars: int | None = field(default=None, metadata={"help": "use at most this many characters of the corpus"})
    show_progress: bool = True

    def reader(self, corpus: Sequence[str | Path], stats: CorpusStats) -> Callable[[], Iterator[str]]:
        """A re-startable stream of the corpus documents; ``stats`` describes the latest pass.
        A missing corpus path fails here, before any work."""
        list_files(corpus)

        def texts() -> Iterator[str]:
            stats.__init__()  # type: ignore[misc]  # count the last pass only
            return iter_texts(corpus, text_field=self.text_field, errors=self.errors, stats=stats, max_chars=self.max_chars)

        return texts


def rust_progress(show_progress: bool) -> bool:
    """Whether the tokenizers trainers may draw their own bars: they draw them on stdout, and
    where stdout is not a terminal they print only blank lines. :func:`announced` says what
    happens in any case."""
    import sys

    return show_progress and sys.stdout.isatty()


def announced(texts: Iterator[str], what: str, enabled: bool = True) -> Iterator[str]:
    """``texts``, after a line saying what is trained; off a terminal also a line when the corpus
    is read (the trainer then learns the vocabulary, with no bar of its own there).

    The first document is read before anything is said, so an empty or unreadable corpus is
    the only line the user sees.
    """
    import itertools

    from vocadapt.progress import step

    texts = iter(texts)
    head = list(itertools.islice(texts, 1))
    if not enabled:
        return itertools.chain(head, texts)
    step(f"{what}: reading the corpus")
    if rust_progress(enabled):
        return itertools.chain(head, texts)

    def with_end_note() -> Iterator[str]:
        n = 0
        for text in itertools.chain(head, texts):
            n += 1
            yield text
        step(f"{what}: learning the vocabulary from {n} documents")

    return with_end_note()


def training_pre_tokenizer(tj: dict) -> dict | None:
    """The pre-tokenizer to train with: the source's, made to split words the way it marks them.

    SentencePiece-style tokenizers never let a piece cross a word start, but their
    ``tokenizer.json`` often does not say so: Llama-2's legacy files have no pre-tokenizer (the
    normalizer writes '▁'), current Llama-2/Mistral conversions use ``Metaspace`` with
    ``split: false``, Gemma a Replace normalizer. A trainer given whole documents as one "word"
    learns merges across words (``ка▁``, ``.▁``) that pre-empt the source's own merges, so for
    the metaspace family we train with an explicit split before each '▁' (the word-start mark
    stays at the front, as in the source's pieces). The output keeps the source's pre-tokenizer.
    """
    pre = tj.get("pre_tokenizer")
    if detect_family(tj).kind != "metaspace":
        return pre
    split = {"type": "Split", "pattern": {"String": SP_SPACE}, "behavior": "MergedWithNext", "invert": False}
    if pre is None:
        return split
    pre = copy.deepcopy(pre)
    for c in components(pre):
        if c.get("type") == "Metaspace":
            c["split"] = True
    return {"type": "Sequence", "pretokenizers": [pre, split]}


def absorb_added_tokens(tj: dict) -> int:
    """Give every added token that the model vocabulary lacks its id there too; return the
    first free id. In place.

    Llama-3, Qwen and Gemma keep (some) special tokens only in ``added_tokens``, after the model
    ids. The ``tokenizers`` library numbers such tokens from the model's size when it loads a
    file, so appending model ids would move every one of them (``<|im_start|>`` 151644 ->
    155644). Made part of the model vocabulary at their own ids, they stay put; the added-token
    matcher still finds them before the model runs, so encoding does not change.
    """
    n = check_id_layout(tj, "source tokenizer")
    model = tj["model"]
    vocab = model_vocab(tj)
    missing = sorted((int(t["id"]), t["content"]) for t in tj.get("added_tokens", []) if t["content"] not in vocab)
    if not missing:
        return n
    if model["type"] == "Unigram":
        # Unigram ids are list positions: the added ids must follow the pieces without a gap.
        if [i for i, _ in missing] != list(range(len(model["vocab"]), n)):
            raise VocadaptError("this Unigram tokenizer has added tokens between its pieces; cannot place new pieces after them")
        # Scored below every piece: only the added-token matcher ever produces them.
        low = min((sc for _, sc in model["vocab"]), default=0.0) - 10.0
        model["vocab"] = model["vocab"] + [[c, low] for _, c in missing]
    else:
        model["vocab"] = {**model["vocab"], **{c: i for i, c in missing}}
    return n


def empty_tokenizer_like(tj: dict, model: dict) -> dict:
    """A copy of ``tj`` with ``model`` swapped in, no added tokens and no post-processor.

    Used as the starting point for a trainer: the trainer adds the special tokens itself, and
    post-processors refer to special-token ids that only exist after training.
    """
    out = copy.deepcopy(tj)
    out["model"] = model
    out["added_tokens"] = []
    out["post_processor"] = None
    out["pre_tokenizer"] = training_pre_tokenizer(tj)
    out["truncation"] = None
    out["padding"] = None
    return out


def remap_post_processor(post: Any, token_to_id: dict[str, int]) -> Any:
    """Rewrite special-token ids inside a post-processor for a new vocabulary."""
    post = copy.deepcopy(post)
    for c in components(post):
        specials = c.get("special_tokens")
        if isinstance(specials, dict):
            for name, spec in specials.items():
                tokens = spec.get("tokens", [name])
                spec["ids"] = [token_to_id[t] for t in tokens if t in token_to_id]
        for key in ("sep", "cls"):  # BertProcessing / RobertaProcessing: [token, id]
            if isinstance(c.get(key), list) and len(c[key]) == 2 and c[key][0] in token_to_id:
                c[key][1] = token_to_id[c[key][0]]
    return post


def build_tokenizer(tj: dict):
    """A ``tokenizers.Tokenizer`` from JSON data; a malformed edit becomes a clear error."""
    from tokenizers import Tokenizer

    text = json.dumps(tj, ensure_ascii=False)  # outside the try: a value JSON cannot hold is a bug
    try:
        return Tokenizer.from_str(text)
    except Exception as e:  # noqa: BLE001 - narrowed to the tokenizers library's own errors
        # Its Rust side reports every bad document (a merge whose part is not in the vocabulary,
        # an unknown component) as a bare Exception; a subclass is something else.
        if type(e) is not Exception:
            raise
        raise VocadaptError(f"the edited tokenizer does not load: {e}") from None


def save_tokenizer_dir(
    tj: dict,
    out: str | Path,
    *,
    hf_kwargs: dict[str, Any],
    step: str,
    config: Any,
    inputs: dict[str, str | Path],
    results: dict[str, Any],
    vocab_mapping: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an HF tokenizer directory atomically: tokenizer files, provenance, id mapping.

    The tokenizer is wrapped in ``PreTrainedTokenizerFast`` with the source's special tokens and
    chat template, saved, and loaded back with ``AutoTokenizer`` before the rename, so a
    directory that exists is one that loads.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from vocadapt.provenance import write_provenance

    out = Path(out)
    tok = build_tokenizer(tj)
    vocab_before = tok.get_vocab_size(with_added_tokens=True)
    kwargs = {k: v for k, v in hf_kwargs.items() if k != "additional_special_tokens"}
    # A special-token role naming a string the new vocabulary lacks would make transformers
    # silently append it as a new token; drop the role instead (the model has no such row).
    vocab = tok.get_vocab(with_added_tokens=True)
    kwargs = {k: v for k, v in kwargs.items() if not k.endswith("_token") or v in vocab}
    extra = [t for t in hf_kwargs.get("additional_special_tokens", []) if t in vocab]
    if extra:
        kwargs["additional_special_tokens"] = extra
    # Decoding must give back the exact text; the legacy clean-up would eat spaces before '.'.
    kwargs["clean_up_tokenization_spaces"] = False
    with atomic_dir(out, overwrite=overwrite) as tmp:
        hf = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
        hf.save_pretrained(tmp)
        if vocab_mapping is not None:
            (tmp / VOCAB_MAPPING_FILE).write_text(json.dumps(vocab_mapping) + "\n", encoding="utf-8")
        reloaded = AutoTokenizer.from_pretrained(tmp)
        if len(reloaded) != vocab_before:
            raise VocadaptError(
                f"saved tokenizer has {len(reloaded)} tokens, expected {vocab_before} (a special token was added twice?)"
            )
        write_provenance(tmp, step, config, inputs=inputs, results=results)
    return out

