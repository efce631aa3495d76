"""The sync service's client, on anyio: the same code under Trio and asyncio."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import orjson
import sniffio

from harness.sync._protocol import MAX_FRAME

_WAITS = ("barrier", "signal_and_wait")
"""The requests whose reply waits on other instances: cancelled on the service if the
caller gives up."""

_READ = 65536  # bytes per read


class SyncError(Exception):
    """The sync service refused a request, or the connection to it was lost."""


class BarrierFailed(SyncError):
    """A barrier that can no longer be met (a participant ended without signalling)."""


class SubscriptionFailed(SyncError):
    """A subscription that expected more items than can still come (instances that would
    have published ended first); the message names them."""


@dataclass(frozen=True, slots=True)
class Message:
    """One subscription item: its 1-based position in the topic and its payload."""

    seq: int
    payload: Any


class _Slot:
    """Where a waiting task sleeps: woken when what it waits for may have come, or when it
    should take over reading the connection."""

    __slots__ = ("wakes",)

    def __init__(self) -> None:
        self.wakes: list[anyio.Event] = []

    def set(self) -> None:
        for wake in self.wakes:
            wake.set()


class _Pending(_Slot):
    __slots__ = ("frame",)

    def __init__(self) -> None:
        super().__init__()
        self.frame: dict[str, Any] | None = None


class Subscription(_Slot):
    """The messages of one topic, from the first, in order; iterate with `async for`."""

    __slots__ = ("_client", "_closed", "_error", "_items")

    def __init__(self, client: SyncClient) -> None:
        super().__init__()
        self._client = client
        self._items: deque[Message] = deque()
        self._closed = False
        self._error: str | None = None

    def _push(self, message: Message) -> None:
        self._items.append(message)
        self.set()

    def _close(self) -> None:
        self._closed = True
        self.set()

    def _fail(self, error: str) -> None:
        self._error = error
        self._close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        """The next payload (use `next_message` for its position too)."""
        return (await self.next_message()).payload

    async def next_message(self) -> Message:
        """The next item with its position; raises SubscriptionFailed if the items it
        expects can no longer come, SyncError if the connection is lost."""
        items = self._items
        if not items:  # else no wait: a read brought several items at once
            await self._client._wait(self, self._ready)
            if not items:
                if self._error is not None:
                    raise SubscriptionFailed(self._error)
                raise SyncError(f"the subscription ended: {self._client._closed or 'cancelled'}")
        return items.popleft()

    def _ready(self) -> bool:
        return bool(self._items) or self._closed


class SyncClient:
    """A connection to the sync service. Open it with `connect_unix` or `connect_tcp`.

    There is no reader task: a task that waits for a reply or a message reads the
    connection itself when no other task is reading, and hands the reading over to another
    waiting task when what it waited for has come. A delivery thus costs one task wake-up,
    not two.
    """

    def __init__(self, stream: anyio.abc.ByteStream, instance: str | None) -> None:
        self._stream = stream
        self.instance = instance
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subs: dict[int, Subscription] = {}
        self._send_lock = anyio.Lock()
        self._closed: str | None = None
        self._buffer = bytearray()
        self._reading = False
        self._sleeping: dict[anyio.Event, None] = {}  # in the order they fell asleep
        self._raw = _trio_socket(stream)
        self._trio: Any = None  # the trio module, where there is a raw socket
        if self._raw is not None:
            import trio

            self._trio = trio
        self._drained = False  # the last read took all the socket held

    # -- requests ------------------------------------------------------------------------

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; raises SyncError on an error reply."""
        rid = next(self._ids)
        pending = _Pending()
        self._pending[rid] = pending
        try:
            await self._send({"id": rid, "op": op, **fields})
            try:
                await self._wait(pending, lambda: pending.frame is not None)
            except anyio.get_cancelled_exc_class():
                if op in _WAITS and pending.frame is None and self._closed is None:
                    # Given up: the service must not keep it waiting there (a timeout
                    # would name that barrier; its end would be recorded as failed).
                    with anyio.CancelScope(shield=True), contextlib.suppress(SyncError):
                        await self._send({"id": next(self._ids), "op": "cancel", "target": rid})
                raise
        finally:
            self._pending.pop(rid, None)
        frame = pending.frame
        if frame is None:
            raise SyncError(f"not connected to the sync service: {self._closed}")
        if "error" in frame:
            raise SyncError(str(frame["error"]))
        return frame

    async def signal_entry(self, state: str) -> int:
        """Arrive at `state`; returns the 1-based arrival number (the instance's seq there)."""
        return int((await self.request("signal_entry", state=state))["seq"])

    async def barrier(self, state: str, target: int, *, watch: bool = False) -> None:
        """Wait until `target` arrivals at `state`; BarrierFailed if that cannot happen.

        `watch=True` says this instance will not signal `state` itself (it waits for the
        others, as a server for its clients): the barrier then fails as soon as the others
        still running are too few, instead of counting on this one."""
        try:
            await self.request("barrier", state=state, target=target, watch=watch)
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
    async def subscribe(
        self, topic: str, *, expect: int | None = None, roles: Sequence[str] | None = None
    ) -> AsyncIterator[Subscription]:
        """Every message of `topic` from the first, then live, until the block ends.

        With `expect`, reading fails with SubscriptionFailed as soon as that many items
        can no longer come: the items published so far plus one from each running instance
        that has not published to `topic` yet are too few (docs/contracts.md, 4). `roles`
        (with `expect`): only instances of these roles publish here, so only they count."""
        if roles is not None and expect is None:
            raise ValueError("subscribe: roles says who publishes what expect counts; "
                             "give expect too")
        rid = next(self._ids)
        subscription = self._subs[rid] = Subscription(self)
        pending = _Pending()
        self._pending[rid] = pending
        request: dict[str, Any] = {"id": rid, "op": "subscribe", "topic": topic}
        if expect is not None:
            request["expect"] = expect
        if roles is not None:
            request["roles"] = list(roles)
        try:
            await self._send(request)
            await self._wait(pending, lambda: pending.frame is not None)
            if pending.frame is None:
                raise SyncError(f"not connected to the sync service: {self._closed}")
            if "error" in pending.frame:
                error = str(pending.frame["error"])
                failed = expect is not None and self._closed is None
                raise (SubscriptionFailed if failed else SyncError)(error)
            del self._pending[rid]  # an error from now on fails the subscription
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
        data = _encode(frame)
        async with self._send_lock:
            try:
                # Whole or not at all: a frame cut by a cancellation would run into the next
                # one and break the connection for every later call.
                with anyio.CancelScope(shield=True):
                    await self._stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
                self._lost(f"connection lost: {e}")
                raise SyncError(f"not connected to the sync service: {self._closed}") from None

    async def _wait(self, slot: _Slot, done: Callable[[], bool]) -> None:
        """Until `done()` or the connection is lost: read the connection if no other task
        is reading it, else sleep in `slot` until woken."""
        while not done() and self._closed is None:
            if not self._reading:
                self._reading = True
                try:
                    while True:
                        await self._receive()
                        if done() or self._closed is not None:
                            break
                finally:
                    self._reading = False
                    if self._sleeping:
                        self._hand_over()
                return
            wake = anyio.Event()
            slot.wakes.append(wake)
            self._sleeping[wake] = None
            try:
                await wake.wait()
            finally:
                slot.wakes.remove(wake)
                del self._sleeping[wake]
                if wake.is_set() and not self._reading:
                    self._hand_over()  # woken to read, maybe, but cancelled instead

    def _hand_over(self) -> None:
        """Wake a sleeping task that nothing else has woken, so that it reads."""
        for wake in self._sleeping:
            if not wake.is_set():
                wake.set()
                return

    async def _receive(self) -> None:
        """Read once and deliver the frames read. Under Trio straight from the socket:
        once the last read took all there was, wait until it is readable, then one recv
        (the stream's way tries a recv first, which fails after every frame a subscriber
        waits for, and passes through three layers: at N subscribers per process that was
        a third of the client's CPU; the loop is inline for the same reason)."""
        sock, trio = self._raw, self._trio
        if sock is None:
            self._take(await self._receive_stream())
            return
        while True:
            try:
                if self._drained:
                    await trio.lowlevel.wait_readable(sock)
                else:  # a full read: more may be there at once, but others get a turn
                    await trio.lowlevel.checkpoint()
                data = sock.recv(_READ)
            except BlockingIOError:
                self._drained = True
                continue
            except (trio.ClosedResourceError, OSError):
                data = b""
            self._drained = len(data) < _READ
            self._take(data)
            return

    async def _receive_stream(self) -> bytes:
        try:
            return await self._stream.receive(_READ)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return b""

    def _take(self, data: bytes) -> None:
        """Deliver the whole frames of `data` (b"": the connection's end)."""
        if not data:
            self._lost("the sync service closed the connection")
            return
        buffer = self._buffer
        if not buffer and data.find(b"\n") == len(data) - 1:  # one whole frame: most reads
            try:
                frame = orjson.loads(data)
            except orjson.JSONDecodeError:
                return  # as below
            if isinstance(frame, dict):
                self._deliver(frame)
            return
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            try:
                frame = orjson.loads(buffer[start:end])
            except orjson.JSONDecodeError:
                # A frame cut short (or a blank line) where the service dropped this
                # connection: its last frame, next, says why.
                frame = None
            start = end + 1
            if isinstance(frame, dict):
                self._deliver(frame)
        del buffer[:start]
        if len(buffer) > MAX_FRAME:
            self._lost(f"the sync service sent a frame longer than {MAX_FRAME} bytes")

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
            pending.set()
        elif rid is None and frame.get("closed"):  # the service's last word
            self._lost(f"the sync service closed the connection: {frame.get('error')}")
        elif "error" in frame and (sub := self._subs.get(rid)) is not None:  # type: ignore[arg-type]
            sub._fail(str(frame["error"]))

    def _lost(self, why: str) -> None:
        if self._closed is not None:
            return
        self._closed = why
        for pending in self._pending.values():
            pending.frame = {"error": why}
            pending.set()
        for sub in self._subs.values():
            sub._close()


