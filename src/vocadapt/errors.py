"""One exception type for every user-facing failure.

The CLI prints ``VocadaptError`` as a single line (``error: ...``) and exits non-zero; any other
exception is a bug and keeps its traceback. Raise it with a message that names the problem and,
where there is one, the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VocadaptError(Exception):
    """A problem with the user's input or environment, reported as one line."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
