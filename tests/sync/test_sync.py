"""Sync service semantics over the real wire: barriers, pub/sub, events, errors."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from typing import Any

import anyio
import orjson
import pytest
import trio
import trio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.sync import BarrierFailed, SyncError, SyncServer, SyncState, connect_unix

from ._util import not_yet, run, running_server, server_in_thread, serving


def test_signal_entry_numbers_arrivals_from_one() -> None:
    async def main() -> None:
        async with running_server() as (path, _, _), connect_unix(path) as c:
            assert [await c.signal_entry("s") for _ in range(3)] == [1, 2, 3]
            assert await c.signal_entry("other") == 1

    run(main)


def test_barrier_releases_exactly_at_target() -> None:
    async def main() -> None:
        async with running_server() as (path, state, _):
            released: list[int] = []
            async with connect_unix(path) as c, trio.open_nursery() as n:

                async def wait() -> None:
                    await c.barrier("ready", 3)
                    released.append(state.snapshot()["ready"])

                n.start_soon(wait)
                await trio.sleep(0.05)
                await c.signal_entry("ready")
                await c.signal_entry("ready")
                await trio.sleep(0.05)
                assert released == []
                await c.signal_entry("ready")
            assert released == [3]

    run(main)


def test_barrier_already_met_returns_at_once() -> None:
    async def main() -> None:
        async with running_server() as (path, _, _), connect_unix(path) as c:
            await c.signal_entry("s")
            with trio.fail_after(1):
                await c.barrier("s", 1)
                await c.barrier("s", 0)

    run(main)


def test_barrier_fails_at_once_when_a_participant_ends() -> None:
    async def main() -> None:
        ids = ["g/0", "g/1", "g/2"]
        async with (
            running_server(ids) as (path, state, _),
            connect_unix(path, "g/0") as c0,
            connect_unix(path, "g/1") as c1,
        ):
            await c1.signal_entry("phase")
            with trio.fail_after(1):
                async with trio.open_nursery() as n:

                    async def end_later() -> None:
                        await trio.sleep(0.05)
                        state.instance_ended("g/2", "exit code 1")

                    n.start_soon(end_later)
                    with pytest.raises(BarrierFailed, match=r"g/2 \(exit code 1\)"):
                        await c0.signal_and_wait("phase", 3)

    run(main)


def test_barrier_met_before_participant_ends_is_unaffected() -> None:
    async def main() -> None:
        async with (
            running_server(["a", "b"]) as (path, state, _),
            connect_unix(path, "a") as a,
            connect_unix(path, "b") as b,
        ):
            await b.signal_entry("x")
            state.instance_ended("b", "exited 0")
            with trio.fail_after(1):
                assert await a.signal_and_wait("x", 2) == 2
            with pytest.raises(BarrierFailed, match="can no longer reach 3"):
                await a.barrier("x", 3)

    run(main)


@pytest.mark.parametrize("watch", [True, False])
def test_a_watcher_that_will_not_signal_is_not_counted_as_one_who_can_come(watch: bool) -> None:
    """A server waits for its two clients; one ends without signalling. Counted as one who
    could still arrive, the server kept its own barrier waiting to the run's timeout; with
    watch=True it fails at once. Without it the waiter may yet signal: it stays waiting."""

    async def main() -> None:
        async with (
            running_server(["server", "c1", "c2"]) as (path, state, _),
            connect_unix(path, "server") as server,
            connect_unix(path, "c1") as c1,
        ):
            await c1.signal_entry("done")
            with trio.move_on_after(1) as waited:
                async with trio.open_nursery() as n:

                    async def end_later() -> None:
                        await trio.sleep(0.05)
                        state.instance_ended("c2", "killed")

                    n.start_soon(end_later)
                    if not watch:
                        await server.barrier("done", 2)
                    with pytest.raises(BarrierFailed, match=r"1 arrived, at most 0 more.*c2"):
                        await server.barrier("done", 2, watch=True)
            assert waited.cancelled_caught is not watch

    run(main)


def test_a_watch_that_is_not_a_boolean_is_refused() -> None:
    async def main() -> None:
        async with running_server() as (path, _, _), connect_unix(path) as c:
            with pytest.raises(SyncError, match="'watch' must be true or false"):
                await c.request("barrier", state="s", target=1, watch="yes")

    run(main)


def test_subscribe_replays_then_goes_live_in_order() -> None:
    async def main() -> None:
        async with (
            running_server() as (path, _, _),
            connect_unix(path) as pub,
            connect_unix(path) as sub,
        ):
            assert await pub.publish("t", {"n": 1}) == 1
            assert await pub.publish("t", {"n": 2}) == 2
            async with sub.subscribe("t") as items:
                got = [await items.__anext__(), await items.__anext__()]
                await pub.publish("t", {"n": 3})
                msg = await items.next_message()
            assert got == [{"n": 1}, {"n": 2}]
            assert (msg.seq, msg.payload) == (3, {"n": 3})

    run(main)


@pytest.mark.parametrize("op", ["barrier", "signal_and_wait"])
def test_a_wait_the_caller_gave_up_is_cancelled_on_the_service(op: str) -> None:
    """It stayed registered: a run's timeout named that barrier as where the instance
    waited, and the barrier's failure at the instance's end was recorded."""

    async def main() -> None:
        async with running_server(["g/0", "g/1"]) as (path, state, _), \
                connect_unix(path, "g/0") as c:
            with anyio.move_on_after(0.2):
                await getattr(c, op)("phase1", 2)
            with anyio.fail_after(2):  # served after the cancel, which went first
                assert await c.signal_entry("next") == 1
            assert state.waiting_at("g/0") is None

    run(main)


def test_where_an_instance_waits_names_the_topics_it_is_subscribed_to() -> None:
    """A run's timeout named only barriers: an instance stuck in `Topic.collect` for a
    leader nobody published was "still running at the run's timeout", nothing more."""

    async def main() -> None:
        async with running_server(["g/0", "g/1"]) as (path, state, _), \
                connect_unix(path, "g/0") as c, connect_unix(path, "g/1") as other:
            await other.publish("votes", 1)
            async with c.subscribe("leader"), c.subscribe("votes", expect=2):  # once registered
                assert state.waiting_at("g/0") == (
                    "subscribed to topics 'votes' (1 published, 2 expected), "
                    "'leader' (0 published)")
                assert state.waiting_at("g/1") is None
                with anyio.move_on_after(0.2):
                    await c.barrier("end", 2)
                assert state.waiting_at("g/0") is not None
                async with other.subscribe("leader"):
                    assert state.waiting_at("g/1") == "subscribed to topic 'leader' (0 published)"
            with anyio.fail_after(2):  # the cancels went before this
                await c.signal_entry("x")
            assert state.waiting_at("g/0") is None

    run(main)


def test_a_barrier_beyond_the_runs_instances_says_how_many_it_has() -> None:
    """`barrier("end", env.instance_count + 5)` said "can no longer reach 7: 1 arrived, at
    most 1 more can", as if instances had ended; the mistake is the plan's target."""

    async def main() -> None:
        async with running_server(["g/0", "g/1"]) as (path, _, _), \
                connect_unix(path, "g/0") as c:
            with pytest.raises(BarrierFailed) as e:
                await c.signal_and_wait("end", 7)
            assert str(e.value) == ("barrier 'end' can no longer reach 7: 1 arrived, at most "
                                    "1 more can; the run has only 2 instances")

    run(main)


