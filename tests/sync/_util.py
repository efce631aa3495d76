"""A sync server on a temporary Unix socket, for tests."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
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
    roles: dict[str, str] | None = None,
) -> AsyncIterator[tuple[str, SyncState, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []
    state = SyncState(instances, record=events.append, roles=roles)
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


_CONNECT_TCP = anyio.connect_tcp  # the real one, however often a test replaces it


class NotYet:
    """`anyio.connect_tcp` as a cluster's sync service looks while it comes up: its name
    does not resolve, then it refuses, `failures` tries in all; then the real one."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tries = 0

    async def __call__(self, host: str, port: int) -> Any:
        self.tries += 1
        if self.tries > self.failures:
            return await _CONNECT_TCP(host, port)
        if self.tries == 1:
            raise socket.gaierror(-2, "Name or service not known")
        raise ConnectionRefusedError(111, "Connection refused")



def not_yet(monkeypatch: pytest.MonkeyPatch, failures: int) -> NotYet:
    """`anyio.connect_tcp`, for this test, failing `failures` tries first (`NotYet`)."""
    fake = NotYet(failures)
    monkeypatch.setattr(anyio, "connect_tcp", fake)
    return fake
