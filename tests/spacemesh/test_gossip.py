"""Gossip over the in-memory transport: delivery once per message, validation, tracing."""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson
import pytest

from harness.observe import read_trace
from scenarios.spacemesh import Gossip, LoopClock, MemoryLink, MemoryNetwork, Tracer, message_id
from scenarios.spacemesh._codec import Json
from scenarios.spacemesh._metrics import NodeMetrics
from scenarios.spacemesh._transport import Connection

pytestmark = pytest.mark.anyio


def make_nodes(
    net: MemoryNetwork, count: int, tmp: Path | None = None, target: int = 4, mesh: int = 6,
    bounds: tuple[int, int] = (4, 8),
) -> list[Gossip]:
    clock = LoopClock()
    first = "10.1.0.1:7513"
    nodes = []
    for i in range(count):
        addr = f"10.1.0.{i + 1}:7513"
        nodes.append(
            Gossip(
                node_id=f"n{i}",
                listen_address=addr,
                transport=net.transport(addr),
                clock=clock,
                rng=random.Random(i),
                bootnodes=[first] if i else [],
                target_peers=target,
                mesh_degree=mesh,
                mesh_bounds=bounds,
                tracer=Tracer(tmp / f"n{i}" if tmp else None),
            )
        )
    return nodes


class Batches:
    """A connection that hands a reader these batches of frames (taking them), then ends."""

    def __init__(self, batches: list[list[bytes]]) -> None:
        self.batches = batches

    async def receive_many(self) -> list[bytes]:
        if not self.batches:
            raise anyio.EndOfStream
        return self.batches.pop(0)


async def settle(nodes: list[Gossip], want: int) -> None:
    with anyio.fail_after(30):
        while min(n.peer_count for n in nodes) < want:  # noqa: ASYNC110 (polling a count)
            await anyio.sleep(0.5)


def collect(nodes: list[Gossip], topic: str) -> dict[str, list[Json]]:
    """Subscribe every node to `topic`, accepting everything: what each was delivered."""
    got: dict[str, list[Json]] = {n.node_id: [] for n in nodes}

    def collector(node_id: str) -> Callable[[Json], bool]:
        def handle(data: Json) -> bool:
            got[node_id].append(data)
            return True

        return handle

    for n in nodes:
        n.subscribe(topic, collector(n.node_id))
    return got


async def test_each_message_is_delivered_once(tmp_path: Path) -> None:
    net = MemoryNetwork(seed=1, default=MemoryLink(delay=0.01, jitter=0.005))
    nodes = make_nodes(net, 6, tmp_path)
    got = collect(nodes, "t")
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        for n in nodes:
            await tg.start(n.run)
        await settle(nodes, 3)
        mid = nodes[2].publish("t", {"x": 1})
        nodes[4].publish("t", {"x": 1})  # same content elsewhere: the same message
        nodes[5].publish("t", {"x": 2})
        await anyio.sleep(2)
        tg.cancel_scope.cancel()
    assert mid == message_id("t", {"x": 1})
    for node_id, items in got.items():
        assert sorted(i["x"] for i in items) == [1, 2], node_id
    # Every node received duplicates (a mesh floods) but delivered each message once.
    for n in nodes:
        n._tracer.close()  # writes what the tracer buffers
    lines = [line for n in nodes for line in read_trace(tmp_path / n.node_id)]
    kinds = Counter(line["kind"] for line in lines)
    assert kinds["deliver"] == 2 * 6 - 3  # publishers deliver locally, not from a peer
    assert kinds["receive"] > kinds["deliver"]
    assert kinds["publish"] > 0
    assert all({"ts", "mono", "msg_id", "topic", "from", "to", "size"} <= set(x) for x in lines)
    assert all(x["to"] != x["from"] for x in lines)


