"""Flooding gossip over the injected transport: peers, peer exchange, de-duplication."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import anyio
import orjson
import structlog
from anyio.abc import TaskGroup

from ._clock import Clock
from ._codec import Json, hash_json, share
from ._mailbox import Mailbox
from ._memo import once
from ._metrics import NodeMetrics
from ._trace import Tracer
from ._transport import Connection, Transport, receive_frames, send_frames

Handler = Callable[[Json], bool | None]
"""Delivers one message's data to the protocol; True accepts it (and lets it be relayed),
False rejects it, None defers it: it cannot be judged yet (its layer has not begun here).
A deferred message is kept (`Gossip.retry_deferred` offers it again) and not marked seen,
so a later copy of it, relayed or synced, is judged again instead of dropped."""

Digests = Callable[[], dict[str, str]]
"""Sync: a digest per key (say ``proposal:12``) of what this node holds."""

Holdings = Callable[[str], list[tuple[str, Json]]]
"""Sync: the (topic, data) messages this node holds under a key."""

_HELLO_TIMEOUT = 5.0
_SEEN_LIMIT = 200_000
_DEFERRED_LIMIT = 4096
_SENT_LIMIT = 4096
_QUEUE = 2000
_RECENT = 32
"""Addresses of the last nodes that dialed in, handed out by peer exchange."""
_HAND_OUT = 24
"""At most this many addresses in one peer exchange answer."""

_log = structlog.get_logger("spacemesh.gossip")

_MSG_PREFIX = b'{"t":"msg","id":"'
"""How every message frame starts (orjson keeps the keys in the order they were written)."""
_ID_AT = len(_MSG_PREFIX)


_CHECKED: dict[bytes, str] = {}
"""Message frames whose id was checked against their content, and that id: shared by every
gossip endpoint of the process (a pure function of the frame's bytes), so the nodes of a
simulation, which relay the very same frame object, hash each message once between them.
A frame is checked once per node anyway (its copies are duplicates): one node per process
pays a lookup per message and keeps the last few frames."""
_CHECKED_LIMIT = 2048

_DECODED: dict[bytes, dict[str, Json]] = {}
"""Message frames and what they decode to, for the nodes of a transport that shares frames
(`Transport.shares_frames`: a simulation): each message is decoded once for all of them, and
they hold one copy of it, not one each. What a handler is given is read-only."""
_DECODED_LIMIT = 4096


def _decode_shared(frame: bytes) -> dict[str, Json]:
    """A message frame decoded for every node of the process: its data is `share`d."""
    item = orjson.loads(frame)
    if isinstance(item, dict):
        share(item.get("data"))
    return item  # type: ignore[no-any-return]


_SEND_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
"""What ends a connection's sending: the connection is then closed."""


def _unsent(frames: list[bytes], peer: _Peer) -> list[bytes]:
    """``frames`` less the messages ``peer`` has sent us since they were queued: they would
    only be duplicates there."""
    sent_me = peer.sent_me
    if not sent_me:
        return frames
    return [
        f for f in frames
        if f[_ID_AT : _ID_AT + 64] not in sent_me or not f.startswith(_MSG_PREFIX)
    ]  # fmt: skip


def message_id(topic: str, data: Json) -> str:
    """The id that de-duplicates a message: the hash of its topic and canonical data."""
    return hash_json({"topic": topic, "data": data})


_SYNC_FRAMES: dict[tuple[str, int], tuple[Json, bytes]] = {}
"""The frame a held message is sent in by sync, by its topic and object (kept alive with
it, so the object's id cannot name another): a sync exchange whose digests differ sends
everything held under the key, the same messages to peer after peer and layer after layer,
and hashing and encoding each anew was most of a lagging node's sync work."""
_SYNC_FRAMES_LIMIT = 8192


def _sync_frame(topic: str, data: Json) -> bytes:
    key = (topic, id(data))
    hit = _SYNC_FRAMES.get(key)
    if hit is not None and hit[0] is data:
        return hit[1]
    frame = orjson.dumps(
        {"t": "msg", "id": message_id(topic, data), "topic": topic, "data": data, "ts": None}
    )
    if len(_SYNC_FRAMES) >= _SYNC_FRAMES_LIMIT:
        _SYNC_FRAMES.clear()
    _SYNC_FRAMES[key] = (data, frame)
    return frame


@dataclasses.dataclass(eq=False)
class _Peer:
    node_id: str
    address: str
    outbound: bool
    queue: Mailbox[bytes]
    scope: anyio.CancelScope | None = None
    mesh: bool = False
    """Messages this node accepts are relayed to this peer (`Gossip` says which are)."""
    sent_me: OrderedDict[bytes, None] = dataclasses.field(default_factory=OrderedDict)
    """Ids of the last messages this peer sent us: relaying them back would be a duplicate."""

    def sent_us(self, mid: bytes) -> None:
        """Note that this peer sent us message `mid` (the last `_SENT_LIMIT` are kept)."""
        sent = self.sent_me
        sent[mid] = None
        if len(sent) > _SENT_LIMIT:
            sent.popitem(last=False)


class Gossip:
    """One node's gossip endpoint.

    Dials the bootnodes, learns more addresses by peer exchange and keeps ``target_peers``
    connections. A message is delivered to the topic's handler once (by message id); when
    the handler accepts it, it is relayed to the peers of the relay mesh, as gossipsub
    does: a symmetric subset of the connections, ``mesh_degree`` of them (gossipsub's D),
    kept within ``mesh_bounds`` by GRAFT and PRUNE (go-spacemesh's Dlo = 4 and Dhi = 8;
    libp2p's defaults, 5 and 12, let a 100-node mesh average 7.4), so that the copies a node receives
    of each message follow the mesh's degree, not its number of connections. A node's
    own messages go to every peer (gossipsub's flood publishing).
    """

    def __init__(
        self,
        *,
        node_id: str,
        listen_address: str,
        transport: Transport,
        clock: Clock,
        rng: random.Random,
        bootnodes: list[str] | tuple[str, ...] = (),
        target_peers: int = 6,
        max_peers: int | None = None,
        mesh_degree: int = 6,
        mesh_bounds: tuple[int, int] = (4, 8),
        backoff: float = 10.0,
        tracer: Tracer | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        if target_peers < 1:
            raise ValueError(f"target_peers must be >= 1, not {target_peers}")
        self.node_id = node_id
        self.listen_address = listen_address
        self._transport = transport
        self._clock = clock
        self._rng = rng
        self._bootnodes = [b for b in bootnodes if b != listen_address]
        self.target_peers = target_peers
        self.max_peers = max_peers or max(2 * target_peers, 8)
        if not 1 <= mesh_bounds[0] <= mesh_degree <= mesh_bounds[1]:
            raise ValueError(
                f"need 1 <= low <= mesh_degree <= high, not {mesh_bounds[0]}, {mesh_degree},"
                f" {mesh_bounds[1]}"
            )
        if not backoff > 0:
            raise ValueError(f"backoff must be > 0 seconds, not {backoff!r}")
        self._backoff_s = backoff
        """An address that refused or shed this node is left alone for this long (times a
        random 0.5 to 1.5) while others are known."""
        self._mesh = mesh_degree
        self._mesh_low, self._mesh_high = mesh_bounds
        self._tracer = tracer or Tracer(None)
        self._metrics = metrics
        self._handlers: dict[str, Handler] = {}
        self._peers: dict[str, _Peer] = {}
        self._known: set[str] = set(self._bootnodes)
        self._reconnect: list[str] = []
        """Addresses a kept address book says this node was connected to: dialed at start."""
        self._recent: deque[str] = deque(maxlen=_RECENT)
        """Who dialed in lately (newest last), accepted or not: nodes that are joining."""
        self._wake = anyio.Event()
        """Set when a peer is lost: `_maintain` looks for others now, not at its next tick."""
        self._dialing: set[str] = set()
        """Addresses of this node's outbound connections, from the dial until they end."""
        self._backoff: dict[str, float] = {}
        self._seen: OrderedDict[bytes, str] = OrderedDict()
        """Message id (its hex digits as bytes, as a frame carries it) -> its topic, for
        the last ``_SEEN_LIMIT`` messages."""
        self._deferred: OrderedDict[str, tuple[str, Json, bytes, Json, _Peer]] = OrderedDict()
        """Message id -> (topic, data, frame, its "ts", the peer it came from) of the
        messages their handler deferred (the last ``_DEFERRED_LIMIT``)."""
        self._received: dict[str, int] = {}
        """Frames received per topic since the metric was last updated (once per batch)."""
        self._delivered: dict[str, int] = {}
        """Messages delivered per topic since the metric was last updated (likewise)."""
        self._tg: TaskGroup | None = None
        self._flush: Mailbox[tuple[_Peer, Any]] | None = None
        """Peers with frames queued, for `_flusher`, and their connections."""
        self._digests: Digests | None = None
        self._holdings: Holdings | None = None
        self._log = _log.bind(node=node_id)

    # -- public ---------------------------------------------------------------------------

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Route ``topic``'s messages to ``handler`` (one handler per topic)."""
        self._handlers[topic] = handler

    def set_sync(self, digests: Digests, holdings: Holdings) -> None:
        """Enable anti-entropy: peers compare digests and send what the other lacks.

        Flooding alone never repairs a gap (a message missed during a partition is not
        sent again); this is what lets the two sides of a healed partition converge.
        """
        self._digests = digests
        self._holdings = holdings

    def request_sync(self) -> None:
        """Compare digests with one random peer; both sides then send what differs."""
        if self._digests is None or not self._peers:
            return
        self._request_sync(self._rng.choice(sorted(self._peers.values(), key=lambda p: p.node_id)))

    def _request_sync(self, peer: _Peer) -> None:
        if self._digests is not None:
            frame = orjson.dumps({"t": "sync", "digests": self._digests(), "reply": True})
            self._enqueue(peer, frame)

    def learn(self, known: list[str], connected: list[str]) -> None:
        """Take in a kept address book (a restart): every address becomes known, and those
        the node was connected to are dialed at start, as the bootnodes are. Without it a
        restarted node that has no bootnode (a gateway) would wait for its peers to dial it
        again, and they back off from an address that refused them while it was down."""
        self._known.update(a for a in known if a != self.listen_address)
        self._reconnect = [a for a in connected if a != self.listen_address]

    def address_book(self) -> tuple[set[str], set[str]]:
        """(every address this node knows, those of its connected peers), to keep."""
        return set(self._known), {p.address for p in self._peers.values()}

    @property
    def peer_count(self) -> int:
        """Connected peers."""
        return len(self._peers)

    @property
    def peer_ids(self) -> list[str]:
        """Ids of the connected peers."""
        return sorted(self._peers)

    @property
    def mesh_ids(self) -> list[str]:
        """Ids of the peers in the relay mesh."""
        return sorted(p.node_id for p in self._peers.values() if p.mesh)

    def publish(self, topic: str, data: Json) -> str:
        """Deliver ``data`` locally and flood it to every peer; returns the message id."""
        mid = message_id(topic, data)
        if not self._mark_seen(mid, topic):
            return mid
        handler = self._handlers.get(topic)
        if handler is not None:
            handler(data)
        frame = orjson.dumps(
            {"t": "msg", "id": mid, "topic": topic, "data": data, "ts": self._clock.now()}
        )
        for peer in list(self._peers.values()):
            self._tracer.record("publish", mid, topic, self.node_id, peer.node_id, len(frame))
            self._enqueue(peer, frame)
        return mid

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, dial and maintain peers until cancelled."""
        listener = await self._transport.listen(self.listen_address)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(listener.serve, self._serve_inbound)
            task_status.started()
            for address in dict.fromkeys([*self._bootnodes, *self._reconnect]):
                tg.start_soon(self._dial, address)
            await self._maintain()

    # -- connections ----------------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            with anyio.move_on_after(0.5 + self._rng.random()):
                await self._wake.wait()
            self._wake = anyio.Event()
            if self._metrics is not None:
                self._metrics.peers.set(len(self._peers))
            self._keep_mesh()
            if len(self._peers) >= self.target_peers:
                continue
            connected = {p.address for p in self._peers.values()}
            now = anyio.current_time()
            waiting = {a for a, until in self._backoff.items() if until > now}
            candidates = sorted(
                self._known - connected - self._dialing - waiting - {self.listen_address}
            )
            if not self._peers and not candidates:
                # Nothing else known: back to the bootnodes, even those backing off. A node
                # that knows others leaves a bootnode that shed it alone: a crowd re-dialing
                # it every tick keeps it too busy to answer anyone's handshake in time.
                candidates = sorted(set(self._bootnodes) - self._dialing)
            self._rng.shuffle(candidates)
            assert self._tg is not None
            for address in candidates[: self.target_peers - len(self._peers)]:
                self._tg.start_soon(self._dial, address)
            if self._peers:
                peer = self._rng.choice(sorted(self._peers.values(), key=lambda p: p.node_id))
                self._enqueue(peer, orjson.dumps({"t": "getpeers"}))

    async def _dial(self, address: str) -> None:
        if address in self._dialing:
            return
        # Kept until the connection ends, handshake included: a starved node may take
        # seconds to answer a hello, and dialing it again meanwhile only adds to its load.
        self._dialing.add(address)
        try:
            try:
                conn = await self._transport.dial(address)
            except (OSError, TimeoutError, anyio.BrokenResourceError) as exc:
                self._log.debug("dial failed", address=address, error=repr(exc))
                refused = True
            else:
                refused = not await self._session(conn, outbound=True)
        finally:
            self._dialing.discard(address)
        if refused:  # unreachable, full, or a duplicate: try others before this one again
            self._back_off(address)

    def _back_off(self, address: str) -> None:
        until = anyio.current_time() + self._backoff_s * (0.5 + self._rng.random())
        self._backoff[address] = until

    async def _serve_inbound(self, conn: Connection) -> None:
        await self._session(conn, outbound=False)

    async def _session(self, conn: Connection, *, outbound: bool) -> bool:
        """Serve one connection; False when it was refused at the handshake."""
        async with conn:
            hello = {"t": "hello", "id": self.node_id, "addr": self.listen_address}
            try:
                await conn.send(orjson.dumps(hello))
                with anyio.fail_after(_HELLO_TIMEOUT):
                    theirs = orjson.loads(await conn.receive())
                peer_id, peer_addr = str(theirs["id"]), str(theirs["addr"])
            except (Exception, anyio.EndOfStream):
                return False
            self._known.add(peer_addr)
            if not outbound and peer_addr != self.listen_address:
                self._recent.append(peer_addr)
            full = not outbound and len(self._peers) >= self.max_peers
            existing = self._peers.get(peer_id)
            # Two nodes dialing each other at once: both ends keep the connection dialed
            # by the smaller node id, so that exactly one survives.
            dialer = self.node_id if outbound else peer_id
            other = peer_id if outbound else self.node_id
            replaces = existing is not None and dialer < other and existing.outbound != outbound
            if peer_id == self.node_id or full or (existing is not None and not replaces):
                shed = {"t": "peers", "addrs": self._addresses(), "full": True}
                with contextlib.suppress(Exception):
                    await conn.send(orjson.dumps(shed))
                return False
            if existing is not None and existing.scope is not None:
                existing.scope.cancel()
            queue: Mailbox[bytes] = Mailbox(_QUEUE)
            peer = _Peer(peer_id, peer_addr, outbound, queue)
            if hasattr(conn, "consume"):  # the memory network: one writer for all peers
                queue.on_first = self._flusher_for(conn, peer)
            self._peers[peer_id] = peer
            if existing is None:  # a replaced duplicate is the same peer, still connected
                self._log.info(
                    "peer connected",
                    peer=peer_id,
                    address=peer_addr,
                    outbound=outbound,
                    peers=len(self._peers),
                )
            if self._metrics is not None:
                self._metrics.peers.set(len(self._peers))
            if self._mesh_size() < self._mesh:
                self._graft(peer)
            ended = False  # stays False when this node is stopping (cancelled): no line
            try:
                async with anyio.create_task_group() as tg:
                    peer.scope = tg.cancel_scope
                    if queue.on_first is None:
                        tg.start_soon(self._writer, conn, peer, tg.cancel_scope)
                    self._enqueue(peer, orjson.dumps({"t": "getpeers"}))
                    if outbound:
                        # Whatever was flooded before this connection (a PoET proof while
                        # this node was still looking for peers) comes now, not at the next
                        # periodic exchange, which may be too late to use it.
                        self._request_sync(peer)
                    await self._reader(conn, peer)
                    tg.cancel_scope.cancel()
                ended = True
            finally:
                if self._peers.get(peer_id) is peer:
                    del self._peers[peer_id]
                    if ended:
                        self._log.info("peer lost", peer=peer_id, peers=len(self._peers))
                    if len(self._peers) < self.target_peers:
                        self._wake.set()
                queue.close()
                if self._metrics is not None:
                    self._metrics.peers.set(len(self._peers))
        return True

    async def _writer(self, conn: Connection, peer: _Peer, scope: anyio.CancelScope) -> None:
        try:
            while True:
                # Everything queued meanwhile goes in the same send: one task switch (and
                # one write) per burst, not per frame.
                frames = _unsent(await peer.queue.take_all(), peer)
                if frames:
                    await send_frames(conn, frames)
        except _SEND_ERRORS:
            pass
        scope.cancel()

    def _flusher_for(self, conn: Any, peer: _Peer) -> Callable[[], object]:
        """What tells `_flusher` that ``peer``'s queue is no longer empty (it starts the
        flusher with the first connection that has one)."""
        if self._flush is None:
            self._flush = Mailbox()
            assert self._tg is not None
            self._tg.start_soon(self._flusher, self._flush)
        flush, entry = self._flush, (peer, conn)
        return lambda: flush.put(entry)

    async def _flusher(self, flush: Mailbox[tuple[_Peer, Any]]) -> None:
        """The memory network's writer: one task of the node sends what is queued for any
        of its peers, woken once per burst as each peer's `_writer` would be, at the same
        moment (a simulation's nodes then wake once per burst, not once per peer)."""
        while True:
            for peer, conn in await flush.take_all():
                frames = _unsent(peer.queue.take_now(), peer)
                if not frames:
                    continue
                try:
                    await send_frames(conn, frames)  # a paused process waits here
                except _SEND_ERRORS:
                    if peer.scope is not None:
                        peer.scope.cancel()

    async def _reader(self, conn: Connection, peer: _Peer) -> None:
        consume = getattr(conn, "consume", None)
        if consume is not None:  # the memory network: batches handed over as delivered
            await consume(lambda frames: self._on_frames(frames, peer))
            return
        while True:
            try:
                frames = await receive_frames(conn)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            except OSError:
                return
            if not self._on_frames(frames, peer):
                return

    def _on_frames(self, frames: list[bytes], peer: _Peer) -> bool:
        """Handle a batch of frames from ``peer``; False when one is garbage (the peer is
        then dropped)."""
        duplicate = self._duplicate
        try:
            for frame in frames:
                # Most frames are copies of a message already held (one per neighbour):
                # those cost one lookup here, nothing more.
                if duplicate(frame, peer):
                    continue
                if not self._on_frame(frame, peer):
                    return False
        finally:
            self._count_received()
        return True

    def _on_frame(self, frame: bytes, peer: _Peer) -> bool:
        """Handle one frame that is not a duplicate (`_duplicate`); False when it is
        garbage (the peer is then dropped)."""
        try:
            if self._transport.shares_frames and frame.startswith(_MSG_PREFIX):
                item = once(_DECODED, frame, lambda: _decode_shared(frame), _DECODED_LIMIT)
            else:
                item = orjson.loads(frame)
            kind = item["t"]
        except (ValueError, KeyError, TypeError):
            return False
        if kind == "msg":
            self._on_message(item, frame, peer)
        elif kind == "getpeers":
            self._enqueue(peer, orjson.dumps({"t": "peers", "addrs": self._addresses()}))
        elif kind == "peers":
            self._known.update(str(a) for a in item.get("addrs", [])[:100])
            if item.get("full"):  # it is shedding us: try the others before it again
                self._back_off(peer.address)
        elif kind == "sync":
            self._on_sync(item, peer)
        elif kind == "graft":
            peer.mesh = True  # one too many is pruned by the next `_keep_mesh`
        elif kind == "prune":
            peer.mesh = False
        return True

    # -- the relay mesh -------------------------------------------------------------------

    def _mesh_size(self) -> int:
        return sum(p.mesh for p in self._peers.values())

    def _graft(self, peer: _Peer) -> None:
        peer.mesh = True
        self._enqueue(peer, b'{"t":"graft"}')

    def _keep_mesh(self) -> None:
        """Gossipsub's heartbeat: graft peers while the mesh is below its low bound, prune
        some while it is above its high bound, back to D either way."""
        peers = sorted(self._peers.values(), key=lambda p: p.node_id)
        mesh = [p for p in peers if p.mesh]
        if len(mesh) < self._mesh_low:
            others = [p for p in peers if not p.mesh]
            self._rng.shuffle(others)
            for peer in others[: self._mesh - len(mesh)]:
                self._graft(peer)
        elif len(mesh) > self._mesh_high:
            self._rng.shuffle(mesh)
            for peer in mesh[: len(mesh) - self._mesh]:
                peer.mesh = False
                self._enqueue(peer, b'{"t":"prune"}')

    def _on_sync(self, item: dict[str, Json], peer: _Peer) -> None:
        if self._digests is None or self._holdings is None:
            return
        theirs = item.get("digests")
        if not isinstance(theirs, dict):
            return
        mine = self._digests()
        for key, digest in mine.items():
            if key in theirs and theirs[key] != digest:
                for topic, data in self._holdings(key):
                    self._enqueue(peer, _sync_frame(topic, data))
        if item.get("reply"):
            self._enqueue(peer, orjson.dumps({"t": "sync", "digests": mine, "reply": False}))

    def _addresses(self) -> list[str]:
        """What peer exchange hands out: the connected peers and the nodes that dialed in
        lately. A bootnode sheds most of a crowd that starts at once; telling each of them
        about the others (which have free slots) lets them connect to each other at once
        instead of all trying the bootnode's few, full, peers in turn."""
        connected = sorted({p.address for p in self._peers.values()})
        recent = [a for a in dict.fromkeys(reversed(self._recent)) if a not in connected]
        room = max(0, _HAND_OUT - len(connected))
        return connected[:_HAND_OUT] + recent[:room]

    def _enqueue(self, peer: _Peer, frame: bytes) -> None:
        peer.queue.put(frame)  # dropped when the peer's queue is full or closed

    # -- messages -------------------------------------------------------------------------

    def _mark_seen(self, mid: str, topic: str) -> bool:
        key = mid.encode()
        seen = self._seen
        if key in seen:
            return False
        seen[key] = topic
        if len(seen) > _SEEN_LIMIT:
            seen.popitem(last=False)
        return True

    def _duplicate(self, frame: bytes, peer: _Peer) -> bool:
        """A message frame whose id was already seen: counted and dropped without decoding
        or hashing it again (each message arrives once per neighbour; a wrong id on such a
        frame changes nothing, since it would be dropped anyway)."""
        if not frame.startswith(_MSG_PREFIX):
            return False
        raw = frame[_ID_AT : _ID_AT + 64]
        topic = self._seen.get(raw)
        if topic is None:
            return False
        peer.sent_us(raw)
        if self._tracer.enabled:
            mid = raw.decode("ascii")
            self._tracer.record("receive", mid, topic, peer.node_id, self.node_id, len(frame))
        received = self._received
        received[topic] = received.get(topic, 0) + 1
        return True

    def _count_received(self) -> None:
        """Add the frames received and messages delivered since the last call to the
        metrics (one ``inc`` per topic and batch instead of one per frame)."""
        if self._metrics is not None:
            for topic, count in self._received.items():
                self._metrics.received_by(topic).inc(count)
            for topic, count in self._delivered.items():
                self._metrics.delivered_by(topic).inc(count)
        self._received.clear()
        self._delivered.clear()

    def _on_message(self, item: dict[str, Json], frame: bytes, peer: _Peer) -> None:
        topic = str(item.get("topic"))
        data = item.get("data")
        mid = _CHECKED.get(frame)
        if mid is None:
            mid = message_id(topic, data)
            if mid != item.get("id"):
                return  # the id must be the content's hash (a forged frame is never kept)
            if len(_CHECKED) >= _CHECKED_LIMIT:
                _CHECKED.clear()
            _CHECKED[frame] = mid
        if self._tracer.enabled:
            self._tracer.record("receive", mid, topic, peer.node_id, self.node_id, len(frame))
        self._received[topic] = self._received.get(topic, 0) + 1
        if not self._mark_seen(mid, topic):
            return
        peer.sent_us(mid.encode())
        self._deliver(mid, topic, data, frame, item.get("ts"), peer)

    def _deliver(
        self, mid: str, topic: str, data: Json, frame: bytes, ts: Json, peer: _Peer
    ) -> None:
        """Hand a message just marked seen to its handler; relay it if accepted, keep it
        unseen for `retry_deferred` if deferred."""
        handler = self._handlers.get(topic)
        if handler is None:
            return
        verdict = handler(data)
        if verdict is None:
            del self._seen[mid.encode()]
            self._deferred[mid] = (topic, data, frame, ts, peer)
            self._deferred.move_to_end(mid)
            if len(self._deferred) > _DEFERRED_LIMIT:
                self._deferred.popitem(last=False)
            return
        self._deferred.pop(mid, None)
        if not verdict:
            return
        if self._tracer.enabled:
            self._tracer.record("deliver", mid, topic, peer.node_id, self.node_id, len(frame))
        if self._metrics is not None:
            self._delivered[topic] = self._delivered.get(topic, 0) + 1
            if isinstance(ts, int | float):
                self._metrics.latency_by(topic).observe(max(0.0, self._clock.now() - ts))
        for other in list(self._peers.values()):
            if other.mesh and other is not peer:
                self._enqueue(other, frame)

    def retry_deferred(self) -> None:
        """Offer the deferred messages to their handlers again (the node calls this as its
        clock moves on); one accepted now is relayed as if it had just arrived."""
        for mid, (topic, data, frame, ts, peer) in list(self._deferred.items()):
            if self._mark_seen(mid, topic):
                self._deliver(mid, topic, data, frame, ts, peer)
            else:
                del self._deferred[mid]  # a copy was accepted meanwhile