def _trio_socket(stream: anyio.abc.ByteStream) -> socket.socket | None:
    """The socket under `stream` when it runs on Trio, which lets a task wait on a socket
    that a stream also writes to (asyncio's transports own their socket's reading)."""
    try:
        if sniffio.current_async_library() != "trio":
            return None
    except sniffio.AsyncLibraryNotFoundError:
        return None
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    return raw if isinstance(raw, socket.socket) else None


@asynccontextmanager
async def _open(
    stream: anyio.abc.ByteStream, instance: str | None, token: str | None
) -> AsyncIterator[SyncClient]:
    client = SyncClient(stream, instance)
    async with stream:
        if instance is not None:
            hello: dict[str, Any] = {"instance": instance}
            if token is not None:
                hello["token"] = token
            await client.request("hello", **hello)
        yield client


@asynccontextmanager
async def connect_unix(
    path: str, instance: str | None = None, token: str | None = None
) -> AsyncIterator[SyncClient]:
    """Connect over the run's Unix socket; `instance` names this client in every event,
    `token` (the instance's TEST_SYNC_TOKEN) proves it is that instance."""
    try:
        stream = await anyio.connect_unix(path)
    except OSError as e:
        raise SyncError(f"cannot reach the sync service at {path}: {e.strerror or e}") from None
    async with _open(stream, instance, token) as client:
        yield client