async def test_a_message_is_relayed_along_the_mesh_only_and_reaches_every_node(
    tmp_path: Path,
) -> None:
    """Eight nodes all connected to each other, a mesh of degree 2 (kept between 1 and 3):
    a node relays what it accepts to its mesh peers, not to its other connections, and
    every message still reaches every node."""
    net = MemoryNetwork(seed=3, default=MemoryLink(delay=0.01))
    nodes = make_nodes(net, 8, tmp_path, target=7, mesh=2, bounds=(1, 3))
    got = collect(nodes, "t")
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        for n in nodes:
            await tg.start(n.run)
        await settle(nodes, 7)
        await anyio.sleep(4)  # a few heartbeats: the mesh is pruned to its bounds
        meshes = {n.node_id: n.mesh_ids for n in nodes}
        for i in range(10):
            nodes[i % 8].publish("t", {"i": i})
        await anyio.sleep(2)
        assert {n.node_id: n.mesh_ids for n in nodes} == meshes  # stable meanwhile
        tg.cancel_scope.cancel()
    assert {node: len(items) for node, items in got.items()} == {n.node_id: 10 for n in nodes}
    assert all(1 <= len(m) <= 3 for m in meshes.values()), meshes
    assert all(a in meshes[b] for a, mesh in meshes.items() for b in mesh)  # symmetric
    for n in nodes:
        n._tracer.close()
    publisher = {message_id("t", {"i": i}): f"n{i % 8}" for i in range(10)}
    relayed = [
        x for n in nodes for x in read_trace(tmp_path / n.node_id)
        if x["kind"] == "receive" and x["from"] != publisher[x["msg_id"]]
    ]  # fmt: skip
    assert relayed and all(x["to"] in meshes[x["from"]] for x in relayed)
    # Flooding would have sent each message over all 28 links, both ways but the first.
    assert len(relayed) < 10 * (56 - 7 - 7)


async def test_rejected_messages_are_not_relayed() -> None:
    net = MemoryNetwork(seed=2, default=MemoryLink(delay=0.01))
    b, a, c = make_nodes(net, 3, target=1)  # b, the first, is the bootnode
    # A line a - b - c: c only hears what b relays.
    net.set_link(a.listen_address, c.listen_address, MemoryLink(down=True))
    seen_c: list[Json] = []
    a.subscribe("t", lambda d: True)
    b.subscribe("t", lambda d: d["ok"])

    def at_c(data: Json) -> bool:
        seen_c.append(data)
        return True

    c.subscribe("t", at_c)
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        await tg.start(b.run)
        await tg.start(a.run)
        await tg.start(c.run)
        await settle([a, c], 1)
        a.publish("t", {"ok": False, "n": 1})
        a.publish("t", {"ok": True, "n": 2})
        await anyio.sleep(1)
        tg.cancel_scope.cancel()
    assert [d["n"] for d in seen_c] == [2]


async def test_peers_are_found_by_exchange() -> None:
    net = MemoryNetwork(seed=3, default=MemoryLink(delay=0.005))
    nodes = make_nodes(net, 8, target=3)
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        for n in nodes:
            await tg.start(n.run)
        await settle(nodes, 3)
        # Miners know more than the bootnode: they learned addresses by peer exchange.
        assert any(set(n.peer_ids) - {"n0"} for n in nodes[1:])
        tg.cancel_scope.cancel()


async def test_garbage_from_a_peer_is_dropped() -> None:
    net = MemoryNetwork(seed=4)
    (node,) = make_nodes(net, 1)
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        await tg.start(node.run)
        conn = await net.transport("10.9.9.9").dial(node.listen_address)
        await conn.send(b"not json")
        with anyio.fail_after(5):
            hello = orjson.loads(await conn.receive())
            assert hello["t"] == "hello"
            with pytest.raises(anyio.EndOfStream):
                await conn.receive()
        assert node.peer_count == 0
        tg.cancel_scope.cancel()


def _hold_and_sync(node: Gossip) -> list[Json]:
    """What `node` is given on topic "t", which it also offers to sync (digest: the items)."""
    held: list[Json] = []

    def handle(data: Json) -> bool:
        held.append(data)
        return True

    node.subscribe("t", handle)
    node.set_sync(
        lambda: {"t": str(sorted(d["n"] for d in held))},
        lambda key: [("t", d) for d in held],
    )
    return held


