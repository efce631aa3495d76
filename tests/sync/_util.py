"""A sync server on a temporary Unix socket, for tests."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from harness.sync import NetworkHandler, SyncServer, SyncState


@asynccontextmanager
async def running_server(
    instances: list[str] | None = None,
    network: NetworkHandler | None = None,
) -> AsyncIterator[tuple[str, SyncState, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []
    state = SyncState(instances, record=events.append)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sync.sock"
        async with trio.open_nursery() as nursery:
            await nursery.start(SyncServer(state, network).serve_unix, path)
            yield str(path), state, events
            nursery.cancel_scope.cancel()


def run(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn)