def test_a_send_cancelled_midway_does_not_break_the_connection() -> None:
    """A 15 MB publish cancelled while it was being written left half a frame on the wire:
    the next request ran into it, and the instance's calls hung or failed from then on."""

    async def main() -> None:
        big = "q" * 15_000_000
        for n, after in enumerate((0.005, 0.01, 0.02, 0.04, 0.08)):  # one cuts the send
            async with running_server() as (path, _, _), connect_unix(path) as c:
                with anyio.move_on_after(after):
                    await c.publish("big", big)
                with anyio.fail_after(10):
                    assert await c.signal_entry("after") == 1, n
                    await c.publish("big", "end")
                    async with c.subscribe("big") as items:
                        got = [await items.__anext__()]
                        while got[-1] != "end":
                            got.append(await items.__anext__())
                assert got in (["end"], [big, "end"])  # sent whole, or not at all

    run(main)


@dataclasses.dataclass
class Reading:
    rtt: float


def test_what_json_cannot_carry_is_refused_naming_where_not_sent_as_null() -> None:
    """A NaN or an infinity was published as null (orjson writes them so), and a set gave
    orjson's bare "Type is not JSON serializable" with no word of which call."""

    async def main() -> None:
        async with running_server() as (path, _, _), connect_unix(path) as c:
            with pytest.raises(ValueError, match=r"^publish: payload\['x'\]\[1\] is nan: "
                                                 r"JSON has no NaN or infinity"):
                await c.publish("t", {"x": [None, float("nan")]})
            with pytest.raises(ValueError, match=r"^publish: payload is -inf"):
                await c.publish("t", float("-inf"))
            with pytest.raises(ValueError, match=r"^publish: payload\[0\]\['rtt'\] is inf"):
                await c.publish("t", [Reading(float("inf"))])  # orjson encodes dataclasses
            with pytest.raises(TypeError, match=r"^publish: cannot send as JSON: .*set"):
                await c.publish("t", {1, 2})
            deep: list[object] = []
            for _ in range(300):  # it said orjson's "Recursion limit reached", no limit named
                deep = [deep]
            with pytest.raises(ValueError, match=r"^publish: cannot send as JSON: nested "
                                                 r"deeper than the 254 levels"):
                await c.publish("t", deep)
            assert await c.publish("t", [None, 1.5]) == 1  # nothing was sent before
            async with c.subscribe("t") as items:
                assert await items.__anext__() == [None, 1.5]

    run(main)