CONNECT_PATIENCE_S = 60.0
"""How long an instance, its agent and its pod's shaper keep trying to reach the sync
service over TCP (`connect_tcp(..., patience_s=CONNECT_PATIENCE_S)`): on a cluster a pod
may start before the service's DNS name resolves or before it listens (refused). Local
instances reach theirs over a Unix socket the supervisor made first, and fail at once."""
_FIRST_WAIT_S = 0.1  # between the first tries; doubled after each, up to _LONGEST_WAIT_S
_LONGEST_WAIT_S = 5.0


@asynccontextmanager
async def connect_tcp(
    host: str, port: int, instance: str | None = None, token: str | None = None, *,
    patience_s: float = 0.0,
) -> AsyncIterator[SyncClient]:
    """Connect over TCP; `instance` names this client in every event, `token` (the
    instance's TEST_SYNC_TOKEN) proves it is that instance. A service that cannot be
    reached (a name that does not resolve, a refused or failed connect) is tried again, with
    growing waits between tries, for `patience_s` seconds; then SyncError says for how long."""
    stream = await _reach(host, port, patience_s)
    async with _open(stream, instance, token) as client:
        yield client


async def _reach(host: str, port: int, patience_s: float) -> anyio.abc.SocketStream:
    deadline = anyio.current_time() + patience_s
    wait = _FIRST_WAIT_S
    while True:
        left = deadline - anyio.current_time()
        why = "no answer"  # the try below hung (a SYN nothing answers) for what was left
        with anyio.move_on_after(left if patience_s > 0 else math.inf):
            try:
                return await anyio.connect_tcp(host, port)
            except OSError as e:
                why = str(e)
        left = deadline - anyio.current_time()
        if left <= 0:
            tried = f" (tried for {patience_s:g} s)" if patience_s > 0 else ""
            raise SyncError(f"cannot reach the sync service at {host}:{port}{tried}: {why}")
        await anyio.sleep(min(wait, left))
        wait = min(wait * 2, _LONGEST_WAIT_S)


def _encode(frame: dict[str, Any]) -> bytes:
    """The frame's line; TypeError for a type JSON cannot carry, ValueError for a NaN or an
    infinity (orjson writes them as null: refused, not changed), each naming the request."""
    op = frame.get("op", "request")
    try:
        data = orjson.dumps(frame)
    except orjson.JSONEncodeError as e:
        if "Recursion limit" in str(e):  # (orjson's own words: "Recursion limit reached")
            raise ValueError(f"{op}: cannot send as JSON: nested deeper than the 254 levels "
                             "JSON is sent and kept with") from None
        raise TypeError(f"{op}: cannot send as JSON: {e}") from None
    if b"null" in data:  # the only place a NaN or an infinity can be
        where = _non_finite(frame, "")
        if where is not None:
            raise ValueError(f"{op}: {where[0]} is {where[1]!r}: JSON has no NaN or infinity "
                            f"(it would arrive as null)")
    if len(data) > MAX_FRAME:  # the service would close the connection, unheard of here
        raise ValueError(f"{op}: a frame of {len(data)} bytes is longer than the sync "
                         f"service takes ({MAX_FRAME} bytes)")
    return data + b"\n"


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    """Where in `value` the first NaN or infinity is, and it; None if there is none."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):  # orjson's too
        items = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{path}[{key!r}]" if path else str(key))
        if found is not None:
            return found
    return None
