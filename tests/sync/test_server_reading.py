"""The service reads each connection's socket itself: a request costs one read, not a
failed one first (counted, not timed); a client that floods it does not starve the rest."""

from __future__ import annotations

import contextlib
import os
import socket

import pytest
import trio

from harness.sync import _connection, connect_unix

from ._util import run, running_server


def test_a_request_costs_one_read_of_the_socket_not_a_failed_one_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = {"ok": 0, "empty": 0}
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        try:
            data = real_read(fd, n)
        except BlockingIOError:
            reads["empty"] += 1
            raise
        reads["ok"] += 1
        return data

    monkeypatch.setattr(_connection.os, "read", read)

    async def main() -> None:
        async with running_server() as (path, _, _), connect_unix(path) as c:
            before = dict(reads)
            for _ in range(50):
                await c.signal_entry("s")  # one request, its reply, the next
            assert reads["ok"] - before["ok"] >= 50  # every request came by a read
            assert reads["empty"] - before["empty"] <= 2  # none after a read took it all

    run(main)


def test_a_client_flooding_the_service_does_not_starve_another() -> None:
    async def main() -> None:
        async with running_server() as (path, _, _):
            flood = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            flood.connect(path)
            flood.setblocking(False)
            frame = b'{"id":1,"op":"signal_entry","state":"flood"}\n' * 2000
            sent = 0

            async def keep_flooding() -> None:
                nonlocal sent
                while True:
                    await trio.lowlevel.wait_writable(flood)
                    with contextlib.suppress(BlockingIOError):
                        sent += flood.send(frame)
                    with contextlib.suppress(BlockingIOError):  # its replies, thrown away
                        flood.recv(1 << 20)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_flooding)
                async with connect_unix(path) as c:
                    with trio.fail_after(30):  # a hang, not a time: the flood goes on
                        for _ in range(20):
                            await c.signal_entry("other")
                nursery.cancel_scope.cancel()
            flood.close()
            assert sent > 0

    run(main)
