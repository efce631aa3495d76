"""The sync service's server: the wire protocol over Unix and TCP sockets, on Trio."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import structlog
import trio

from harness._listen import Listen, address, open_listeners
from harness.sync._connection import Connection, FaultHandler, NetworkHandler
from harness.sync._state import SyncState
from harness.sync._tokens import Tokens

__all__ = ["FaultHandler", "NetworkHandler", "SyncServer"]

_log = structlog.get_logger("harness.sync")


class SyncServer:
    """Serves one `SyncState` to every connection, each on its own pair of tasks.

    With `tokens` (the supervisor always gives them), a connection must first say `hello`
    with its instance's token (TEST_SYNC_TOKEN); anything else, or a wrong token, is
    refused and the connection closed. Without, the service is open to whoever can reach
    its socket: for library use and benchmarks only.

    With tokens, a connection that says `hello` as CONTROL with `tokens.control()` is the
    run's operator: its `fault` requests go to `faults` (none: refused), and it may send
    nothing else. No other connection may send `fault`.
    """

    def __init__(
        self,
        state: SyncState,
        network: NetworkHandler | None = None,
        tokens: Tokens | None = None,
        faults: FaultHandler | None = None,
    ) -> None:
        self.state = state
        self.network = network
        self.tokens = tokens
        self.faults = faults
        self._connections: set[Connection] = set()

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def _too_many_without_hello(self) -> bool:
        """Whether unauthenticated connections hold half of this process's open-file limit
        (with tokens): peers without a token must not take the files the run needs. The
        supervisor's limit leaves room for two connections per instance (`_openfiles`)."""
        if self.tokens is None:
            return False
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        cap = max(64, soft // 2) if soft != resource.RLIM_INFINITY else 1 << 20
        return len(self._connections) >= cap and sum(
            c.instance is None for c in self._connections) >= cap

    def queued(self) -> int:
        """Bytes of replies held for all connections (queued or being sent): at most
        MAX_QUEUED, or one frame, per connection."""
        return sum(c.queued for c in self._connections)

    async def serve_unix(
        self, path: Path, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on a Unix socket at `path`, which only this user can open (removed again
        when the server stops)."""
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            # Linux gives the socket file the mode of the socket's inode: 0600 from the
            # start, with no moment at which another user could connect.
            os.fchmod(sock.fileno(), 0o600)
            await sock.bind(str(path))
            os.chmod(path, 0o600)
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
        connection = Connection(self.state, stream, self.tokens, lambda: self.network,
                                lambda: self.faults)
        if self._too_many_without_hello():
            connection.refuse("refused: too many connections to the sync service have not "
                              "said hello yet")
        self._connections.add(connection)
        try:
            await connection.run()
        except Exception as e:  # whatever one connection meets must not end the service
            _log.exception("sync connection failed", instance=connection.instance)
            self.state.connection_event("failed", f"{type(e).__name__}: {e}",
                                        connection.instance)
        finally:
            self._connections.discard(connection)
