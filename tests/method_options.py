"""Options the shared test matrix passes to methods that need inputs beyond the two tokenizers.

A method that runs with defaults needs no entry. One that needs files (word vectors, an
auxiliary corpus) gets a builder here that writes tiny ones into ``workdir``, so the matrix
still covers it hermetically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

OPTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {}


def options_for(method: str, workdir: Path) -> dict[str, Any]:
    build = OPTIONS.get(method)
    return build(workdir) if build else {}
