"""The sync service's client, on anyio: the same code under Trio and asyncio."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import orjson

from harness.sync._protocol import MAX_FRAME


class SyncError(Exception):
    """The sync service refused a request, or the connection to it was lost."""


class BarrierFailed(SyncError):
    """A barrier that can no longer be met (a participant ended without signalling)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One subscription item: its 1-based position in the topic and its payload."""

    seq: int
    payload: Any


class _Pending:
    __slots__ = ("event", "frame")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.frame: dict[str, Any] = {}


class Subscription:
    """The messages of one topic, from the first, in order; iterate with `async for`."""

    def __init__(self) -> None:
        self._items: deque[Message] = deque()
        self._waiter: anyio.Event | None = None
        self._closed = False

    def _push(self, message: Message) -> None:
        self._items.append(message)
        if self._waiter is not None:
            self._waiter.set()

    def _close(self) -> None:
        self._closed = True
        if self._waiter is not None:
            self._waiter.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        """The next payload (use `next_message` for its position too)."""
        return (await self.next_message()).payload

    async def next_message(self) -> Message:
        """The next item with its position; raises SyncError if the connection is lost."""
        while not self._items:
            if self._closed:
                raise SyncError("the sync service closed the subscription")
            self._waiter = anyio.Event()
            await self._waiter.wait()
            self._waiter = None
        return self._items.popleft()


class SyncClient:
    """A connection to the sync service. Open it with `connect_unix` or `connect_tcp`."""

    def __init__(self, stream: anyio.abc.ByteStream, instance: str | None) -> None:
        self._stream = stream
        self.instance = instance
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subs: dict[int, Subscription] = {}
        self._send_lock = anyio.Lock()
        self._closed: str | None = None

    # -- requests ------------------------------------------------------------------------

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; raises SyncError on an error reply."""
        rid = next(self._ids)
        pending = _Pending()
        self._pending[rid] = pending
        try:
            await self._send({"id": rid, "op": op, **fields})
            await pending.event.wait()
        finally:
            self._pending.pop(rid, None)
        frame = pending.frame
        if "error" in frame:
            raise SyncError(str(frame["error"]))
        return frame

    async def signal_entry(self, state: str) -> int:
        """Arrive at `state`; returns the 1-based arrival number (the instance's seq there)."""
        return int((await self.request("signal_entry", state=state))["seq"])

    async def barrier(self, state: str, target: int) -> None:
        """Wait until `target` arrivals at `state`; BarrierFailed if that cannot happen."""
        try:
            await self.request("barrier", state=state, target=target)
        except BarrierFailed:
            raise
        except SyncError as e:
            if self._closed is not None:
                raise
            raise BarrierFailed(str(e)) from None

    async def signal_and_wait(self, state: str, target: int) -> int:
        """signal_entry then barrier in one round trip; returns the arrival number."""
        try:
            reply = await self.request("signal_and_wait", state=state, target=target)
        except SyncError as e:
            if self._closed is not None:
                raise
            raise BarrierFailed(str(e)) from None
        return int(reply["seq"])

    async def publish(self, topic: str, payload: Any) -> int:
        """Append `payload` (any JSON value) to `topic`; returns its 1-based position."""
        return int((await self.request("publish", topic=topic, payload=payload))["seq"])

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscription]:
        """Every message of `topic` from the first, then live, until the block ends."""
        rid = next(self._ids)
        subscription = self._subs[rid] = Subscription()
        pending = _Pending()
        self._pending[rid] = pending
        try:
            await self._send({"id": rid, "op": "subscribe", "topic": topic})
            await pending.event.wait()
            if "error" in pending.frame:
                raise SyncError(str(pending.frame["error"]))
            yield subscription
        finally:
            self._pending.pop(rid, None)
            self._subs.pop(rid, None)
            subscription._close()
            if self._closed is None:
                with anyio.CancelScope(shield=True):
                    await self._send({"id": next(self._ids), "op": "cancel", "target": rid})

    async def signal_event(self, event: dict[str, Any]) -> None:
        """Record an event of this instance (type start, message, success, failure, ...)."""
        await self.request("signal_event", event=event)

    async def configure_network(self, config: dict[str, Any]) -> None:
        """Ask the supervisor to apply a network configuration (contracts.md, 6)."""
        await self.request("network", config=config)

    # -- connection ----------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._closed is not None:
            raise SyncError(f"not connected to the sync service: {self._closed}")
        data = orjson.dumps(frame) + b"\n"
        async with self._send_lock:
            try:
                await self._stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
                self._lost(f"connection lost: {e}")
                raise SyncError(f"not connected to the sync service: {self._closed}") from None

    async def _read(self) -> None:
        buffer = bytearray()
        try:
            while True:
                try:
                    data = await self._stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    break
                buffer += data
                start = 0
                while (end := buffer.find(b"\n", start)) >= 0:
                    self._deliver(orjson.loads(buffer[start:end]))
                    start = end + 1
                del buffer[:start]
                if len(buffer) > MAX_FRAME:
                    break
        finally:
            self._lost("the sync service closed the connection")

    def _deliver(self, frame: dict[str, Any]) -> None:
        rid = frame.get("id")
        if "item" in frame:
            sub = self._subs.get(rid)  # type: ignore[arg-type]
            if sub is not None:
                sub._push(Message(frame["seq"], frame["item"]))
            return
        pending = self._pending.get(rid)  # type: ignore[arg-type]
        if pending is not None:
            pending.frame = frame
            pending.event.set()

    def _lost(self, why: str) -> None:
        if self._closed is not None:
            return
        self._closed = why
        for pending in self._pending.values():
            pending.frame = {"error": why}
            pending.event.set()
        for sub in self._subs.values():
            sub._close()


@asynccontextmanager
async def _open(stream: anyio.abc.ByteStream, instance: str | None) -> AsyncIterator[SyncClient]:
    client = SyncClient(stream, instance)
    async with stream, anyio.create_task_group() as tg:
        tg.start_soon(client._read)
        if instance is not None:
            await client.request("hello", instance=instance)
        try:
            yield client
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def connect_unix(path: str, instance: str | None = None) -> AsyncIterator[SyncClient]:
    """Connect over the run's Unix socket; `instance` names this client in every event."""
    try:
        stream = await anyio.connect_unix(path)
    except OSError as e:
        raise SyncError(f"cannot reach the sync service at {path}: {e.strerror or e}") from None
    async with _open(stream, instance) as client:
        yield client


@asynccontextmanager
async def connect_tcp(
    host: str, port: int, instance: str | None = None
) -> AsyncIterator[SyncClient]:
    """Connect over TCP; `instance` names this client in every event."""
    try:
        stream = await anyio.connect_tcp(host, port)
    except OSError as e:
        raise SyncError(f"cannot reach the sync service at {host}:{port}: {e}") from None
    async with _open(stream, instance) as client:
        yield client
