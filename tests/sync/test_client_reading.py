"""The client has no reader task: a waiting task reads, and hands the reading over.

Each test puts several tasks of one connection to wait at once and checks that none is
left waiting for a reply that has come, on both event loops instances may use.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from harness.sync import SyncClient, SyncError, connect_unix

from ._util import server_in_thread

BACKENDS = ["trio", "asyncio"]


def run_clients(backend: str, main: Callable[[str], Awaitable[None]]) -> None:
    with server_in_thread() as path:
        anyio.run(main, path, backend=backend)


async def reader_count(c: SyncClient) -> int:
    await anyio.sleep(0.05)  # every task started has reached its wait
    return int(c._reading)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_reader_hands_over_when_its_message_has_come(backend: str) -> None:
    async def main(path: str) -> None:
        async with connect_unix(path) as c, connect_unix(path) as other:
            released = anyio.Event()
            async with c.subscribe("t") as sub, anyio.create_task_group() as tg:

                async def first_waiter() -> None:  # it reads: nobody else is waiting yet
                    await sub.next_message()

                async def second_waiter() -> None:  # it sleeps until handed the reading
                    await c.barrier("go", 1)
                    released.set()

                tg.start_soon(first_waiter)
                assert await reader_count(c) == 1
                tg.start_soon(second_waiter)
                await anyio.sleep(0.05)
                await other.publish("t", "wake the reader")
                await anyio.sleep(0.05)  # the first waiter is gone; the second reads now
                await other.signal_entry("go")
                with anyio.fail_after(2):
                    await released.wait()

    run_clients(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cancelled_reader_hands_over(backend: str) -> None:
    async def main(path: str) -> None:
        async with (
            connect_unix(path) as c,
            connect_unix(path) as other,
            c.subscribe("t") as sub,
            anyio.create_task_group() as tg,
        ):
            reader = anyio.CancelScope()

            async def first_waiter() -> None:
                with reader:
                    await sub.next_message()

            tg.start_soon(first_waiter)
            assert await reader_count(c) == 1
            with anyio.fail_after(2):
                async with anyio.create_task_group() as waiters:
                    waiters.start_soon(c.barrier, "go", 1)
                    await anyio.sleep(0.05)
                    reader.cancel()
                    await other.signal_entry("go")
            assert await reader_count(c) == 0

    run_clients(backend, main)


def test_a_task_handed_the_reading_as_it_is_cancelled_hands_it_on() -> None:
    """asyncio's Task.cancel() reaches a task even after it was woken (anyio's and trio's
    cancel scopes wait for its next checkpoint): the woken task must pass the reading on."""

    async def main(path: str) -> None:
        async with (
            connect_unix(path) as c,
            connect_unix(path) as other,
            c.subscribe("t") as sub,
        ):

            async def first_waiter() -> None:
                await sub.next_message()  # hands the reading to the second waiter ...
                second.cancel()  # ... which is cancelled before it can run

            first = asyncio.create_task(first_waiter())
            await asyncio.sleep(0.05)
            second = asyncio.create_task(c.barrier("never", 1))
            await asyncio.sleep(0.05)
            third = asyncio.create_task(c.barrier("go", 1))
            await asyncio.sleep(0.05)
            await other.publish("t", "wake the reader")
            await first
            await other.signal_entry("go")
            await asyncio.wait_for(third, 2)
            assert second.cancelled()

    run_clients("asyncio", main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_tasks_on_one_subscription_get_one_message_each(backend: str) -> None:
    async def main(path: str) -> None:
        async with connect_unix(path) as c, connect_unix(path) as other:
            got: list[int] = []
            async with c.subscribe("t") as sub, anyio.create_task_group() as tg:

                async def take() -> None:
                    got.append((await sub.next_message()).seq)

                tg.start_soon(take)
                tg.start_soon(take)
                await anyio.sleep(0.05)
                with anyio.fail_after(2):
                    await other.publish("t", 1)
                    await other.publish("t", 2)
            assert sorted(got) == [1, 2]

    run_clients(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_waiting_task_learns_that_the_connection_is_lost(
    backend: str, tmp_path: Path
) -> None:
    """A server that reads the requests of three waiting tasks and then hangs up."""
    path = str(tmp_path / "sync.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()

    async def main() -> None:
        errors: list[str] = []

        async def hang_up() -> None:
            conn, _ = await anyio.to_thread.run_sync(listener.accept)
            with conn:
                received = b""
                while received.count(b"\n") < 3:
                    received += await anyio.to_thread.run_sync(conn.recv, 4096)

        async with connect_unix(path) as c:

            async def wait(request: Callable[[], Awaitable[object]]) -> None:
                try:
                    await request()
                except SyncError as e:
                    errors.append(str(e))

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(hang_up)
                    tg.start_soon(wait, lambda: c.barrier("a", 2))
                    tg.start_soon(wait, lambda: c.barrier("b", 2))
                    tg.start_soon(wait, lambda: c.publish("t", 1))
        assert len(errors) == 3
        assert all("closed the connection" in e for e in errors), errors

    try:
        anyio.run(main, backend=backend)
    finally:
        listener.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_under_trio_the_client_reads_its_socket_itself_and_under_asyncio_its_stream(
    backend: str,
) -> None:
    """Trio lets the reader wait on the socket the stream writes to (one recv per frame,
    not a failed one first); asyncio's transport owns its socket's reading."""
    async def main(path: str) -> None:
        async with connect_unix(path) as c, connect_unix(path) as other:
            assert (c._raw is not None) == (backend == "trio")
            async with c.subscribe("t") as sub:
                for i in range(50):
                    await other.publish("t", i)
                assert [(await sub.next_message()).payload for _ in range(50)] == list(range(50))
                await other.publish("t", "after a wait")
                assert await sub.__anext__() == "after a wait"

    run_clients(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_are_delivered_however_the_reads_cut_them(backend: str, tmp_path: Path) -> None:
    """One whole frame per read (the common case, parsed without buffering), a frame cut
    over two reads, several frames in one read, a blank line and a junk line alone: every
    item arrives, in order."""
    path = tmp_path / "fake.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    reads = [b'{"id":1,"ok":true}\n', b'{"id":1,"seq":1,"item":"a"}\n', b"\n",
             b'{"id":1,"seq":2,', b'"item":"b"}\n', b"junk\n",
             b'{"id":1,"seq":3,"item":"c"}\n{"id":1,"seq":4,"item":"d"}\n{"id":1,"se',
             b'q":5,"item":"e"}\n']  # fmt: skip

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the subscribe request
            for chunk in reads:
                conn.sendall(chunk)
                time.sleep(0.02)  # each its own read
            conn.recv(65536)  # until the client leaves

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main() -> None:
        async with connect_unix(str(path)) as c, c.subscribe("t") as sub:
            got = [await sub.next_message() for _ in range(5)]
        assert [(m.seq, m.payload) for m in got] == list(enumerate("abcde", 1))

    try:
        anyio.run(main, backend=backend)
    finally:
        listener.close()
        thread.join(5)
