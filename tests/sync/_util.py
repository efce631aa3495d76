"""A sync server on a temporary Unix socket, for tests."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import trio

from harness.sync import NetworkHandler, SyncServer, SyncState


@asynccontextmanager
async def serving(server: SyncServer) -> AsyncIterator[str]:
    """`server` on a temporary Unix socket; yields its path."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sync.sock"
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_unix, path)
            yield str(path)
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def running_server(
    instances: list[str] | None = None,
    network: NetworkHandler | None = None,
) -> AsyncIterator[tuple[str, SyncState, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []
    state = SyncState(instances, record=events.append)
    async with serving(SyncServer(state, network)) as path:
        yield path, state, events


def run(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn)


@contextmanager
def server_in_thread() -> Iterator[str]:
    """A sync server running in a thread of its own (on trio); yields its socket's path, so
    that clients can run on any event loop in this thread."""
    ready = threading.Event()
    stop = trio.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            async with running_server() as (path, _, _):
                box["path"], box["token"] = path, trio.lowlevel.current_trio_token()
                ready.set()
                await stop.wait()

        trio.run(main)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        if not ready.wait(5):
            raise RuntimeError("the sync server did not start")
        yield box["path"]
    finally:
        if "token" in box:
            trio.from_thread.run_sync(stop.set, trio_token=box["token"])
        thread.join()
