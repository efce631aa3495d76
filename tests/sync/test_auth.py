"""Only an instance's own token lets a connection speak for it (TEST_SYNC_TOKEN)."""

from __future__ import annotations

import os
import resource
import socket
import stat
import subprocess
import sys
from typing import Any

import orjson
import pytest
import trio

from harness.sync import (
    SyncError,
    SyncServer,
    SyncState,
    Tokens,
    _connection,
    connect_tcp,
    connect_unix,
)
from harness.sync._connection import HELLO_FRAME

from ._util import run, serving


def _exchange(path: str, data: bytes) -> list[dict[str, Any]]:
    """Send `data`, read until the service closes the connection (a timeout if it does
    not); the frames it sent."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.settimeout(5)
        if data:  # (with nothing to send the service may close the connection first)
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


def test_a_long_frame_before_hello_is_refused_at_a_small_size() -> None:
    """A peer without a token made the service hold up to 16 MiB per connection."""

    async def main() -> None:
        server, _, _ = _server()
        async with serving(server) as path:
            frames = await trio.to_thread.run_sync(_exchange, path, b"x" * (HELLO_FRAME + 1))
        assert frames == [{"id": None, "closed": True,
                           "error": f"frame longer than {HELLO_FRAME} bytes before hello"}]

    run(main)


def test_a_connection_that_never_says_hello_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_connection, "HELLO_WITHIN_S", 0.2)

    async def main() -> None:
        server, _, _ = _server()
        async with serving(server) as path:
            with trio.fail_after(5):
                frames = await trio.to_thread.run_sync(_exchange, path, b"")
        assert frames == [{"id": None, "closed": True, "error": "no hello within 0.2 s"}]

    run(main)


def test_connections_without_hello_beyond_half_the_open_file_limit_are_refused() -> None:
    """A flood of connections that never said hello took every file descriptor: the run's
    own next open failed and the run ended (about 1,100 at a limit of 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:

        async def main() -> None:
            server, _, tokens = _server()
            async with serving(server) as path:
                # 128 idle connections (half of 256) from a process of their own
                flood = await trio.lowlevel.open_process(
                    [sys.executable, "-c", _FLOOD, path, "128"], stdout=subprocess.PIPE)
                assert flood.stdout is not None
                said = b""
                with trio.fail_after(10):  # a pipe may hand the line over in pieces
                    while not said.endswith(b"\n"):
                        said += await flood.stdout.receive_some()
                assert said == b"connected\n"
                await trio.sleep(0.2)
                try:
                    with trio.fail_after(5):
                        frames = await trio.to_thread.run_sync(_exchange, path, b"")
                    assert "too many connections to the sync service have not said hello" in (
                        frames[-1]["error"])
                finally:
                    flood.kill()
                    await flood.wait()
                with trio.fail_after(5):  # room again: an instance with its token gets in
                    while server.connections:  # noqa: ASYNC110 (a count, no event to wait on)
                        await trio.sleep(0.05)
                    async with connect_unix(path, "g/0", tokens.for_instance("g/0")) as c:
                        await c.signal_event({"type": "success"})

        run(main)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


_FLOOD = """
import socket, sys, time
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    socks.append(s)
print("connected", flush=True)
time.sleep(60)
"""


def test_a_long_frame_whose_end_comes_in_the_same_read_is_refused_too() -> None:
    """The length was checked only on what was left after the whole lines of a read: a
    frame just past the limit, its newline read with its last bytes, was served."""

    async def main() -> None:
        server, _, tokens = _server()
        hello = {"id": 1, "op": "hello", "instance": "g/0", "token": tokens.for_instance("g/0")}
        head = orjson.dumps(hello)[:-1] + b',"pad":"'
        frame = head + b"x" * (HELLO_FRAME + 10 - len(head) - 2) + b'"}\n'
        assert len(frame) == HELLO_FRAME + 11  # 10 past the limit, and its newline
        async with serving(server) as path:
            frames = await trio.to_thread.run_sync(_exchange, path, frame)
        assert frames == [{"id": None, "closed": True,
                           "error": f"frame longer than {HELLO_FRAME} bytes before hello"}]

    run(main)