async def test_sync_repairs_what_a_cut_link_lost() -> None:
    net = MemoryNetwork(seed=5, default=MemoryLink(delay=0.01))
    a, b = make_nodes(net, 2, target=1)
    held = {"a": _hold_and_sync(a), "b": _hold_and_sync(b)}
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        await tg.start(a.run)
        await tg.start(b.run)
        await settle([a, b], 1)
        net.partition([a.listen_address], [b.listen_address])
        a.publish("t", {"n": 1})
        b.publish("t", {"n": 2})
        await anyio.sleep(1)
        assert [d["n"] for d in held["b"]] == [2]  # flooding lost it, and will not resend
        net.partition([a.listen_address], [b.listen_address], cut=False)
        a.request_sync()
        await anyio.sleep(1)
        tg.cancel_scope.cancel()
    assert sorted(d["n"] for d in held["a"]) == [1, 2]
    assert sorted(d["n"] for d in held["b"]) == [1, 2]


async def test_simultaneous_dials_leave_one_lasting_connection() -> None:
    net = MemoryNetwork(seed=6, default=MemoryLink(delay=0.02))
    clock = LoopClock()
    addrs = ["10.2.0.1:7513", "10.2.0.2:7513"]
    nodes = [
        Gossip(
            node_id=f"d{i}",
            listen_address=addrs[i],
            transport=net.transport(addrs[i]),
            clock=clock,
            rng=random.Random(i),
            bootnodes=[addrs[1 - i]],  # each dials the other at once
            target_peers=1,
        )
        for i in range(2)
    ]
    got: list[Json] = []

    def handle(data: Json) -> bool:
        got.append(data)
        return True

    nodes[1].subscribe("t", handle)
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        for n in nodes:
            await tg.start(n.run)
        await settle(nodes, 1)
        counts = []
        for _ in range(20):
            await anyio.sleep(0.5)
            counts.append((nodes[0].peer_count, nodes[1].peer_count))
        nodes[0].publish("t", {"x": 1})
        await anyio.sleep(0.5)
        tg.cancel_scope.cancel()
    assert set(counts) == {(1, 1)}
    assert got == [{"x": 1}]


async def test_the_received_metric_counts_every_frame_duplicates_included(tmp_path: Path) -> None:
    """Counted once per batch, not per frame: the sum is still one per received frame."""
    net = MemoryNetwork(seed=2, default=MemoryLink(delay=0.01))
    nodes = make_nodes(net, 5, tmp_path)
    for n in nodes:
        n._metrics = NodeMetrics()
        n.subscribe("t", lambda data: True)
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        for n in nodes:
            await tg.start(n.run)
        await settle(nodes, 2)
        for i in range(10):
            nodes[i % 5].publish("t", {"i": i})
        await anyio.sleep(1)
        tg.cancel_scope.cancel()
    for n in nodes:
        n._tracer.close()  # writes what the tracer buffers
        received = sum(r["kind"] == "receive" for r in read_trace(tmp_path / n.node_id))
        assert n._metrics is not None
        (metric,) = [m for m in n._metrics.received.collect()]
        counted = sum(s.value for s in metric.samples if s.name.endswith("_total"))
        assert counted == received > 10, n.node_id


@pytest.mark.parametrize(("in_mesh", "after"), [(3, 6), (4, 4), (8, 8), (9, 6), (12, 6)])
def test_the_heartbeat_keeps_the_mesh_within_go_spacemesh_s_bounds(in_mesh: int, after: int) -> None:
    """D = 6 between Dlo = 4 and Dhi = 8, as go-spacemesh sets gossipsub: a mesh below 4 is
    grafted up to 6, one above 8 pruned down to 6, one within the bounds left alone; each
    change is sent to the peer it concerns."""
    from scenarios.spacemesh._gossip import _Peer
    from scenarios.spacemesh._mailbox import Mailbox

    (node,) = make_nodes(MemoryNetwork(seed=5), 1)
    peers = [_Peer(f"p{i:02}", f"10.1.0.{i + 9}:7513", True, Mailbox(), mesh=i < in_mesh)
             for i in range(14)]  # fmt: skip
    node._peers.update((p.node_id, p) for p in peers)
    node._keep_mesh()
    assert len(node.mesh_ids) == after
    changed = [p for p in peers if p.mesh != (int(p.node_id[1:]) < in_mesh)]
    assert len(changed) == abs(after - in_mesh)
    assert all(list(p.queue._items) == [b'{"t":"graft"}' if p.mesh else b'{"t":"prune"}']
               for p in changed)  # fmt: skip