@settings(max_examples=25, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["a", "b"])), min_size=1, max_size=40
    ),
)
def test_every_subscriber_sees_each_topic_in_publish_order(
    plan: list[tuple[int, str]],
) -> None:
    """Concurrent publishers; early and late subscribers see every message, gap-free."""

    async def main() -> None:
        async with running_server() as (path, _, _):
            expected: dict[str, list[object]] = {"a": [], "b": []}
            seen: dict[str, list[object]] = {"a": [], "b": []}

            async with connect_unix(path) as c, trio.open_nursery() as n:

                async def publisher(who: int) -> None:
                    for i, (p, topic) in enumerate(plan):
                        if p == who:
                            seq = await c.publish(topic, [who, i])
                            expected[topic].append((seq, [who, i]))
                            await trio.lowlevel.checkpoint()

                async def subscriber(topic: str, delay: float) -> None:
                    await trio.sleep(delay)
                    async with connect_unix(path) as s, s.subscribe(topic) as items:
                        want = sum(1 for _, t in plan if t == topic)
                        while len(seen[topic]) < want:
                            m = await items.next_message()
                            seen[topic].append((m.seq, m.payload))

                for topic in ("a", "b"):
                    n.start_soon(subscriber, topic, 0)
                await trio.sleep(0.01)
                for who in range(4):
                    n.start_soon(publisher, who)
            for topic in ("a", "b"):
                assert [s for s, _ in seen[topic]] == list(range(1, len(seen[topic]) + 1))
                assert sorted(seen[topic]) == sorted(expected[topic])
            # a subscriber that comes after everything gets the same sequence
            async with connect_unix(path) as s, s.subscribe("a") as items:
                replay = [(m.seq, m.payload) for m in [await items.next_message()
                                                        for _ in seen["a"]]]
            assert replay == seen["a"]

    run(main)


