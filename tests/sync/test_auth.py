"""Only an instance's own token lets a connection speak for it (TEST_SYNC_TOKEN)."""

from __future__ import annotations

import os
import socket
import stat
from typing import Any

import orjson
import pytest
import trio

from harness.sync import SyncError, SyncServer, SyncState, Tokens, connect_tcp, connect_unix

from ._util import run, serving


def _exchange(path: str, data: bytes) -> list[dict[str, Any]]:
    """Send `data`, read until the service closes the connection (a timeout if it does
    not); the frames it sent."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.settimeout(5)
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return [orjson.loads(x) for x in out.splitlines() if x.strip()]


def _server() -> tuple[SyncServer, list[dict[str, Any]], Tokens]:
    events: list[dict[str, Any]] = []
    tokens = Tokens()
    return SyncServer(SyncState(["g/0"], record=events.append), tokens=tokens), events, tokens


SUCCESS = b'{"id": 2, "op": "signal_event", "event": {"type": "success"}}\n'


@pytest.mark.parametrize(
    ("first", "error"),
    [
        (b"", "not authenticated"),
        (b'{"id": 1, "op": "hello", "instance": "g/0"}\n', "no token for instance 'g/0'"),
        (b'{"id": 1, "op": "hello", "instance": "g/0", "token": "guess"}\n',
         "wrong token for instance 'g/0'"),
    ],
)
def test_a_connection_without_the_instance_token_records_nothing_and_is_closed(
    first: bytes, error: str
) -> None:
    async def main() -> None:
        server, events, _ = _server()
        async with serving(server) as path:
            frames = await trio.to_thread.run_sync(_exchange, path, first + SUCCESS)
        assert error in str(frames[0]["error"])
        assert frames[-1]["closed"] is True and frames[-1]["id"] is None
        assert not [e for e in events if e["kind"] == "event"]  # no success was recorded
        refused = [e for e in events if e["kind"] == "connection"]
        assert refused and refused[0]["status"] == "refused"

    run(main)


def test_the_instance_token_authenticates_on_unix_and_tcp() -> None:
    async def main() -> None:
        server, events, tokens = _server()
        token = tokens.for_instance("g/0")
        async with serving(server) as path, trio.open_nursery() as n:
            async with connect_unix(path, "g/0", token) as c:
                await c.signal_event({"type": "success"})
            host, port = await n.start(server.serve_tcp, ("127.0.0.1", 0))
            async with connect_tcp(host, port, "g/0", token) as c:
                await c.signal_event({"type": "message", "message": "hi"})
            with pytest.raises(SyncError, match="wrong token"):
                async with connect_tcp(host, port, "g/0", tokens.for_instance("g/1")):
                    pass
            n.cancel_scope.cancel()
        recorded = [(e["type"], e["instance"]) for e in events if e["kind"] == "event"]
        assert recorded == [("success", "g/0"), ("message", "g/0")]

    run(main)


def test_the_unix_socket_is_only_the_run_users() -> None:
    async def main() -> None:
        async with serving(SyncServer(SyncState())) as path:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    run(main)


def test_tokens_are_per_instance_and_per_run() -> None:
    a, b = Tokens(), Tokens()
    assert a.check("g/0", a.for_instance("g/0"))
    assert not a.check("g/1", a.for_instance("g/0"))
    assert not b.check("g/0", a.for_instance("g/0"))