async def test_a_message_the_peer_sent_meanwhile_is_not_sent_back() -> None:
    """Relayed frames wait in the peer's queue; one whose message that peer has sent us by
    the time the writer runs would only be a duplicate there, and is not sent."""
    from scenarios.spacemesh._gossip import _Peer
    from scenarios.spacemesh._mailbox import Mailbox

    (node,) = make_nodes(MemoryNetwork(seed=5), 1)
    peer = _Peer("p", "10.1.0.9:7513", True, Mailbox())

    def frame(data: Json) -> bytes:
        mid = message_id("t", data)
        return orjson.dumps({"t": "msg", "id": mid, "topic": "t", "data": data, "ts": None})

    sent: list[bytes] = []

    class Conn:
        async def send_many(self, frames: list[bytes]) -> None:
            sent.extend(frames)

    queued = [frame({"x": 1}), frame({"x": 2}), orjson.dumps({"t": "getpeers"})]
    for f in queued:
        peer.queue.put(f)
    node._duplicate(queued[0], peer)  # not seen: no duplicate, nothing recorded
    node._mark_seen(message_id("t", {"x": 1}), "t")
    assert node._duplicate(queued[0], peer)  # the peer sent message 1 meanwhile
    peer.queue.close()
    await node._writer(Conn(), peer, anyio.CancelScope())  # type: ignore[arg-type]
    assert sent == queued[1:]


async def test_a_crowd_starting_at_once_joins_through_one_bootnode_in_one_round() -> None:
    """The bootnode sheds most of a crowd that dials it at once; with the addresses of the
    others that dialed in (not only its own, full, peers) each finds peers with free slots
    at its first try, instead of churning through full nodes for seconds."""
    net = MemoryNetwork(seed=8, default=MemoryLink(delay=0.05))
    nodes = make_nodes(net, 60, target=6)
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        for n in nodes:
            await tg.start(n.run)
        # Virtual time: one maintenance tick (0.5-1.5 s) and a few round trips.
        await anyio.sleep(1.0)
        counts = sorted(n.peer_count for n in nodes)
        tg.cancel_scope.cancel()
    assert counts[0] >= 2, counts


async def test_a_node_gets_what_was_flooded_before_it_connected() -> None:
    """A new connection starts with a digest exchange: a message flooded while the node was
    still looking for peers arrives at once, not at the next periodic sync."""
    net = MemoryNetwork(seed=9, default=MemoryLink(delay=0.01))
    a, b = make_nodes(net, 2, target=1)
    held = {"a": _hold_and_sync(a), "b": _hold_and_sync(b)}
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        await tg.start(a.run)
        a.publish("t", {"n": 1})
        await tg.start(b.run)
        await settle([a, b], 1)
        await anyio.sleep(0.5)
        tg.cancel_scope.cancel()
    assert [d["n"] for d in held["b"]] == [1]


async def test_a_bootnode_that_shed_a_dialer_is_left_alone_for_a_while() -> None:
    """A dialer shed by a full bootnode (told so) backs off from it and uses the addresses
    it was given: a crowd re-dialing a loaded bootnode at every tick kept it too busy to
    answer anyone's handshake in time (the 100-instance run)."""
    net = MemoryNetwork(seed=10, default=MemoryLink(delay=0.05))
    nodes = make_nodes(net, 40, target=6)
    boot = nodes[0]
    served: list[str] = []
    inbound = boot._serve_inbound

    async def counted(conn: Connection) -> None:
        served.append("x")
        await inbound(conn)

    boot._serve_inbound = counted  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        for n in nodes:
            await tg.start(n.run)
        await anyio.sleep(10.0)
        counts = sorted(n.peer_count for n in nodes)
        tg.cancel_scope.cancel()
    assert counts[0] >= 2, counts
    # Each of the 39 others dials it once; a shed one comes back only after backing off
    # and only when it ran out of others (before: 56 handshakes in these 10 s).
    assert len(served) <= len(nodes) - 1 + 4, len(served)