@settings(max_examples=30, deadline=None)
@given(
    target=st.integers(1, 6),
    order=st.permutations(list(range(6))),
    waiting=st.sets(st.integers(0, 5), min_size=1),
)
def test_barrier_releases_exactly_when_target_is_reached(
    target: int, order: list[int], waiting: set[int]
) -> None:
    """Six instances signal in any order; some of them (any) wait for the barrier: each
    arrival gets the next number, and every waiter is released at the target-th arrival,
    never before, whoever arrives."""

    async def main() -> None:
        ids = [f"g/{i}" for i in range(6)]
        async with running_server(ids) as (path, _, events), contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(connect_unix(path, i)) for i in ids]
            released: list[str] = []

            async def waiter(i: int) -> None:
                await clients[i].barrier("b", target)
                released.append(ids[i])

            async with trio.open_nursery() as n:
                for i in sorted(waiting):
                    n.start_soon(waiter, i)
                await trio.sleep(0.02)  # every barrier request is in
                seqs = [await clients[i].signal_entry("b") for i in order]
            assert seqs == list(range(1, 7))
            assert sorted(released) == sorted(ids[i] for i in waiting)
            log = [(e["kind"], e.get("seq") or e.get("status")) for e in events
                   if e.get("state") == "b" and e.get("status") != "waiting"]  # fmt: skip
            assert log.index(("barrier", "released")) == log.index(("signal", target)) + 1

    run(main)


def test_events_are_recorded_with_the_instance_name() -> None:
    async def main() -> None:
        async with running_server() as (path, _, events), connect_unix(path, "grp/4") as c:
            await c.signal_event({"type": "success"})
            # the record's times are the service's: an event's own took their place
            await c.signal_event({"type": "message", "message": "m", "ts": 1.0, "mono": 2.0})
            with pytest.raises(SyncError, match="'error' must be a string"):
                await c.signal_event({"type": "crash", "error": 5})
        assert {"kind": "event", "type": "success", "instance": "grp/4"} in events
        assert {"kind": "event", "type": "message", "message": "m", "instance": "grp/4"} in events

    run(main)


