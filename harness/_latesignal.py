"""Signals that come once a run has ended: they cut its report short, not its verdict."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class LateSignal(BaseException):
    """A SIGINT, SIGTERM or SIGHUP (its name the argument) after the run's end was
    recorded."""


@contextlib.contextmanager
def late_signals_raise() -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP raise `LateSignal` (in the main thread,
    the only one that may take signals; elsewhere nothing changes). Before, Ctrl-C while a
    passed run's report was written ended the command with 130, SIGTERM killed it, and
    run.json said the run passed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_(signum: int, frame: FrameType | None) -> None:
        raise LateSignal(signal.Signals(signum).name)

    before = {s: signal.signal(s, raise_) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