async def test_a_dialer_waits_for_its_handshake_with_an_address_before_dialing_it_again(
) -> None:
    """A bootnode too starved to answer handshakes in time (100 node processes on 2 cores)
    must not be dialed again by a node whose last handshake with it is still pending: before,
    each maintenance tick (0.5-1.5 s) added one within the 5 s the hello may take, and a
    dozen stranded nodes kept the bootnode busy with ~50 handshakes a second, none of them
    answered in time, so they never joined."""
    net = MemoryNetwork(seed=11, default=MemoryLink(delay=0.05))
    (node,) = make_nodes(net, 2)[1:]  # n1, whose bootnode is 10.1.0.1, which is silent
    open_now, most, total = 0, 0, 0

    async def silent(conn: Connection) -> None:
        nonlocal open_now, most, total
        open_now += 1
        total += 1
        most = max(most, open_now)
        try:
            async with conn:
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    while True:
                        await conn.receive()  # never answers the hello
        finally:
            open_now -= 1

    listener = await net.transport("10.1.0.1:7513").listen("10.1.0.1:7513")
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        tg.start_soon(listener.serve, silent)
        await tg.start(node.run)
        await anyio.sleep(30.0)
        tg.cancel_scope.cancel()
    assert most == 1, most  # one handshake at a time
    assert 3 <= total <= 7, total  # one per hello timeout (5 s) or so, and still trying


async def test_a_duplicate_frame_is_dropped_without_decoding_or_the_handler() -> None:
    """A copy of a message already held costs one lookup in the reader: it is counted and
    remembered as sent by that peer, but not decoded (`_on_frame`) nor handed to the node."""
    from scenarios.spacemesh._gossip import _ID_AT, _Peer
    from scenarios.spacemesh._mailbox import Mailbox

    (node,) = make_nodes(MemoryNetwork(seed=5), 1)
    node.subscribe("t", lambda data: pytest.fail("handler called for a duplicate"))
    peer = _Peer("p", "10.1.0.9:7513", True, Mailbox())
    data = {"x": 1}
    mid = message_id("t", data)
    dup = orjson.dumps({"t": "msg", "id": mid, "topic": "t", "data": data, "ts": None})
    node._mark_seen(mid, "t")
    decoded: list[bytes] = []
    on_frame = node._on_frame

    def spy(frame: bytes, p: _Peer) -> bool:
        decoded.append(frame)
        return on_frame(frame, p)

    node._on_frame = spy  # type: ignore[method-assign]
    getpeers = orjson.dumps({"t": "getpeers"})
    batches = [[dup, dup, getpeers]]

    await node._reader(Batches(batches), peer)  # type: ignore[arg-type]
    assert decoded == [getpeers]  # only the frame that is not a duplicate was decoded
    assert list(peer.sent_me) == [dup[_ID_AT : _ID_AT + 64]]
    assert node._received == {}  # counted, then added to the metric at the batch's end


async def test_a_deferred_message_is_offered_again_and_relayed_once_accepted() -> None:
    """A handler that cannot judge a message yet (None: say, its layer has not begun on this
    node's clock) gets it again from `retry_deferred` and from any later copy, relayed or
    synced; accepted at last, it is relayed. A rejected one (False) is seen for good: its
    copies are dropped unread and it is not offered again."""
    from scenarios.spacemesh._gossip import _Peer
    from scenarios.spacemesh._mailbox import Mailbox

    (node,) = make_nodes(MemoryNetwork(seed=5), 1)
    answers = {"early": [None, None, True], "bad": [False], "late": [None, True]}
    calls: list[str] = []

    def handle(data: Json) -> bool | None:
        assert isinstance(data, dict)
        calls.append(str(data["case"]))
        return answers[str(data["case"])].pop(0)

    node.subscribe("t", handle)
    sender = _Peer("p", "10.1.0.9:7513", True, Mailbox())
    relay = node._peers["q"] = _Peer("q", "10.1.0.8:7513", True, Mailbox(), mesh=True)
    frames = {}
    for case in answers:
        data = {"case": case}
        frames[case] = orjson.dumps({"t": "msg", "id": message_id("t", data), "topic": "t",
                                     "data": data, "ts": None})  # fmt: skip
    batches = [list(frames.values())]

    await node._reader(Batches(batches), sender)  # type: ignore[arg-type]
    assert calls == ["early", "bad", "late"] and not relay.queue._items  # nothing relayed
    node.retry_deferred()  # "late" is accepted now, and relayed; "early" still waits
    assert calls[3:] == ["early", "late"] and list(relay.queue._items) == [frames["late"]]
    batches.append(list(frames.values()))
    await node._reader(Batches(batches), sender)  # type: ignore[arg-type]
    assert calls[5:] == ["early"]  # a copy of "early" is judged again, and accepted
    node.retry_deferred()
    assert calls[6:] == []  # nothing is left to offer
    assert list(relay.queue._items) == [frames["late"], frames["early"]]


