"""One connection to the sync service: requests in, replies out, and how it ends.

Whatever goes wrong in a connection (the peer leaves with replies queued, it stops reading,
it fails to authenticate, a request meets a bug) closes that connection alone, with a
`{"kind": "connection", ...}` event saying why; the service goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Container
from typing import TYPE_CHECKING, Any

import orjson
import structlog
import trio

from harness.sync._protocol import (
    CONTROL,
    MAX_FRAME,
    MAX_QUEUED,
    ProtocolError,
    decode_request,
    encode,
)
from harness.sync._state import SHARED, SyncState, item_tail
from harness.sync._tokens import Tokens

if TYPE_CHECKING:
    from harness.faults import Fault

NetworkHandler = Callable[[str | None, dict[str, Any]], Awaitable[None]]
"""Applies a `network` request of an instance (the runner's); raises ValueError if invalid."""

FaultHandler = Callable[["Fault", str], Awaitable[dict[str, Any]]]
"""Plays a fault the run's control connection asked for, naming who asked (the
conductor's `inject`); returns what it chose, raises FaultError if the run refuses it."""

FAREWELL_S = 2.0
"""How long the last frame of a connection the service closes may take to leave."""

HELLO_FRAME = 65536
"""The longest frame a connection may send before its `hello` (with tokens): a peer
without a token must not make the service hold MAX_FRAME bytes per connection."""

HELLO_WITHIN_S = 60.0
"""How long a connection may stay without a `hello` (with tokens) before it is closed: an
instance sends it at once, even on a starved machine within seconds."""

_BATCH = 1 << 20  # bytes of a subscription's backlog turned into frames per write
_READ = 65536  # bytes per read
_AFTER_EOF_POLL_S = 0.05  # how often a half-closed connection looks for what it still owes

_log = structlog.get_logger("harness.sync")


@dataclasses.dataclass(eq=False)
class _Backlog:
    """A new subscription's items so far, sent as the socket takes them: they stay in the
    topic (shared by every subscriber), not copied into the connection's queue."""

    prefix: bytes
    payloads: list[bytes]
    next: int
    end: int
    skipped: Container[int] = ()  # 1-based items not to send (an instance's repeats)
    done: bool = False  # all of it taken into a batch: items published now are replies
    last: bytes = b""  # a frame to send once it is all sent: the subscription has ended

    def extend(self, seq: int) -> bool:
        """Take item `seq` too, unless it is all taken (`Backlogged`)."""
        if self.done or self.last or seq != self.end + 1:
            return False
        self.end = seq
        return True

    def stop(self) -> None:
        """What is not in a batch yet is not sent (`Backlogged`)."""
        self.end = self.next

    def close_with(self, frame: bytes) -> bool:
        """Send `frame` once what it holds is sent, and take no more (`Backlogged`)."""
        if self.done:
            return False
        self.last = frame
        return True


def _coalesced(pieces: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """`pieces` as chunks to send: the small ones joined, each `SHARED`-sized one by itself
    (a topic's item that many connections send is not copied into each one's batch)."""
    if all(len(p) < SHARED for p in pieces):
        return [b"".join(pieces)]
    out: list[bytes | memoryview] = []
    small: list[bytes | memoryview] = []
    for piece in pieces:
        if len(piece) < SHARED:
            small.append(piece)
            continue
        if small:
            out.append(b"".join(small))
            small = []
        out.append(piece)
    if small:
        out.append(b"".join(small))
    return out


def _peer_pid(stream: trio.abc.Stream) -> int | None:
    """The process at the other end of a Unix socket (SO_PEERCRED), None for others."""
    if not isinstance(stream, trio.SocketStream) or stream.socket.family != socket.AF_UNIX:
        return None
    try:
        creds = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                         struct.calcsize("3i"))
    except OSError:
        return None
    pid: int = struct.unpack("3i", creds)[0]
    return pid or None


class Connection:
    """Serves one client: a reader task that dispatches requests and a writer task that
    sends what the socket did not take at once."""

    def __init__(
        self,
        state: SyncState,
        stream: trio.abc.Stream,
        tokens: Tokens | None,
        network: Callable[[], NetworkHandler | None],
        faults: Callable[[], FaultHandler | None] = lambda: None,
    ) -> None:
        self.state = state
        self.stream = stream
        self.instance: str | None = None
        self.control = False
        """Authenticated as the run's operator (CONTROL): it may send `fault`, only that."""
        self.queued = 0
        """Bytes of replies held for this connection, queued or being sent."""
        self._tokens = tokens
        self._network_handler = network
        self._fault_handler = faults
        # A reply goes straight to the socket when nothing is queued before it: a publish to
        # N subscribers costs N system calls, not N task switches. What the socket does not
        # take at once queues here, and one writer task sends the queue in batches.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._unix = (isinstance(stream, trio.SocketStream)
                      and stream.socket.family == socket.AF_UNIX)
        self.peer = _peer_pid(stream)
        """The client's process (Unix sockets), None if not known: replies to many clients
        take turns by it (`harness.sync._state.in_turns`)."""
        self._outbox: list[bytes | memoryview | _Backlog] = []
        self._backlogs = 0  # _Backlog entries in the outbox
        self._writing = False
        self._in_flight = 0  # bytes of `queued` in the batch being written
        self._largest = 0  # the largest frame waiting (the next batch takes every one)
        self._drained = False  # the last read took all the socket held
        self._writer_idle = trio.lowlevel.ParkingLot()
        self._closed = False
        self._farewell: bytes | None = None  # the last bytes to send, when the service closes
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._network_asked: deque[tuple[Any, dict[str, Any]]] = deque()
        """Network requests not yet applied, the first being applied (`_networks`)."""
        self.reply = self._reply  # one bound method, so identity checks work
        self._dispatch = self._serve if tokens is None else self._hello_first
        self._frame_limit = MAX_FRAME if tokens is None else HELLO_FRAME

    # -- replies -------------------------------------------------------------------------

    def _reply(self, frame: bytes | memoryview) -> None:
        if self._closed:
            return  # the connection is gone; nothing waits for this reply any more
        if not self._outbox and not self._writing and self._fd >= 0:
            try:
                sent = os.write(self._fd, frame)  # the socket is non-blocking (trio's)
            except BlockingIOError:
                sent = 0
            except OSError:
                # The client has gone (it need not wait for the reply to its last cancel):
                # only this frame is lost, nothing was queued. The reader sees the end.
                self._closed = True
                return
            if sent == len(frame):
                return
            frame = frame[sent:] if len(frame) < SHARED else memoryview(frame)[sent:]
        self.queued += len(frame)
        self._largest = max(self._largest, len(frame))
        # What waits behind the batch being written, beyond its largest frame: a reader
        # that reads is never dropped for one large item arriving while it takes another
        # (two of 10 MB were, at 8 MiB), nor for the small replies queued after it.
        waiting = self.queued - self._in_flight
        if waiting - self._largest > MAX_QUEUED:
            self._drop_slow_reader()
            return
        self._outbox.append(frame)
        if len(self._outbox) == 1:
            self._writer_idle.unpark()

    def _idle(self) -> bool:
        """Nothing waits for the socket: a reply now is written at once (`Idle`)."""
        return not self._outbox and not self._writing

    def _backlog(self, prefix: bytes, payloads: list[bytes], start: int, end: int,
                 skipped: Container[int]) -> _Backlog | None:
        """Send items `start` to `end` of a topic to a subscription from the topic, in the
        outbox's order, as the socket takes them (`Backlog`)."""
        if start >= end or self._closed:
            return None
        entry = _Backlog(prefix, payloads, start, end, skipped)
        self._outbox.append(entry)
        self._backlogs += 1
        if len(self._outbox) == 1:
            self._writer_idle.unpark()
        return entry

    def _drop_slow_reader(self) -> None:
        self._outbox.clear()
        self._backlogs = 0
        self.queued = self._in_flight = 0
        self._close(
            "dropped",
            f"dropped by the sync service: more than {MAX_QUEUED} bytes of replies were "
            "queued for this connection and it was not reading them",
        )

    def _close(self, status: str, reason: str, *, farewell: bool = True) -> None:
        """Close this connection for `reason`, recorded; with `farewell`, the replies
        still queued and a last `{"id": null, "error": reason, "closed": true}` go first."""
        if self._closed:
            return
        self._closed = True
        log = _log.info if status == "lost" else _log.warning
        log("sync connection closed", status=status, reason=reason, instance=self.instance)
        self.state.connection_event(status, reason, self.instance)
        if farewell:
            queued = [f for f in self._outbox if not isinstance(f, _Backlog)]
            last = encode({"id": None, "error": reason, "closed": True})
            # The newline ends a frame the writer may have been cut off in.
            self._farewell = b"".join([b"\n", *queued, last])
        self._scope.cancel()

    # -- the tasks -----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until the client leaves or the service closes the connection."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._write)
                    if self._tokens is not None:
                        nursery.start_soon(self._hello_deadline)
                    await self._read()
                    if not self._closed and not self._peer_gone():
                        await self._serve_after_eof()
                    if self.queued and not self._closed:
                        self._close("lost", f"the client left with {self.queued} bytes of "
                                            "replies queued for it", farewell=False)
                    nursery.cancel_scope.cancel()
        finally:
            self._closed = True
            self.state.drop_connection(self.reply)
            with trio.CancelScope(shield=True):
                if self._farewell is not None:
                    with (
                        trio.move_on_after(FAREWELL_S),
                        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                    ):
                        await self.stream.send_all(self._farewell)
                await trio.aclose_forcefully(self.stream)

    async def _hello_deadline(self) -> None:
        await trio.sleep(HELLO_WITHIN_S)
        if self.instance is None:
            self._close("refused", f"no hello within {HELLO_WITHIN_S:g} s")

    def refuse(self, reason: str) -> None:
        """Close this connection before serving it, telling the client `reason`."""
        self._close("refused", reason)

    async def _write(self) -> None:
        while True:
            if not self._outbox:
                await self._writer_idle.park()
            chunks, counted = self._next_batch()
            self._writing = True
            self._in_flight = counted
            try:
                for chunk in chunks:
                    await self.stream.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                self._close("lost", f"the connection broke with {self.queued} bytes of "
                                    f"replies queued for it: {e}", farewell=False)
                return
            if self._closed:
                return
            self._writing = False
            self._in_flight = 0
            self.queued -= counted

    def _next_batch(self) -> tuple[list[bytes | memoryview], int]:
        """The bytes to send next, in chunks, and how many of them count as queued. Replies
        go before the backlogs still being sent (a backlog takes its own subscription's live
        items, so that subscription's order holds), then up to _BATCH bytes of backlog
        items."""
        self._largest = 0  # every frame waiting goes in this batch
        if not self._backlogs:
            batch, self._outbox = self._outbox, []
            return _coalesced(batch), self.queued  # type: ignore[arg-type]
        out: list[bytes | memoryview] = [
            entry for entry in self._outbox if not isinstance(entry, _Backlog)]
        backlogs = [entry for entry in self._outbox if isinstance(entry, _Backlog)]
        size = counted = sum(map(len, out))
        taken = 0
        for entry in backlogs:
            while entry.next < entry.end and size < _BATCH:
                seq, payload = entry.next + 1, entry.payloads[entry.next]
                if seq in entry.skipped:
                    entry.next += 1
                    continue
                parts = ([entry.prefix + item_tail(seq, payload)] if len(payload) < SHARED
                         else [entry.prefix + b',"seq":%d,"item":' % seq, payload, b"}\n"])
                out += parts  # (a large item: the topic's own bytes, not a copy)
                size += sum(map(len, parts))
                entry.next += 1
            if entry.next < entry.end:
                break
            if entry.last:
                out.append(entry.last)
                size += len(entry.last)
            entry.done = True
            taken += 1
            self._backlogs -= 1
        self._outbox = backlogs[taken:]  # type: ignore[assignment]
        return _coalesced(out), counted

    async def _receive(self) -> bytes | bytearray:
        """The next bytes from the client (b"" at its end). Straight from the socket where
        there is one: once a read took all there was, wait until it is readable, then one
        read (the stream's way tries a read first, which fails after nearly every request)."""
        if self._fd < 0:
            return await self.stream.receive_some(_READ)
        while True:
            if self._drained:
                await trio.lowlevel.wait_readable(self._fd)
            else:  # a full read: more may be there at once, but others get a turn
                await trio.lowlevel.checkpoint()
            try:
                data = os.read(self._fd, _READ)
            except BlockingIOError:
                self._drained = True
                continue
            except OSError:
                return b""  # reset by the client: its end
            self._drained = len(data) < _READ
            return data

    async def _read(self) -> None:
        buffer = bytearray()
        while True:
            try:
                data = await self._receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            buffer += data
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                if end - start > self._frame_limit:  # (whole in one read, or not: the same)
                    self._refuse_long_frame()
                    return
                line = bytes(buffer[start:end])
                start = end + 1
                if line.strip():
                    try:
                        self._dispatch(line)
                    except Exception as e:  # a bug: this connection ends, not the service
                        _log.exception("sync request failed", instance=self.instance)
                        self._close("failed", f"internal error of the sync service: "
                                              f"{type(e).__name__}: {e}")
                    if self._closed:
                        return
            del buffer[:start]
            if len(buffer) > self._frame_limit:
                self._refuse_long_frame()
                return

    def _refuse_long_frame(self) -> None:
        before = " before hello" if self._frame_limit == HELLO_FRAME else ""
        self._close("refused", f"frame longer than {self._frame_limit} bytes{before}")

    def _peer_gone(self) -> bool:
        """Once the client has sent its last byte: whether it closed its socket (it reads
        nothing more either: POLLHUP) rather than only its sending side (a shell client's
        `printf ... | socat`, which then reads the replies). Only a Unix socket can tell:
        over TCP a client's close and its half-close look alike until a write fails."""
        if self._fd < 0 or not self._unix:
            return True
        poller = select.poll()
        poller.register(self._fd, select.POLLHUP)
        return bool(poller.poll(0))

    async def _serve_after_eof(self) -> None:
        """The client has only shut its sending side: its barriers and subscriptions are
        served and their replies written while it has any and reads (the run's end closes
        it), until it closes its socket."""
        # (a poll: the state has no event for it, and a half-closed client is rare)
        while not self._closed and not self._peer_gone() and (  # noqa: ASYNC110
                self.state.serves(self.reply) or self._network_asked or self._outbox
                or self._writing):
            await trio.sleep(_AFTER_EOF_POLL_S)

    # -- requests ------------------------------------------------------------------------

    def _hello_first(self, line: bytes) -> None:
        """Until a `hello` with the right token, nothing else is served."""
        try:
            frame = decode_request(line)
        except ProtocolError as e:
            self.reply(encode({"id": e.request_id, "error": str(e)}))
            return
        if frame["op"] == "hello":
            self._hello(frame["id"], frame)
            return
        why = ("not authenticated: the first request must be hello with the instance's id "
               "and its token (TEST_SYNC_TOKEN)")
        self.reply(encode({"id": frame["id"], "error": why}))
        self._close("refused", f"{frame['op']} before hello")

    def _hello(self, rid: Any, frame: dict[str, Any]) -> None:
        instance, token = frame["instance"], frame.get("token")
        if self._tokens is not None and not (
            isinstance(token, str) and self._tokens.check(instance, token)
        ):
            why = (f"hello refused: no token for instance {instance!r} (TEST_SYNC_TOKEN)"
                   if token is None else f"hello refused: wrong token for instance {instance!r}")
            self.reply(encode({"id": rid, "error": why}))
            self._close("refused", why)
            return
        self.instance = instance
        # Only a checked token makes the operator: an open service (no tokens) has none.
        self.control = instance == CONTROL and self._tokens is not None
        self._dispatch = self._serve
        self._frame_limit = MAX_FRAME
        self.reply(encode({"id": rid, "ok": True}))

    def _serve(self, line: bytes) -> None:
        try:
            frame = decode_request(line)
        except ProtocolError as e:
            self.reply(encode({"id": e.request_id, "error": str(e)}))
            return
        rid = frame["id"]
        op = frame["op"]
        st = self.state
        if self.control and op not in ("fault", "hello"):
            self.reply(encode({"id": rid, "error": f"{op}: the control connection may only "
                                                  "send fault"}))
            return
        if op == "publish":
            try:
                seq = st.publish(frame["topic"], frame["payload"], self.instance)
            except orjson.JSONEncodeError as e:
                self._too_deep(rid, op, e)
                return
            self.reply(b'{"id":%b,"ok":true,"seq":%d}\n' % (orjson.dumps(rid), seq))
        elif op == "signal_entry":
            seq = st.signal_entry(frame["state"], self.instance)
            self.reply(b'{"id":%b,"ok":true,"seq":%d}\n' % (orjson.dumps(rid), seq))
        elif op == "barrier":
            st.barrier(frame["state"], frame["target"], rid, self.reply, self.instance,
                       peer=self.peer, watch=frame.get("watch", False))
        elif op == "signal_and_wait":
            seq = st.signal_entry(frame["state"], self.instance)
            st.barrier(frame["state"], frame["target"], rid, self.reply, self.instance, seq,
                       self.peer)
        elif op == "subscribe":
            st.subscribe(frame["topic"], rid, self.reply, expect=frame.get("expect"),
                         instance=self.instance, backlog=self._backlog, idle=self._idle,
                         peer=self.peer,
                         roles=frame.get("roles"))
        elif op == "cancel":
            target = frame["target"]
            if st.unsubscribe(target, self.reply) or st.cancel_barrier(target, self.reply):
                self.reply(encode({"id": rid, "ok": True}))
            else:
                self.reply(encode({"id": rid, "error": f"no subscription or barrier {target!r}"}))
        elif op == "signal_event":
            try:
                st.signal_event(self.instance, frame["event"])
            except orjson.JSONEncodeError as e:
                self._too_deep(rid, op, e)
                return
            self.reply(encode({"id": rid, "ok": True}))
        elif op == "hello":
            self._hello(rid, frame)
        elif op == "network":
            # Applied one at a time, in the order asked: a later request replaces an
            # earlier one, so the link must not end on whichever finished last.
            self._network_asked.append((rid, frame["config"]))
            if len(self._network_asked) == 1:
                assert self._nursery is not None
                self._nursery.start_soon(self._networks)
        elif op == "fault":
            if not self.control:
                self.reply(encode({"id": rid, "error": (
                    f"fault refused: only the run's control connection may inject faults "
                    f"(hello as {CONTROL} with the run's control token)")}))
                return
            assert self._nursery is not None
            self._nursery.start_soon(self._fault, rid, frame["fault"], frame.get("by"))

    def _too_deep(self, rid: Any, op: str, e: orjson.JSONEncodeError) -> None:
        # orjson reads JSON nested up to 1024 deep but writes at most 254: what the
        # service keeps (an item, an event) is written again, so deeper is refused.
        self.reply(encode({"id": rid, "error": f"{op}: {e}: the service keeps JSON nested "
                                               "at most 254 deep"}))

    async def _networks(self) -> None:
        """Apply the network requests asked, oldest first, until none is left."""
        asked = self._network_asked
        while asked:
            await self._network(*asked[0])
            asked.popleft()

    async def _network(self, rid: Any, config: dict[str, Any]) -> None:
        handler = self._network_handler()
        if handler is None:
            self.reply(encode({"id": rid, "error": "this runner cannot shape the network "
                                                  "(use the local:netns runner)"}))
            return
        try:
            await handler(self.instance, config)
        except ValueError as e:
            self.reply(encode({"id": rid, "error": f"network request refused: {e}"}))
        except Exception as e:  # the run goes on; the instance learns what went wrong
            _log.exception("network request failed", instance=self.instance)
            self.reply(encode({"id": rid, "error": f"network request failed: {e}"}))
        else:
            self.reply(encode({"id": rid, "ok": True}))

    async def _fault(self, rid: Any, table: dict[str, Any], by: str | None) -> None:
        from harness.faults import Fault, FaultError  # the supervisor's side only

        handler = self._fault_handler()
        try:
            fault = Fault.from_data(table)
            if handler is None:
                raise FaultError("the run takes no faults now (its instances have not all "
                                 "started yet, or it is ending)")
            chosen = await handler(fault, by or CONTROL)
        except FaultError as e:
            self.reply(encode({"id": rid, "error": f"fault refused: {e}"}))
        except Exception as e:  # the run goes on; the operator learns what went wrong
            _log.exception("fault request failed", by=by)
            self.reply(encode({"id": rid, "error": f"fault failed: {type(e).__name__}: {e}"}))
        else:
            self.reply(encode({"id": rid, "ok": True, "fault": chosen}))
