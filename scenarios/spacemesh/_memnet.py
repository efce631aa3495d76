"""An in-memory network: the same transport interface, seeded delays, loss and partitions.

Delays are slept on the event loop's clock, so under trio's ``MockClock`` a whole network
runs in virtual time. A host can be paused (its process frozen, `Gate`): what is sent to it
waits in its socket buffers, as the kernel's TCP keeps receiving for a stopped process,
and is delivered when it resumes; it sends and dials nothing meanwhile. `close_host` is
what the kernel does when a host's process dies: its listener is gone.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import Listener, ObjectStream, TaskGroup

from ._clock import Gate, loop_time
from ._mailbox import Mailbox
from ._transport import Connection

RTO = 0.2
"""TCP's minimum retransmission timeout (Linux): what a lost segment costs a stream."""


@dataclasses.dataclass(frozen=True, slots=True)
class MemoryLink:
    """One direction of a link: one-way delay with jitter (seconds), frame loss, cut.

    With ``retransmit`` a lost frame is not lost but late, as on TCP: it is sent again a
    retransmission timeout later, doubling each time (``RTO``, 2 ``RTO``, ...), and each
    try meets the link as it is then (a loss that has ended loses no more tries). The
    frames sent after it wait behind it, as a stream's do."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    down: bool = False
    retransmit: bool = False

    def __post_init__(self) -> None:
        for name in ("delay", "jitter", "loss"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.loss > 1:
            raise ValueError(f"loss is a fraction (0 to 1), not {self.loss!r}")


Batch = list[bytes]
"""Frames of one connection due at the same moment: delivered as one item."""


@dataclasses.dataclass(slots=True)
class _Retry:
    """A lost frame of a retransmitting link and the frames queued behind it: tried again
    when its timeout (``rto``) runs out, then again at twice the timeout, until a try
    gets through."""

    frames: Batch
    rto: float
    eof: bool = False  # the stream ends after them


class _Half(ObjectStream[bytes]):
    """One end of an in-memory connection; frames travel through the network's scheduler.

    Frames due at the same moment on a connection travel as one batch (one heap entry,
    one wake-up of the receiver), which is what a simulation of hundreds of nodes pays
    for: with fixed delays a whole burst of gossip is due at once."""

    def __init__(
        self,
        net: MemoryNetwork,
        local: str,
        remote: str,
        sink: Mailbox[Batch],
        incoming: Mailbox[Batch],
    ) -> None:
        self._net = net
        self._local = local
        self._remote = remote
        self._sink = sink  # the other end's incoming batches
        self._in = incoming
        self._link_key = (_host(local), _host(remote))
        self._gate = net.gate(local)  # a host's gate is never replaced
        self._buffer: deque[bytes] = deque()
        self._last_due = 0.0
        self._open: Batch | None = None
        """The batch scheduled last and not delivered yet (due at ``_last_due``)."""
        self._retry: _Retry | None = None
        """A lost frame being sent again, and what waits behind it."""
        self._closed = False

    async def send(self, item: bytes) -> None:
        await self.send_many([item])

    async def send_many(self, items: list[bytes]) -> None:
        """Queue frames in order (each lost, delayed or jittered on its own)."""
        if self._closed:
            raise anyio.ClosedResourceError
        # No checkpoint: queuing a frame never blocks (unless this host is paused: then
        # the sender is frozen), and the caller's loop checkpoints.
        await self._gate.wait()
        if self._closed:  # closed while this host was paused
            raise anyio.ClosedResourceError
        net = self._net
        net.frames_sent += len(items)
        net.bytes_sent += sum(map(len, items))
        link = net._links.get(self._link_key, net.default)
        now = loop_time()
        for item in items:
            if self._retry is not None:  # behind a lost frame, as on a stream
                self._retry.frames.append(item)
                continue
            due = net._due(link, now)
            if due is None:
                if link.retransmit:
                    self._retry = _Retry([item], RTO)
                    net._schedule(now + RTO, self, self._retry, self._remote)
                continue  # else lost or cut: the frame disappears, as on a lossy link
            # A stream delivers in order (as TCP does), whatever the jitter.
            if due <= self._last_due and self._open is not None:
                self._open.append(item)
                continue
            self._last_due = max(due, self._last_due)
            self._open = [item]
            self._net._schedule(self._last_due, self, self._open, self._remote)

    async def receive(self) -> bytes:
        while not self._buffer:
            for batch in await self._in.take_all():
                self._buffer.extend(batch)
        return self._buffer.popleft()

    async def receive_many(self) -> list[bytes]:
        """Every frame arrived so far (waiting for at least one)."""
        while not self._buffer:
            for batch in await self._in.take_all():
                self._buffer.extend(batch)
        frames = list(self._buffer)
        self._buffer.clear()
        return frames

    async def consume(self, handle: Callable[[Batch], bool]) -> None:
        """Hand each batch of frames to ``handle`` as the network delivers it, until the
        stream ends or ``handle`` returns False (`Mailbox.consume`): under trio, inside
        the network's delivery, with no task switch per batch."""
        if self._buffer:  # what `receive` left
            frames = list(self._buffer)
            self._buffer.clear()
            if not handle(frames):
                return
        await self._in.consume(handle)

    async def send_eof(self) -> None:
        if not self._closed:
            self._closed = True
            self._open = None
            if self._retry is not None:
                self._retry.eof = True  # after the frames being sent again
                return
            # The end of stream arrives after the frames already on the way.
            self._net._schedule(self._last_due, self, None, self._remote)

    def _try_again(self, retry: _Retry, now: float) -> None:
        """The timeout of the lost frame at the head of `retry` ran out: send it again
        over the link as it is now (lost again: wait twice as long)."""
        net = self._net
        link = net._links.get(self._link_key, net.default)
        due = net._due(link, now)
        if due is None:
            retry.rto *= 2
            net._schedule(now + retry.rto, self, retry, self._remote)
            return
        self._retry = None
        self._last_due = max(due, self._last_due)
        self._open = retry.frames
        net._schedule(self._last_due, self, retry.frames, self._remote)
        if retry.eof:
            self._open = None
            net._schedule(self._last_due, self, None, self._remote)

    async def aclose(self) -> None:
        await self.send_eof()
        self._in.close()