async def test_a_mailbox_consumer_is_woken_by_put_and_close_and_survives_a_cancel() -> None:
    from scenarios.spacemesh._mailbox import Mailbox

    box: Mailbox[int] = Mailbox(limit=3)
    got: list[list[int]] = []
    async with anyio.create_task_group() as tg:

        async def consume() -> None:
            got.append(await box.take_all())

        tg.start_soon(consume)
        await anyio.sleep(0.1)
        assert box.waiting
        assert box.put(1) and box.put(2)
        await anyio.sleep(0.1)
    assert got == [[1, 2]] and not box.waiting
    with anyio.move_on_after(0.1):  # cancelled while waiting: the next put wakes no one
        await box.take_all()
    assert not box.waiting
    assert box.put(3) and box.put(4) and box.put(5) and not box.put(6)  # full: dropped
    assert await box.take_all() == [3, 4, 5]
    ended: list[bool] = []

    async def consume_to_the_end() -> None:
        with pytest.raises(anyio.EndOfStream):
            await box.take_all()
        ended.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume_to_the_end)
        await anyio.sleep(0.1)
        box.close()
    assert ended == [True] and not box.put(7)


def test_a_mailbox_works_on_asyncio_too() -> None:
    """The real processes' event loop: the same behaviour (woken by `put` and by `close`, a
    cancelled wait leaves the mailbox usable), waiting on a future of the loop's."""
    from scenarios.spacemesh._mailbox import Mailbox

    async def main() -> tuple[list[int], list[int], bool]:
        box: Mailbox[int] = Mailbox()
        out: list[int] = []
        with anyio.move_on_after(0.01):
            await box.take_all()
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                out.extend(await box.take_all())

            tg.start_soon(consume)
            await anyio.sleep(0.01)
            assert box.waiting
            box.put(1)
        assert not box.waiting
        rest: list[int] = []
        ended = False
        async with anyio.create_task_group() as tg:

            async def to_the_end() -> None:
                nonlocal ended
                while True:
                    try:
                        rest.extend(await box.take_all())
                    except anyio.EndOfStream:
                        ended = True
                        return

            tg.start_soon(to_the_end)
            await anyio.sleep(0.01)
            box.put(2)
            await anyio.sleep(0.01)
            box.close()
        return out, rest, ended

    assert anyio.run(main, backend="asyncio") == ([1], [2], True)


