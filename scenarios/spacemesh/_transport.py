"""The injected transport: framed byte streams between addresses, and its TCP adapter."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol, cast

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


def _cut_frames(buffer: bytearray, frames: deque[bytes]) -> str | None:
    """Move every whole frame at the start of ``buffer`` to ``frames``; why the stream is
    broken (a frame over `MAX_FRAME`: the frames before it are moved first), or None."""
    at = 0
    broken = None
    while len(buffer) - at >= 4:
        size = int.from_bytes(buffer[at : at + 4], "big")
        if size > MAX_FRAME:
            broken = f"frame of {size} bytes is over the limit"
            break
        end = at + 4 + size
        if len(buffer) < end:
            break
        frames.append(bytes(buffer[at + 4 : end]))
        at = end
    del buffer[:at]
    return broken


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; a one-line ``ValueError`` when malformed."""
    host, sep, port = address.rpartition(":")
    bad_host = not host or "/" in host  # a URL ("http://poet:7000") is not an address
    if not sep or bad_host or not port.isdigit() or not 0 <= int(port) <= 65535:
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
        self._buffer += await self._stream.receive(_READ)
        self._broken = _cut_frames(self._buffer, self._frames)
        if self._broken is not None and not self._frames:
            raise anyio.BrokenResourceError(self._broken)

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


class _FrameProtocol(asyncio.Protocol):
    """Length-prefixed frames straight from asyncio's callbacks (`_AsyncioFramed`).

    anyio's socket stream over asyncio pauses the transport's reading after every receive
    and resumes it before the next (two ``epoll_ctl`` calls per wait) and yields to the
    loop before every send; for a node's flood of small frames that was about a tenth of
    its CPU. Here each arriving chunk is cut into frames as it comes, the reader is woken
    once per chunk, and a send is a write (waiting only while the kernel's buffer is full).
    Reading pauses while `_READ` bytes of whole frames wait for the reader, as anyio's
    stream holds at most one read: a slow reader still slows its senders down through TCP.
    """

    def __init__(self, accepted: asyncio.Queue[_AsyncioFramed] | None = None) -> None:
        self._accepted = accepted
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.frames: deque[bytes] = deque()
        self.broken: str | None = None
        self.ended = False
        self.lost: Exception | None = None
        self.arrived: asyncio.Future[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.held = 0
        """Bytes of whole frames (with their prefixes) the reader has not taken yet."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not always a subclass of asyncio's (uvloop's are not).
        self.transport = cast(asyncio.Transport, transport)
        if self._accepted is not None:
            self._accepted.put_nowait(_AsyncioFramed(self))

    def data_received(self, data: bytes) -> None:
        if self.broken is not None:
            return
        before = len(self.buffer) + len(data)
        self.buffer += data
        self.broken = _cut_frames(self.buffer, self.frames)
        self.held += before - len(self.buffer)
        if (self.broken is not None or self.held >= _READ) and self.transport is not None:
            self.transport.pause_reading()
        if self.frames or self.broken is not None:
            self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.lost = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def _wake(self) -> None:
        if self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)

    def taken(self, size: int) -> None:
        """The reader took ``size`` bytes of frames: read on once below `_READ` held."""
        self.held -= size
        if self.held < _READ and self.broken is None and self.transport is not None:
            self.transport.resume_reading()  # a no-op unless paused


class _AsyncioFramed(ObjectStream[bytes]):
    """The frames of one TCP connection on asyncio (`_FrameProtocol`); the same behaviour
    as `_FramedStream`: ``EndOfStream`` at the end, also inside a frame;
    ``BrokenResourceError`` after an oversized frame or a reset."""

    def __init__(self, protocol: _FrameProtocol) -> None:
        self._p = protocol

    async def send(self, item: bytes) -> None:
        await self.send_many([item])

    async def send_many(self, items: list[bytes]) -> None:
        """Several frames in one write."""
        p = self._p
        transport = p.transport
        if transport is None or transport.is_closing():
            raise anyio.BrokenResourceError("the connection is closed")
        transport.write(b"".join(len(item).to_bytes(4, "big") + item for item in items))
        if not p.writable.is_set():
            await p.writable.wait()  # the kernel's buffer and the transport's are full

    async def receive_many(self) -> list[bytes]:
        """Every whole frame arrived so far (waiting for at least one)."""
        frames = self._p.frames
        if not frames:
            await self._wait()
        items = list(frames)
        frames.clear()
        self._p.taken(sum(map(len, items)) + 4 * len(items))
        return items

    async def receive(self) -> bytes:
        if not self._p.frames:
            await self._wait()
        frame = self._p.frames.popleft()
        self._p.taken(len(frame) + 4)
        return frame

    async def _wait(self) -> None:
        p = self._p
        while not p.frames:
            if p.broken is not None:
                raise anyio.BrokenResourceError(p.broken)
            if p.lost is not None:
                raise anyio.BrokenResourceError(str(p.lost))
            if p.ended:
                raise anyio.EndOfStream
            p.arrived = asyncio.get_running_loop().create_future()
            await p.arrived

    async def send_eof(self) -> None:
        if self._p.transport is not None:
            self._p.transport.write_eof()

    async def aclose(self) -> None:
        if self._p.transport is not None:
            self._p.transport.close()


class _AsyncioListener(Listener[Connection]):
    """An asyncio server whose connections `serve` hands to its handler as they come."""

    def __init__(self, server: asyncio.Server, accepted: asyncio.Queue[_AsyncioFramed]) -> None:
        self._server = server
        self._accepted = accepted

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.sockets[0].getsockname()[1])

    async def serve(self, handler, task_group=None) -> None:  # type: ignore[no-untyped-def]
        """Run ``handler`` on each connection until cancelled; then stop listening."""
        try:
            async with anyio.create_task_group() as tg:
                group = task_group or tg
                while True:
                    group.start_soon(handler, await self._accepted.get())
        finally:
            self._server.close()

    async def aclose(self) -> None:
        self._server.close()


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio (or no loop)
        return False
    return True


class TcpTransport:
    """Real sockets, each frame prefixed with its 4-byte length: asyncio's protocols
    directly on asyncio (`_FrameProtocol`), anyio's streams on other event loops."""

    shares_frames = False

    def __init__(self, connect_timeout: float = 3.0) -> None:
        self._connect_timeout = connect_timeout

    async def dial(self, address: str) -> Connection:
        host, port = split_address(address)
        with anyio.fail_after(self._connect_timeout):
            if _on_asyncio():
                loop = asyncio.get_running_loop()
                _, protocol = await loop.create_connection(_FrameProtocol, host, port)
                return _AsyncioFramed(protocol)
            stream = await anyio.connect_tcp(host, port)
        return _FramedStream(stream)

    async def listen(self, address: str) -> Listener[Connection]:
        host, port = split_address(address)
        fix_sock_accept()
        if _on_asyncio():
            accepted: asyncio.Queue[_AsyncioFramed] = asyncio.Queue()
            server = await asyncio.get_running_loop().create_server(
                lambda: _FrameProtocol(accepted), host, port, reuse_address=True
            )
            return _AsyncioListener(server, accepted)
        return _FramedListener(await anyio.create_tcp_listener(local_host=host, local_port=port))