def _raw_exchange(path: str, lines: list[bytes]) -> list[dict[str, object]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.settimeout(2)
        s.sendall(b"".join(lines))
        out = b""
        while out.count(b"\n") < len(lines):
            out += s.recv(65536)
    return [orjson.loads(x) for x in out.splitlines()]


def test_malformed_frames_get_error_replies_and_service_keeps_serving() -> None:
    async def main() -> None:
        async with running_server() as (path, _, _):
            bad = [
                b"not json\n",
                b"[1,2]\n",
                b'{"op": "publish", "topic": "t", "payload": 1}\n',
                b'{"id": 7, "op": "fly"}\n',
                b'{"id": 8, "op": "barrier", "state": "s", "target": "many"}\n',
                b'{"id": 9, "op": "signal_event", "event": {"type": "party"}}\n',
                b'{"id": 99999999999999999999, "op": "publish", "topic": "t", "payload": 1}\n',
                b'{"id": 10, "op": "publish", "topic": "t", "payload": 5}\n',
            ]
            replies = await trio.to_thread.run_sync(_raw_exchange, path, bad)
            assert [r["id"] for r in replies] == [None, None, None, 7, 8, 9, None, 10]
            assert all("error" in r for r in replies[:7])
            assert "unknown op 'fly'" in str(replies[3]["error"])
            assert replies[2]["error"] == "frame has no 'id' (an integer or a string)"
            assert replies[6]["error"] == ("frame's 'id' is float, not an integer (64 bits) or "
                                           "a string")
            assert replies[7] == {"id": 10, "ok": True, "seq": 1}
            async with connect_unix(path) as c:  # another client is served as before
                assert await c.publish("t", 6) == 2

    run(main)


def test_a_subscription_s_roles_must_be_role_names_and_come_with_its_expect() -> None:
    async def main() -> None:
        async with running_server(["a/0"], roles={"a/0": "server"}) as (path, _, _):
            bad = [
                b'{"id": 1, "op": "subscribe", "topic": "t", "expect": 1, "roles": "server"}\n',
                b'{"id": 2, "op": "subscribe", "topic": "t", "expect": 1, "roles": []}\n',
                b'{"id": 3, "op": "subscribe", "topic": "t", "expect": 1, "roles": [7]}\n',
                b'{"id": 4, "op": "subscribe", "topic": "t", "roles": ["server"]}\n',
                b'{"id": 5, "op": "subscribe", "topic": "t", "expect": 0, "roles": ["server"]}\n',
            ]
            replies = await trio.to_thread.run_sync(_raw_exchange, path, bad)
        assert [r.get("error") for r in replies] == [
            "subscribe: field 'roles' must be a non-empty list of role names",
            "subscribe: field 'roles' must be a non-empty list of role names",
            "subscribe: field 'roles' must be a non-empty list of role names",
            "subscribe: field 'roles' says who publishes what 'expect' counts, and needs it",
            None,
        ]
        assert replies[4] == {"id": 5, "ok": True}

    run(main)


def test_network_request_without_a_network_runner_is_refused() -> None:
    async def main() -> None:
        async with running_server() as (path, _, _), connect_unix(path) as c:
            with pytest.raises(SyncError, match="local:netns"):
                await c.configure_network({"default": {"latency_ms": 5}})

    run(main)


def test_network_requests_of_one_connection_are_applied_in_the_order_asked() -> None:
    """Each was applied in a task of its own: with a runner that takes a varying time, the
    link ended on whichever request finished last, not on the last asked."""
    import random

    applied: list[int] = []

    async def handler(instance: str | None, config: dict[str, Any]) -> None:
        await trio.sleep(random.random() / 100)
        applied.append(config["default"]["latency_ms"])

    async def main() -> None:
        async with running_server(network=handler) as (path, _, _):
            sock = trio.socket.socket(socket.AF_UNIX)
            await sock.connect(path)
            await sock.send(b"".join(orjson.dumps(
                {"id": i, "op": "network", "config": {"default": {"latency_ms": i}}}) + b"\n"
                for i in range(1, 31)))
            replies = b""
            with trio.fail_after(10):
                while replies.count(b"\n") < 30:
                    replies += await sock.recv(65536)
            sock.close()
        assert [orjson.loads(r)["id"] for r in replies.splitlines()] == list(range(1, 31))

    run(main)
    assert applied == list(range(1, 31))


def test_client_works_under_asyncio() -> None:
    async def client(path: str) -> list[object]:
        async with connect_unix(path) as c:
            await c.publish("t", "x")
            async with c.subscribe("t") as items:
                first = await items.__anext__()
            n = await c.signal_and_wait("s", 1)
            return [first, n]

    with server_in_thread() as path:
        assert anyio.run(client, path, backend="asyncio") == ["x", 1]


def test_unreachable_service_is_a_clear_error(tmp_path: object) -> None:
    async def main() -> None:
        with pytest.raises(SyncError, match="cannot reach the sync service"):
            async with connect_unix("/nonexistent/sync.sock"):
                pass

    run(main)


def test_tcp_transport_serves_the_same_protocol() -> None:
    from harness.sync import SyncServer, SyncState, connect_tcp

    async def main() -> None:
        server = SyncServer(SyncState())
        async with trio.open_nursery() as n:
            host, port = await n.start(server.serve_tcp, ("127.0.0.1", 0))
            async with connect_tcp(host, port, "x/0") as c:
                assert await c.publish("t", 1) == 1
                assert await c.signal_and_wait("s", 1) == 1
            n.cancel_scope.cancel()

    run(main)


@pytest.mark.parametrize("op", ["publish", "signal_event"])
def test_json_nested_deeper_than_can_be_kept_is_refused_and_the_connection_goes_on(
    op: str,
) -> None:
    """A payload 300 deep (from a client in another language: the Python one refuses to
    send it) closed the connection with an internal error (orjson reads 1024 levels,
    writes 254)."""
    deep = b"[" * 300 + b"]" * 300
    request = (b'{"id":1,"op":"publish","topic":"t","payload":%b}\n' % deep if op == "publish"
               else b'{"id":1,"op":"signal_event","event":{"type":"message","message":%b}}\n'
               % deep)

    async def main() -> None:
        # the supervisor writes every event to events.jsonl as JSON
        state = SyncState(None, record=orjson.dumps)
        async with serving(SyncServer(state)) as path:
            s = trio.socket.socket(socket.AF_UNIX)
            await s.connect(path)
            await s.send(request + b'{"id":2,"op":"publish","topic":"t","payload":[[1]]}\n')
            data = b""
            with trio.fail_after(5):
                while data.count(b"\n") < 2:
                    data += await s.recv(65536)
            s.close()
            first, second = (orjson.loads(line) for line in data.splitlines())
            assert first["id"] == 1 and "the service keeps JSON nested at most 254" in (
                first["error"])
            assert second == {"id": 2, "ok": True, "seq": 1}  # the connection goes on
            assert state.last_item("t") == [[1]]

    run(main)


def test_a_frame_longer_than_the_service_takes_is_refused_by_the_client_naming_the_limit() -> None:
    """The service closed the connection and its reason was lost in a reset: the client
    said "connection lost: " and nothing more."""

    async def main() -> None:
        async with running_server() as (path, _, _), connect_unix(path) as c:
            with pytest.raises(ValueError, match=r"publish: a frame of \d+ bytes is longer "
                                                 r"than the sync service takes \(16777216"):
                await c.publish("t", "x" * (17 << 20))
            assert await c.publish("t", "x" * (1 << 20)) == 1  # the connection goes on

    run(main)


def test_a_tcp_service_not_up_yet_is_tried_again_within_the_patience(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.sync import connect_tcp

    connect = not_yet(monkeypatch, 3)

    async def main() -> None:
        server = SyncServer(SyncState())
        async with trio.open_nursery() as n:
            host, port = await n.start(server.serve_tcp, ("127.0.0.1", 0))
            async with connect_tcp(host, port, "x/0", patience_s=60) as c:
                assert await c.publish("t", 1) == 1
            n.cancel_scope.cancel()

    run(main)
    assert connect.tries == 4


def test_a_tcp_service_that_never_comes_fails_in_one_line_naming_it_and_the_patience(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.sync import connect_tcp

    connect = not_yet(monkeypatch, 10**6)

    async def main() -> None:
        with pytest.raises(SyncError) as raised:
            async with connect_tcp("h-r-sync.p2p.svc", 5050, "x/0", patience_s=0.5):
                pass
        assert str(raised.value) == ("cannot reach the sync service at h-r-sync.p2p.svc:5050 "
                                     "(tried for 0.5 s): [Errno 111] Connection refused")

    run(main)
    assert connect.tries > 2  # tried again
    connect.tries = 0  # without patience (a caller that has none): one try, as before

    async def once() -> None:
        with pytest.raises(SyncError, match=r"^cannot reach the sync service at h:1: "
                                            r"\[Errno -2\] Name or service not known$"):
            async with connect_tcp("h", 1):
                pass

    run(once)
    assert connect.tries == 1


def test_an_instance_arrives_at_a_state_once_however_often_it_signals() -> None:
    """Restarted, an instance's test function signalled again and was counted again: a
    barrier of 3 was released with one instance still on its way (and a run passed).
    Signalling again gets the first arrival number back and counts for nothing."""
    events: list[dict[str, Any]] = []
    state = SyncState(["g/0", "g/1", "g/2"], record=events.append)
    replies: list[bytes] = []
    state.barrier("ready", 3, 7, replies.append)  # (an observer: no instance)
    assert state.signal_entry("ready", "g/1") == 1
    state.instance_ended("g/1", "killed by fault 0 (restart)")
    state.instance_revived("g/1")
    assert state.signal_entry("ready", "g/1") == 1  # its second life
    assert state.signal_entry("ready", "g/0") == 2
    assert replies == [] and state.snapshot()["ready"] == 2
    state.instance_ended("g/2", "exit code 1")  # 2 arrived, none can still come
    assert len(replies) == 1 and b"can no longer reach 3" in replies[0]
    again = [e for e in events if e["kind"] == "signal" and e.get("again")]
    assert [(e["instance"], e["seq"]) for e in again] == [("g/1", 1)]