async def test_a_frame_checked_by_one_node_is_not_hashed_again_by_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The nodes of a simulation relay the very same frame: its id is checked against its
    content once per process. A frame whose id is wrong is never taken as checked."""
    from scenarios.spacemesh import _gossip
    from scenarios.spacemesh._gossip import _Peer
    from scenarios.spacemesh._mailbox import Mailbox

    hashed: list[str] = []
    real = _gossip.message_id
    monkeypatch.setattr(_gossip, "message_id", lambda t, d: hashed.append(t) or real(t, d))
    a, b = make_nodes(MemoryNetwork(seed=5), 2)
    got: list[Json] = []
    for n in (a, b):
        n.subscribe("t", lambda data: got.append(data) or True)
    peer = _Peer("p", "10.1.0.9:7513", True, Mailbox())
    data = {"x": 42}
    frame = orjson.dumps({"t": "msg", "id": real("t", data), "topic": "t", "data": data})
    forged = orjson.dumps({"t": "msg", "id": real("t", {"x": 1}), "topic": "t", "data": data})
    for n in (a, b):
        assert n._on_frame(forged, peer) and n._on_frame(frame, peer)
    assert got == [data, data]
    assert hashed == ["t", "t", "t"]  # the forged frame by each node, the good one once


async def test_the_nodes_of_a_simulation_share_what_a_frame_decodes_to() -> None:
    """Over the memory network every node receives the very frame its sender sent: it is
    decoded once, and every node is handed (and keeps) the same message, not a copy each.
    Over TCP, one node per process, nothing is kept for that."""
    from scenarios.spacemesh._gossip import _Peer
    from scenarios.spacemesh._mailbox import Mailbox
    from scenarios.spacemesh._transport import TcpTransport

    def received(nodes: list[Gossip], data: Json) -> list[Json]:
        got: list[Json] = []
        for n in nodes:
            n.subscribe("t", lambda d: got.append(d) or True)
        frame = orjson.dumps({"t": "msg", "id": message_id("t", data), "topic": "t", "data": data})
        peer = _Peer("p", "10.1.0.9:7513", True, Mailbox())
        for n in nodes:
            assert n._on_frame(frame, peer)
        return got

    shared = received(make_nodes(MemoryNetwork(seed=6), 3), {"x": 43})
    assert shared == [{"x": 43}] * 3 and shared[0] is shared[1] is shared[2]
    tcp = [
        Gossip(node_id=f"t{i}", listen_address=f"10.1.0.{i + 1}:7513", transport=TcpTransport(),
               clock=LoopClock(), rng=random.Random(i))
        for i in range(2)
    ]  # fmt: skip
    apart = received(tcp, {"x": 44})
    assert apart == [{"x": 44}] * 2 and apart[0] is not apart[1]
    # and what they share is hashed once between them (`share`), what they don't is not
    from scenarios.spacemesh._codec import _SHARED

    assert _SHARED[id(shared[0])][0] is shared[0]
    assert id(apart[0]) not in _SHARED and id(apart[1]) not in _SHARED


def test_a_shared_value_is_hashed_once_for_all_its_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    """`share` declares a decoded message read-only: `hash_json` then encodes and hashes it
    once, however many nodes ask. An equal value that is not shared is hashed each time."""
    from scenarios.spacemesh import _codec

    encoded: list[object] = []
    real = _codec.canonical
    monkeypatch.setattr(_codec, "canonical", lambda v: encoded.append(v) or real(v))
    shared = _codec.share({"x": [1, 2]})
    other = {"x": [1, 2]}
    ids = {_codec.hash_json(v) for v in (shared, shared, other, other, shared)}
    assert len(ids) == 1
    assert sum(v is shared for v in encoded) == 1 and sum(v is other for v in encoded) == 2
    assert _codec.share(5) == 5 and id(5) not in _codec._SHARED  # only containers are kept


def test_sync_sends_a_held_message_in_the_frame_it_encoded_for_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sync resends what a key holds, to peer after peer: each held message object is hashed
    and encoded once; another object, even an equal one, gets a frame of its own."""
    from scenarios.spacemesh import _gossip

    hashed: list[str] = []
    real = _gossip.message_id

    def counting(topic: str, data: object) -> str:
        hashed.append(topic)
        return real(topic, data)

    monkeypatch.setattr(_gossip, "message_id", counting)
    monkeypatch.setattr(_gossip, "_SYNC_FRAMES", {})
    atx = {"epoch": 2, "smesher": "ab"}
    first = _gossip._sync_frame("atx", atx)
    assert _gossip._sync_frame("atx", atx) is first and hashed == ["atx"]
    assert orjson.loads(first) == {"t": "msg", "id": real("atx", atx), "topic": "atx",
                                   "data": atx, "ts": None}  # fmt: skip
    assert _gossip._sync_frame("atx", dict(atx)) == first and hashed == ["atx", "atx"]
    assert orjson.loads(_gossip._sync_frame("proposal", atx))["topic"] == "proposal"
    monkeypatch.setattr(_gossip, "_SYNC_FRAMES_LIMIT", 2)
    _gossip._sync_frame("tx", {"n": 1})  # over the limit: the cache starts again
    assert len(_gossip._SYNC_FRAMES) == 1


