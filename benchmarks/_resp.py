"""A minimal Redis (RESP2) client on anyio, for the peer figures of bench_sync.py: the same
event loop and streams as the sync client, so the two services are compared, not the
clients' libraries. Commands, integer/bulk/array replies and pub/sub pushes; no more."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc


class RedisError(Exception):
    """An error reply, or the server closed the connection."""


class Resp:
    """One connection to redis-server over its Unix socket."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, path: str) -> Resp:
        """Connect to redis-server's Unix socket at `path`."""
        return cls(await anyio.connect_unix(path))

    async def aclose(self) -> None:
        """Close the connection."""
        await self._stream.aclose()

    async def send(self, *args: str | bytes | int | float) -> None:
        """Send one command without waiting for its reply."""
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            data = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
        await self._stream.send(b"".join(parts))

    async def command(self, *args: str | bytes | int | float) -> Any:
        """Send one command and return its reply."""
        await self.send(*args)
        return await self.read()

    async def read(self) -> Any:
        """The next reply or push: int, bytes, None, or a list of them."""
        line = await self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = await self._exactly(size + 2)
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [await self.read() for _ in range(count)]
        raise RedisError(f"unexpected reply {line[:40]!r}")

    async def _fill(self) -> None:
        try:
            self._buffer += await self._stream.receive(65536)
        except anyio.EndOfStream:
            raise RedisError("redis-server closed the connection") from None

    async def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            await self._fill()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            await self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data
