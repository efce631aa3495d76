"""The injected transport: framed byte streams between addresses, and its TCP adapter."""

from __future__ import annotations

from collections import deque
from typing import Protocol

import anyio
from anyio.abc import Listener, ObjectStream, SocketStream

from ._accept_fix import fix_sock_accept

Connection = ObjectStream[bytes]
"""A bidirectional stream of frames (whole messages)."""

MAX_FRAME = 4 * 1024 * 1024
_READ = 256 * 1024
"""At most this much is read from a socket at once."""


async def send_frames(conn: Connection, frames: list[bytes]) -> None:
    """Send ``frames`` in order: at once (one write, one scheduled delivery) when the
    connection has ``send_many``, else one by one."""
    many = getattr(conn, "send_many", None)
    if many is not None:
        await many(frames)
    else:
        for frame in frames:
            await conn.send(frame)


async def receive_frames(conn: Connection) -> list[bytes]:
    """Wait for at least one frame and return every frame already arrived (one task
    switch for a burst) when the connection has ``receive_many``; else one frame."""
    many = getattr(conn, "receive_many", None)
    if many is not None:
        return await many()  # type: ignore[no-any-return]
    return [await conn.receive()]


class Transport(Protocol):
    """How the protocol code reaches peers: dial an address, listen on one."""

    shares_frames: bool
    """Every node of the process receives the very frame object its sender sent (the
    memory network), so what is decoded from a frame may be shared between them."""

    async def dial(self, address: str) -> Connection:
        """Open a connection to ``address`` (``host:port``); raises ``OSError`` if refused."""
        ...

    async def listen(self, address: str) -> Listener[Connection]:
        """Listen on ``address``; the listener serves each inbound connection to a handler."""
        ...


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; a one-line ``ValueError`` when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be host:port, not {address!r}")
    return host, int(port)


class _FramedStream(ObjectStream[bytes]):
    """Length-prefixed frames over a TCP byte stream.

    Reads take whatever the socket holds (up to `_READ` bytes) and cut every whole frame
    out of it, so a burst costs one read and one wake-up, not two reads of exactly the
    header's and the body's length per frame (anyio's buffered stream reads no more than
    it is asked for: each frame cost two awaits and two turns of the event loop)."""

    def __init__(self, stream: SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._frames: deque[bytes] = deque()
        self._broken: str | None = None
        # Only one task writes at a time; uncontended (nearly always), no checkpoint.
        self._send_lock = anyio.Lock(fast_acquire=True)

    async def send(self, item: bytes) -> None:
        await self.send_many([item])

    async def send_many(self, items: list[bytes]) -> None:
        """Several frames in one write (one system call for a burst)."""
        data = b"".join(len(item).to_bytes(4, "big") + item for item in items)
        async with self._send_lock:
            await self._stream.send(data)

    async def receive_many(self) -> list[bytes]:
        """Every whole frame arrived so far (waiting for at least one)."""
        while not self._frames:
            await self._read()
        frames = list(self._frames)
        self._frames.clear()
        return frames

    async def receive(self) -> bytes:
        while not self._frames:
            await self._read()
        return self._frames.popleft()

    async def _read(self) -> None:
        if self._broken is not None:
            raise anyio.BrokenResourceError(self._broken)
        # EndOfStream, also in the middle of a frame: the peer is gone either way.
        buffer = self._buffer
        buffer += await self._stream.receive(_READ)
        at = 0
        while len(buffer) - at >= 4:
            size = int.from_bytes(buffer[at : at + 4], "big")
            if size > MAX_FRAME:
                # The frames before it are handed over first, as they arrived.
                self._broken = f"frame of {size} bytes is over the limit"
                if not self._frames:
                    raise anyio.BrokenResourceError(self._broken)
                break
            end = at + 4 + size
            if len(buffer) < end:
                break
            self._frames.append(bytes(buffer[at + 4 : end]))
            at = end
        del buffer[:at]

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class _FramedListener(Listener[Connection]):
    def __init__(self, inner: Listener[SocketStream]) -> None:
        self._inner = inner

    async def serve(self, handler, task_group=None) -> None:  # type: ignore[no-untyped-def]
        async def wrapped(stream: SocketStream) -> None:
            await handler(_FramedStream(stream))

        await self._inner.serve(wrapped, task_group)

    async def aclose(self) -> None:
        await self._inner.aclose()


class TcpTransport:
    """Real sockets (anyio), each frame prefixed with its 4-byte length."""

    shares_frames = False

    def __init__(self, connect_timeout: float = 3.0) -> None:
        self._connect_timeout = connect_timeout

    async def dial(self, address: str) -> Connection:
        host, port = split_address(address)
        with anyio.fail_after(self._connect_timeout):
            stream = await anyio.connect_tcp(host, port)
        return _FramedStream(stream)

    async def listen(self, address: str) -> Listener[Connection]:
        host, port = split_address(address)
        fix_sock_accept()
        return _FramedListener(await anyio.create_tcp_listener(local_host=host, local_port=port))
