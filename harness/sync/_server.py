"""The sync service's server: the wire protocol over Unix and TCP sockets, on Trio."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import structlog
import trio

from harness._listen import Listen, address, open_listeners
from harness.sync._protocol import MAX_FRAME, ProtocolError, decode_request, encode
from harness.sync._state import SyncState

NetworkHandler = Callable[[str | None, dict[str, Any]], Awaitable[None]]
"""Applies a `network` request of an instance (the runner's); raises ValueError if invalid."""

_log = structlog.get_logger("harness.sync")


class SyncServer:
    """Serves one `SyncState` to every connection, each on its own pair of tasks."""

    def __init__(self, state: SyncState, network: NetworkHandler | None = None) -> None:
        self.state = state
        self.network = network
        self.connections = 0

    async def serve_unix(
        self, path: Path, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on a Unix socket at `path` (removed again when the server stops)."""
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.bind(str(path))
            os.chmod(path, 0o666)  # instances may run as another user (rootless, --user)
            sock.listen(4096)
            listener = trio.SocketListener(sock)
            async with trio.open_nursery() as nursery:
                task_status.started(path)
                await trio.serve_listeners(self._handle, [listener], handler_nursery=nursery)
        finally:
            sock.close()
            path.unlink(missing_ok=True)  # noqa: ASYNC240 (a socket inode: no disk wait)

    async def serve_tcp(
        self,
        listen: Listen,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on TCP (for clients that cannot reach the Unix socket) at `listen`, an
        address or a listening socket; reports the (host, port) it is reachable at."""
        listeners = await open_listeners(listen)
        async with trio.open_nursery() as nursery:
            task_status.started(address(listeners[0]))
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        try:
            await _Connection(self, stream).run()
        finally:
            self.connections -= 1


class _Connection:
    def __init__(self, server: SyncServer, stream: trio.abc.Stream) -> None:
        self.server = server
        self.state = server.state
        self.stream = stream
        self.instance: str | None = None
        # A reply goes straight to the socket when nothing is queued before it: a publish to
        # N subscribers costs N system calls, not N task switches. What the socket does not
        # take at once queues here, and one writer task sends the queue in batches.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._outbox: list[bytes] = []
        self._writing = False
        self._writer_idle = trio.lowlevel.ParkingLot()
        self._closed = False
        self.reply = self._reply  # one bound method, so identity checks work

    def _reply(self, frame: bytes) -> None:
        if self._closed:
            return  # the connection is gone; nothing waits for this reply any more
        if not self._outbox and not self._writing and self._fd >= 0:
            try:
                sent = os.write(self._fd, frame)  # the socket is non-blocking (trio's)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._closed = True  # the reader sees the end and cleans up
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
        self._outbox.append(frame)
        if len(self._outbox) == 1:
            self._writer_idle.unpark()

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write)
                self.nursery = nursery
                await self._read()
                nursery.cancel_scope.cancel()
        except trio.BrokenResourceError:
            pass
        finally:
            self._closed = True
            self.state.drop_connection(self.reply)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _write(self) -> None:
        while True:
            if not self._outbox:
                await self._writer_idle.park()
            batch, self._outbox = self._outbox, []
            self._writing = True
            await self.stream.send_all(b"".join(batch))
            self._writing = False

    async def _read(self) -> None:
        buffer = bytearray()
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            buffer += data
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                line = bytes(buffer[start:end])
                start = end + 1
                if line.strip():
                    self._dispatch(line)
            del buffer[:start]
            if len(buffer) > MAX_FRAME:
                self.reply(encode({"id": None, "error": f"frame longer than {MAX_FRAME} bytes"}))
                return

    def _dispatch(self, line: bytes) -> None:
        try:
            frame = decode_request(line)
        except ProtocolError as e:
            self.reply(encode({"id": e.request_id, "error": str(e)}))
            return
        rid = frame["id"]
        op = frame["op"]
        st = self.state
        if op == "publish":
            seq = st.publish(frame["topic"], frame["payload"], self.instance)
            self.reply(b'{"id":%b,"ok":true,"seq":%d}\n' % (orjson.dumps(rid), seq))
        elif op == "signal_entry":
            seq = st.signal_entry(frame["state"], self.instance)
            self.reply(b'{"id":%b,"ok":true,"seq":%d}\n' % (orjson.dumps(rid), seq))
        elif op == "barrier":
            st.barrier(frame["state"], frame["target"], rid, self.reply, self.instance)
        elif op == "signal_and_wait":
            seq = st.signal_entry(frame["state"], self.instance)
            st.barrier(frame["state"], frame["target"], rid, self.reply, self.instance, seq)
        elif op == "subscribe":
            st.subscribe(frame["topic"], rid, self.reply)
        elif op == "cancel":
            target = frame["target"]
            if st.unsubscribe(target, self.reply) or st.cancel_barrier(target, self.reply):
                self.reply(encode({"id": rid, "ok": True}))
            else:
                self.reply(encode({"id": rid, "error": f"no subscription or barrier {target!r}"}))
        elif op == "signal_event":
            st.signal_event(self.instance, frame["event"])
            self.reply(encode({"id": rid, "ok": True}))
        elif op == "hello":
            self.instance = frame["instance"]
            self.reply(encode({"id": rid, "ok": True}))
        elif op == "network":
            self.nursery.start_soon(self._network, rid, frame["config"])

    async def _network(self, rid: Any, config: dict[str, Any]) -> None:
        handler = self.server.network
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
