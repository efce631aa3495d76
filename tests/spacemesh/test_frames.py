"""Frames travel in bursts: one send and one wake-up per burst, in order, on both transports."""

from __future__ import annotations

import anyio
import pytest

from scenarios.spacemesh import MemoryLink, MemoryNetwork
from scenarios.spacemesh._transport import TcpTransport, receive_frames, send_frames

pytestmark = pytest.mark.anyio


async def test_a_burst_on_a_memory_link_arrives_as_one_batch_in_order() -> None:
    net = MemoryNetwork(seed=3, default=MemoryLink(delay=0.05))
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
        await anyio.sleep(0.2)
        (acceptor,) = accepted
        assert await receive_frames(acceptor) == [b"a", b"b", b"c", b"d"]  # type: ignore[arg-type]
        await dialer.send(b"e")
        await anyio.sleep(0.01)
        await dialer.send(b"f")  # later: its own delivery, still behind e
        assert await receive_frames(acceptor) == [b"e"]  # type: ignore[arg-type]
        assert await acceptor.receive() == b"f"  # type: ignore[attr-defined]
        tg.cancel_scope.cancel()


async def test_a_burst_over_tcp_is_one_write_and_arrives_in_order() -> None:
    tcp = TcpTransport()
    listener = await tcp.listen("127.0.0.1:0")
    port = listener._inner.listeners[0].extra(anyio.abc.SocketAttribute.local_port)  # type: ignore[attr-defined]
    got: list[bytes] = []
    done = anyio.Event()

    async def serve(conn: object) -> None:
        while len(got) < 200:
            got.extend(await receive_frames(conn))  # type: ignore[arg-type]
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        conn = await tcp.dial(f"127.0.0.1:{port}")
        frames = [i.to_bytes(2, "big") * (i + 1) for i in range(200)]
        await send_frames(conn, frames)
        with anyio.fail_after(10):
            await done.wait()
        assert got == frames
        await conn.aclose()
        tg.cancel_scope.cancel()