class _MemoryListener(Listener[Connection]):
    def __init__(self, net: MemoryNetwork, address: str) -> None:
        self._net = net
        self._address = address
        send, receive = anyio.create_memory_object_stream[Connection](100)
        self._accept_send = send
        self._accept_receive = receive

    async def serve(
        self,
        handler: Callable[[Connection], Awaitable[object]],
        task_group: TaskGroup | None = None,
    ) -> None:
        async with anyio.create_task_group() as own:
            group = task_group or own

            async def handle(conn: Connection) -> None:
                await handler(conn)

            async for conn in self._accept_receive:
                group.start_soon(handle, conn)

    async def aclose(self) -> None:
        self._net._listeners.pop(self._address, None)
        await self._accept_send.aclose()


class MemoryNetwork:
    """Addresses to listeners, plus the link table; all randomness from ``seed``."""

    def __init__(self, seed: int = 0, default: MemoryLink | None = None) -> None:
        self._rng = random.Random(seed)
        self.default = default or MemoryLink()
        self._links: dict[tuple[str, str], MemoryLink] = {}
        self._listeners: dict[str, _MemoryListener] = {}
        self._running = False
        self._heap: list[tuple[float, int, _Half, Batch | _Retry | None, str]] = []
        self._seq = 0
        self._wake = anyio.Event()
        self._gates: dict[str, Gate] = {}
        self._held: dict[str, list[tuple[_Half, Batch | None]]] = {}
        self.frames_sent = 0
        """Frames handed to the network so far (lost ones too)."""
        self.bytes_sent = 0
        """Their bytes: what TCP would carry, less its framing and headers."""

    def gate(self, host: str) -> Gate:
        """The gate of ``host``'s process (running unless `pause`d)."""
        return self._gates.setdefault(_host(host), Gate())

    def pause(self, host: str) -> None:
        """Freeze ``host``: frames to it wait (in order) until `resume`; it sends nothing."""
        self.gate(host).pause()

    def resume(self, host: str) -> None:
        """Thaw ``host``: what waited for it is delivered now, in the order it arrived."""
        host = _host(host)
        self.gate(host).resume()
        for half, batch in self._held.pop(host, []):
            self._deliver(half, batch)

    def close_host(self, host: str) -> None:
        """``host``'s process died: nothing listens there any more, nothing waits for it."""
        host = _host(host)
        for address in [a for a in self._listeners if _host(a) == host]:
            listener = self._listeners.pop(address)
            listener._accept_send.close()
        self._held.pop(host, None)
        self.gate(host).resume()

    def set_link(self, src: str, dst: str, link: MemoryLink, *, both: bool = True) -> None:
        """Shape the traffic from ``src``'s host to ``dst``'s host (and back when ``both``)."""
        self._links[(_host(src), _host(dst))] = link
        if both:
            self._links[(_host(dst), _host(src))] = link

    def reset_link(self, src: str, dst: str) -> None:
        """Give the ``src`` -> ``dst`` direction the default shape again."""
        self._links.pop((_host(src), _host(dst)), None)

    def partition(self, side_a: list[str], side_b: list[str], *, cut: bool = True) -> None:
        """Cut (or restore) every link between two groups of hosts."""
        for a in side_a:
            for b in side_b:
                self.set_link(a, b, MemoryLink(down=True) if cut else self.default)

    def link(self, src: str, dst: str) -> MemoryLink:
        """The shape of the ``src`` -> ``dst`` direction."""
        return self._links.get((_host(src), _host(dst)), self.default)

    def due_time(self, src: str, dst: str) -> float | None:
        """When a frame sent now arrives, or None when it is lost."""
        return self._due(self.link(src, dst), anyio.current_time())

    def _due(self, link: MemoryLink, now: float) -> float | None:
        """When a frame sent now over `link` arrives; None when this try is lost."""
        if link.down or (link.loss and self._rng.random() < link.loss):
            return None
        jitter = self._rng.uniform(-link.jitter, link.jitter) if link.jitter else 0.0
        return now + max(0.0, link.delay + jitter)

    def transport(self, host: str) -> MemoryTransport:
        """The transport of a host; connections it dials come from ``host``."""
        return MemoryTransport(self, host)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver frames when they are due; start it in the network's task group first.

        One task and one heap carry every frame of the network: far fewer task switches
        than a pump per connection, which is what a simulation of hundreds of nodes pays.
        """
        self._running = True
        task_status.started()
        try:
            while True:
                now = loop_time()
                while self._heap and self._heap[0][0] <= now:
                    _, _, half, batch, dst = heapq.heappop(self._heap)
                    if isinstance(batch, _Retry):
                        half._try_again(batch, now)
                        continue
                    if half._open is batch:
                        half._open = None  # on its way: later frames start a new batch
                    gate = self._gates.get(dst)
                    if dst in self._held or (gate is not None and gate.paused):
                        self._held.setdefault(dst, []).append((half, batch))
                    else:
                        self._deliver(half, batch)
                self._wake = anyio.Event()
                if self._heap:
                    with anyio.move_on_after(self._heap[0][0] - now):
                        await self._wake.wait()
                else:
                    await self._wake.wait()
        finally:
            self._running = False

    @staticmethod
    def _deliver(half: _Half, batch: Batch | None) -> None:
        if batch is None:
            half._sink.close()
        else:
            half._sink.put(batch)  # dropped when the receiving end is closed

    def _schedule(self, due: float, half: _Half, batch: Batch | _Retry | None, dst: str) -> None:
        """Deliver `batch` (None: the end of the stream) at `due`, or try `_Retry` again."""
        first = not self._heap or due < self._heap[0][0]
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, half, batch, _host(dst)))
        if first:
            self._wake.set()

    def _connect(self, src_host: str, address: str) -> Connection:
        listener = self._listeners.get(address)
        # a handshake needs both directions (TCP's SYN-ACK goes back)
        if (
            listener is None
            or self.link(src_host, address).down
            or self.link(address, src_host).down
        ):
            raise ConnectionRefusedError(f"nothing reachable listens on {address}")
        if not self._running:
            raise RuntimeError("MemoryNetwork.run() must be started before dialing")
        acceptor_in: Mailbox[Batch] = Mailbox()
        dialer_in: Mailbox[Batch] = Mailbox()
        dialer = _Half(self, src_host, address, acceptor_in, dialer_in)
        acceptor = _Half(self, address, src_host, dialer_in, acceptor_in)
        try:
            listener._accept_send.send_nowait(acceptor)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            raise ConnectionRefusedError(f"{address} is not accepting") from None
        return dialer


class MemoryTransport:
    """A host's view of a :class:`MemoryNetwork` (implements the transport protocol)."""

    shares_frames = True

    def __init__(self, net: MemoryNetwork, host: str) -> None:
        self._net = net
        self.host = host

    async def dial(self, address: str) -> Connection:
        # A connection set-up costs one round trip, as TCP's handshake does; a paused
        # process dials nothing.
        await self._net.gate(self.host).wait()
        link = self._net.link(self.host, address)
        await anyio.sleep(2 * link.delay)
        return self._net._connect(self.host, address)

    async def listen(self, address: str) -> Listener[Connection]:
        if address in self._net._listeners:
            raise OSError(f"address {address} is already in use")
        listener = _MemoryListener(self._net, address)
        self._net._listeners[address] = listener
        return listener


def _host(address: str) -> str:
    return address.rpartition(":")[0] or address
