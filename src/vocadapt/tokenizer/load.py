"""Load a tokenizer the way it was saved, with one-line errors.

``AutoTokenizer`` picks the tokenizer class from the *model* config when a folder also holds a
model (a qwen2 model gets ``Qwen2Tokenizer``), and that class may add tokens the saved
tokenizer never had (``<|endoftext|>``): ids past the embedding rows. A folder whose
``tokenizer_config.json`` declares the generic class is therefore loaded as exactly that. Every
part of vocadapt that opens a tokenizer (init, evaluation) goes through :func:`load_tokenizer`.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from vocadapt.errors import VocadaptError

_GENERIC_CLASSES = (None, "TokenizersBackend", "PreTrainedTokenizerFast")

# Files that hold a vocabulary; a folder with none of them holds no tokenizer.
VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt")


def check_tokenizer_dir(path: str | Path, what: str = "tokenizer") -> Path:
    """``path`` if it looks like a tokenizer (a folder with vocabulary files, or a tokenizer.json);
    else a one-line error naming what is missing. Cheap: nothing is loaded."""
    p = Path(path)
    if not p.exists():
        raise VocadaptError(f"{what} not found: {p}")
    if p.is_dir():
        if not any((p / f).is_file() for f in VOCAB_FILES):
            raise VocadaptError(f"{what} folder {p} holds no tokenizer: tokenizer.json is missing (nor any of {', '.join(VOCAB_FILES[1:])})")
        if (p / "tokenizer.json").is_file():
            _check_json(p / "tokenizer.json", what)
    elif p.suffix == ".json":
        _check_json(p, what)
    return p


def _check_json(path: Path, what: str) -> None:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise VocadaptError(f"{what} file {path} is not valid JSON ({e})") from None
    # transformers indexes these two sections before the tokenizers library sees the file, so
    # their absence would surface as a bare KeyError.
    missing = [k for k in ("model", "added_tokens") if k not in spec] if isinstance(spec, dict) else ["model"]
    if missing:
        raise VocadaptError(f"{what} file {path} is not a tokenizers-library tokenizer.json (no {' or '.join(map(repr, missing))} section)")


def is_bad_tokenizer_file(e: BaseException) -> bool:
    """Whether ``e``, raised while the tokenizers library or transformers read tokenizer files,
    means the files are bad (not that vocadapt called them wrongly).

    The tokenizers library reports every deserialization problem (a merge of a piece the
    vocabulary lacks, an unknown component type) as a bare ``Exception``: its Rust errors become
    ``PyException``, never a subclass. transformers raises ``OSError`` for missing or unreadable
    files, ``ValueError`` (``json.JSONDecodeError`` included) for unknown classes and broken
    JSON, and ``ImportError`` when a slow tokenizer's library (sentencepiece, protobuf) is not
    installed. AttributeError, TypeError, KeyError and the like are not among them.
    """
    return type(e) is Exception or isinstance(e, (OSError, ValueError, ImportError))


def _declares_generic_class(folder: Path, what: str) -> bool:
    cfg = folder / "tokenizer_config.json"
    if not (folder / "tokenizer.json").is_file() or not cfg.is_file():
        return False
    try:
        declared = json.loads(cfg.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise VocadaptError(f"cannot load {what} from {folder}: {cfg.name} is not valid JSON ({e})") from None
    return isinstance(declared, dict) and declared.get("tokenizer_class") in _GENERIC_CLASSES


def load_tokenizer(path: str | Path, what: str = "tokenizer", *, require_fast: bool = True) -> Any:
    """An HF tokenizer from a directory (or a bare ``tokenizer.json``).

    ``require_fast``: vocabulary surgery edits ``tokenizer.json``, so it needs a fast tokenizer;
    scoring and generating do not.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    p = check_tokenizer_dir(path, what)
    if p.is_file() and p.suffix == ".json":
        load = partial(PreTrainedTokenizerFast, tokenizer_file=str(p))
    elif _declares_generic_class(p, what):
        load = partial(PreTrainedTokenizerFast.from_pretrained, str(p))
    else:
        load = partial(AutoTokenizer.from_pretrained, str(p))
    try:
        tok = load()
    except Exception as e:  # noqa: BLE001 - narrowed by is_bad_tokenizer_file
        if not is_bad_tokenizer_file(e):
            raise
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise VocadaptError(f"cannot load {what} from {p}: {reason}") from None
    if require_fast and (not getattr(tok, "is_fast", False) or not hasattr(tok, "backend_tokenizer")):
        raise VocadaptError(f"{what} at {p} is not a fast tokenizer (tokenizer.json); convert it first")
    return tok
