"""Ctrl-C held back while a network removes what it made."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def held_back() -> Iterator[None]:
    """Within: a SIGINT is remembered instead of interrupting; on leaving, it is raised again
    for the handler that was there before. An interruption halfway through a clean-up would
    leave the rest of the network behind (only the main thread ever sees SIGINT in Python;
    elsewhere this does nothing)."""
    previous = signal.getsignal(signal.SIGINT)
    # None: a handler installed outside Python, which could not be put back.
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    came: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _: came.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if came:
            signal.raise_signal(signal.SIGINT)
