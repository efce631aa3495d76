"""A backport of CPython's fix for asyncio's accept (python/cpython#153761).

On a Python without that fix (3.11 here), when an accept on the selector event loop is cancelled just as a
connection arrives (a run ending while the supervisor scrapes metrics, say), the loop
accepts the connection anyway, fails to hand it over with an `InvalidStateError`
traceback on stderr, and drops it. anyio's TCP listeners on asyncio accept this way.
"""

from __future__ import annotations

import asyncio.selector_events
import socket
from typing import Any

_Loop = asyncio.selector_events.BaseSelectorEventLoop


def fix_sock_accept() -> None:
    """Make a cancelled accept leave its connection to the next accept, as the loop's
    other socket operations already do. Idempotent; harmless where Python has the fix."""
    original = _Loop._sock_accept  # type: ignore[attr-defined]
    if getattr(original, "fixed_for_153761", False):
        return

    def _sock_accept(self: _Loop, fut: asyncio.Future[Any], sock: socket.socket) -> None:
        if fut.done():  # cancelled after this callback was scheduled
            return
        original(self, fut, sock)

    _sock_accept.fixed_for_153761 = True  # type: ignore[attr-defined]
    _Loop._sock_accept = _sock_accept  # type: ignore[attr-defined]
