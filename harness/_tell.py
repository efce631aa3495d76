"""One line on stderr that cannot fail what prints it."""

from __future__ import annotations

import contextlib
import sys


def tell(line: str) -> None:
    """`line` on stderr; dropped if stderr cannot take it (full, closed, a reader gone away,
    a hung-up terminal): the exit code still says what happened, and a run goes on."""
    if sys.stderr is None:  # started with fd 2 closed; print(file=None) would use stdout
        return
    with contextlib.suppress(OSError, ValueError):  # ValueError: closed meanwhile
        print(line, file=sys.stderr, flush=True)
