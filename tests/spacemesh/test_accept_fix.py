"""The backport of CPython's accept fix (python/cpython#153761) on asyncio's selector loop."""

from __future__ import annotations

import asyncio
import select
import socket
from typing import Any

import pytest

from scenarios.spacemesh._accept_fix import _Loop, fix_sock_accept


async def accept_cancelled_as_a_peer_connects() -> tuple[list[dict[str, Any]], bool]:
    """The loop's errors, and whether the connection was still there for the next accept."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    with socket.socket() as listener, socket.socket() as peer:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        await asyncio.sleep(0)  # nothing to accept yet: the loop waits for the listener
        peer.connect(listener.getsockname())
        select.select([listener], [], [])
        # The loop's next turn resumes this task and only then runs the accept it found
        # ready: cancelled in between, as a listener is when a run ends.
        await asyncio.sleep(0)
        accept.cancel()
        for _ in range(3):
            await asyncio.sleep(0)
        try:
            conn, _ = await asyncio.wait_for(loop.sock_accept(listener), 1.0)
        except TimeoutError:
            return errors, False
        conn.close()
        return errors, True


def test_a_cancelled_accept_leaves_the_connection_for_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_Loop, "_sock_accept", _Loop._sock_accept)  # restored afterwards
    fix_sock_accept()
    fix_sock_accept()  # idempotent: wrapped once
    errors, kept = asyncio.run(accept_cancelled_as_a_peer_connects())
    assert errors == []
    assert kept
