"""What vocadapt is doing while a user waits: progress bars and step lines, on stderr.

Every loop that can take more than a few seconds goes through :func:`bar`, whose description
says what it does and for which model or tokenizer (``"SmolLM2: bits per byte"``); a long
step without a loop to count announces itself with :func:`step`, one line through the
``vocadapt`` logger (the CLI prints it as is; a library user sees it at INFO level).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("vocadapt")


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it",
        enabled: bool = True, **kwargs: Any):
    """A tqdm bar on stderr (a no-op wrapper when ``enabled`` is False)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled, dynamic_ncols=True, **kwargs)


def step(message: str, *args: Any) -> None:
    """One line saying which long step starts now (``"ofa: factorizing the source embedding"``)."""
    log.info(message, *args)


def model_name(path) -> str:
    """A short name for a model or tokenizer path, for bar descriptions."""
    from pathlib import Path

    p = Path(path)
    return p.stem if p.suffix == ".gguf" else (p.name or str(p))
