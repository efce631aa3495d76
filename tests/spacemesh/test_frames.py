"""Frames travel in bursts: one send and one wake-up per burst, in order, on both transports."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from scenarios.spacemesh import MemoryLink, MemoryNetwork
from scenarios.spacemesh._transport import (
    TcpTransport,
    _AsyncioListener,
    receive_frames,
    send_frames,
)

pytestmark = pytest.mark.anyio


_UVLOOP = ("asyncio", {"use_uvloop": True})


@pytest.fixture(params=["trio", "asyncio", _UVLOOP], ids=["trio", "asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Each: the TCP transport is anyio's streams on trio, asyncio's protocols on asyncio,
    and on uvloop (the real nodes' loop), whose transports are not asyncio's classes."""
    return request.param


async def _listen() -> tuple[TcpTransport, Any, int]:
    """The TCP transport, a listener of it on a free loopback port, and that port."""
    tcp = TcpTransport()
    listener = await tcp.listen("127.0.0.1:0")
    if isinstance(listener, _AsyncioListener):
        return tcp, listener, listener.port
    port = listener._inner.listeners[0].extra(anyio.abc.SocketAttribute.local_port)  # type: ignore[attr-defined]
    return tcp, listener, port


async def test_a_burst_on_a_memory_link_arrives_as_one_batch_in_order() -> None:
    net = MemoryNetwork(seed=3, default=MemoryLink(delay=0.2))
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        listener = await net.transport("10.2.0.2:1").listen("10.2.0.2:1")
        accepted: list[object] = []

        async def keep(conn: object) -> None:
            accepted.append(conn)
            await anyio.sleep_forever()

        tg.start_soon(listener.serve, keep)
        dialer = await net.transport("10.2.0.1").dial("10.2.0.2:1")
        await send_frames(dialer, [b"a", b"b", b"c"])
        await dialer.send(b"d")  # same moment, separate send: joins the same delivery
        await anyio.sleep(0.3)
        (acceptor,) = accepted
        assert await receive_frames(acceptor) == [b"a", b"b", b"c", b"d"]  # type: ignore[arg-type]
        await dialer.send(b"e")
        await anyio.sleep(0.1)  # e still in flight
        await dialer.send(b"f")  # later: its own delivery, still behind e
        # e comes 0.1 s before f: taken alone unless this task wakes that late (f sent
        # 10 ms after e, a loaded machine's stall of 10 ms failed it).
        assert await receive_frames(acceptor) == [b"e"]  # type: ignore[arg-type]
        assert await acceptor.receive() == b"f"  # type: ignore[attr-defined]
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    "frames",
    [
        [i.to_bytes(2, "big") * (i + 1) for i in range(200)],
        [bytes(range(256)) * 4096, b"after"],  # a frame of 1 MiB: four reads' worth
    ],
    ids=["200 frames", "longer than a read"],
)
async def test_a_burst_over_tcp_is_one_write_and_arrives_in_order(frames: list[bytes]) -> None:
    tcp, listener, port = await _listen()
    got: list[bytes] = []
    done = anyio.Event()

    async def serve(conn: object) -> None:
        while len(got) < len(frames):
            got.extend(await receive_frames(conn))  # type: ignore[arg-type]
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        conn = await tcp.dial(f"127.0.0.1:{port}")
        await send_frames(conn, frames)
        with anyio.fail_after(10):
            await done.wait()
        assert got == frames
        await conn.aclose()
        tg.cancel_scope.cancel()


async def test_a_burst_over_tcp_is_read_in_a_few_reads_not_two_per_frame() -> None:
    """The frames a read brought are all handed over at once: a burst of 200 frames
    (13 KB) sent in one write takes a few `receive_frames` calls, not one per frame."""
    tcp, listener, port = await _listen()
    calls: list[int] = []
    done = anyio.Event()

    async def serve(conn: object) -> None:
        got = 0
        while got < 200:
            got += len(await receive_frames(conn))  # type: ignore[arg-type]
            calls.append(got)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        conn = await tcp.dial(f"127.0.0.1:{port}")
        await send_frames(conn, [bytes([i % 256]) * 64 for i in range(200)])
        with anyio.fail_after(10):
            await done.wait()
        assert calls[-1] == 200 and len(calls) <= 4, calls
        await conn.aclose()
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ((5).to_bytes(4, "big") + b"ab", anyio.EndOfStream),  # cut inside a frame
        ((4 * 1024 * 1024 + 1).to_bytes(4, "big"), anyio.BrokenResourceError),  # too long
    ],
)
async def test_a_cut_or_oversized_frame_ends_the_connection(
    data: bytes, error: type[Exception]
) -> None:
    _, listener, port = await _listen()
    outcome: list[object] = []
    done = anyio.Event()

    async def serve(conn: object) -> None:
        try:
            outcome.append(await receive_frames(conn))  # type: ignore[arg-type]
            outcome.append(await receive_frames(conn))  # type: ignore[arg-type]
        except Exception as exc:  # what ended it is the point
            outcome.append(exc)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        raw = await anyio.connect_tcp("127.0.0.1", port)
        await raw.send((1).to_bytes(4, "big") + b"x" + data)
        await raw.send_eof()
        with anyio.fail_after(10):
            await done.wait()
        assert outcome[0] == [b"x"] and isinstance(outcome[1], error), outcome
        await raw.aclose()
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("anyio_backend", ["asyncio", _UVLOOP], ids=["asyncio", "uvloop"])
# (not trio: its stream reads on demand)
async def test_frames_the_reader_has_not_taken_pause_reading() -> None:
    """On asyncio, at most one read's worth of frames waits for a slow reader: then the
    socket is not read, and TCP slows the sender (as anyio's stream does on trio)."""
    tcp, listener, port = await _listen()
    accepted: list[Any] = []

    async def keep(conn: object) -> None:
        accepted.append(conn)
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, keep)
        conn = await tcp.dial(f"127.0.0.1:{port}")
        frame = b"x" * 1000
        await send_frames(conn, [frame] * 600)  # 600 KB: over one read (256 KiB)
        await anyio.sleep(0.3)
        (acceptor,) = accepted
        protocol = acceptor._p
        assert not protocol.transport.is_reading()
        waiting = len(protocol.frames)
        assert 256 <= waiting < 600
        taken = await receive_frames(acceptor)  # type: ignore[arg-type]
        assert protocol.transport.is_reading()
        with anyio.fail_after(10):
            while len(taken) < 600:
                taken += await receive_frames(acceptor)  # type: ignore[arg-type]
        assert taken == [frame] * 600
        await conn.aclose()
        tg.cancel_scope.cancel()
