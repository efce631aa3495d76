"""One line on stderr that cannot fail what prints it, and text made one line for a terminal."""

from __future__ import annotations

import contextlib
import re
import sys


def tell(line: str) -> None:
    """`line` on stderr; dropped if stderr cannot take it (full, closed, a reader gone away,
    a hung-up terminal): the exit code still says what happened, and a run goes on."""
    if sys.stderr is None:  # started with fd 2 closed; print(file=None) would use stdout
        return
    with contextlib.suppress(OSError, ValueError):  # ValueError: closed meanwhile
        print(line, file=sys.stderr, flush=True)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Control characters, and the bidirectional ones: a right-to-left override in what an
instance said turned the rest of its line around (a reason that reads as something else)."""


def one_line(text: str, limit: int) -> str:
    """`text` as one line of at most `limit` characters for the terminal: what an instance
    said (a state's name, an error) may hold newlines, escape sequences, bidirectional
    overrides or megabytes."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
