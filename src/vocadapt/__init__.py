"""vocadapt: adapt a pretrained language model to a new language by vocabulary surgery.

The package follows the pipeline: ``tokenizer`` (train / extend / optimize a target tokenizer)
-> ``init`` (initialize embeddings of the new vocabulary) -> ``train`` (embedding-only continued
pretraining) -> ``propagate`` (move learned embeddings into the instruct model) -> ``evaluate``
(bits per byte, characters per token, Darumeru-style tasks). ``io`` reads and writes checkpoints.

The public API mirrors the CLI and imports lazily, so ``import vocadapt`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "init_embeddings": "vocadapt.init",
    "methods": "vocadapt.init",
    "load_tokenizer": "vocadapt.init",
    "VocadaptError": "vocadapt.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vocadapt' has no attribute {name!r}")