async def test_a_mailbox_hands_items_to_its_consumer_inside_put() -> None:
    """`consume` under trio: what was queued first, then each item inside the `put` that
    brings it (the consumer's task stays parked: no task switch per item); it stops when
    the handler says so, raises in its own task what the handler raised, ends at `close`,
    and takes nothing more once its task is cancelled (the items queue again)."""
    import trio

    from scenarios.spacemesh._mailbox import Mailbox

    box: Mailbox[int] = Mailbox()
    box.put(1)
    got: list[tuple[int, object]] = []

    def handle(item: int) -> bool:
        got.append((item, trio.lowlevel.current_task()))
        if item == 99:
            raise ValueError("bad item")
        return item != 0

    async with anyio.create_task_group() as tg:
        tg.start_soon(box.consume, handle)
        await anyio.sleep(0.01)
        me = trio.lowlevel.current_task()
        assert box.put(2) and got[-1] == (2, me)  # handed over in this task, at once
        assert box.put(0)  # the handler stops the consumer
    assert [item for item, _ in got] == [1, 2, 0] and got[0][1] is not me
    assert box.put(5) and await box.take_all() == [5]  # no consumer: queued again

    failed: list[BaseException] = []

    async def consume_until_it_fails() -> None:
        try:
            await box.consume(handle)
        except ValueError as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume_until_it_fails)
        await anyio.sleep(0.01)
        box.put(99)  # raised in the consumer's task, not in this one
    assert [str(e) for e in failed] == ["bad item"]

    async with anyio.create_task_group() as tg:
        tg.start_soon(box.consume, handle)
        await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
        assert box.put(6)  # cancelled (not yet unwound): not handed to it
    assert got[-1][0] == 99 and await box.take_all() == [6]

    async with anyio.create_task_group() as tg:
        tg.start_soon(box.consume, handle)
        await anyio.sleep(0.01)
        box.close()  # consume returns
    assert not box.put(7)


def test_a_mailbox_consumer_on_asyncio_takes_items_as_take_all_does() -> None:
    """Off trio `consume` waits for items in its own task: the same items, in order."""
    from scenarios.spacemesh._mailbox import Mailbox

    async def main() -> list[int]:
        box: Mailbox[int] = Mailbox()
        box.put(1)
        got: list[int] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(box.consume, lambda item: got.append(item) or item != 0)
                await anyio.sleep(0.01)
                box.put(2)
                box.put(0)
                box.put(3)  # after the handler stopped: queued
            assert await box.take_all() == [3]
        return got

    assert anyio.run(main, backend="asyncio") == [1, 2, 0]


async def test_over_the_memory_network_one_task_per_node_writes_to_every_peer() -> None:
    """A node of the memory network has no writer task per peer: one flusher sends what
    is queued for any of its peers, once per burst. A paused process's flusher sends
    nothing until it is resumed, then what was queued meanwhile."""
    import trio

    net = MemoryNetwork(seed=3, default=MemoryLink(delay=0.01))
    nodes = make_nodes(net, 4)
    got = collect(nodes, "t")
    steps: Counter[str] = Counter()

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            steps[task.name.rsplit(".", 1)[-1]] += 1

    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        for n in nodes:
            await tg.start(n.run)
        await settle(nodes, 2)
        trio.lowlevel.add_instrument(Steps())
        paused = nodes[1].listen_address.rpartition(":")[0]
        net.pause(paused)
        nodes[1].publish("t", {"x": 1})  # queued for its peers; the process is frozen
        await anyio.sleep(1)
        assert got["n1"] and not got["n0"] and not got["n2"] and not got["n3"]
        net.resume(paused)
        await anyio.sleep(1)
        tg.cancel_scope.cancel()
    assert all(items == [{"x": 1}] for items in got.values())
    assert steps["_flusher"] > 0 and steps["_writer"] == 0
