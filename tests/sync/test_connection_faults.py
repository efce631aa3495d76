"""One connection's fault closes that connection, is recorded, and the service goes on."""

from __future__ import annotations

import contextlib
import socket

import orjson
import pytest
import trio

from harness.sync import SyncError, SyncServer, SyncState, _protocol, connect_unix

from ._util import run, running_server, serving

MB = b"x" * (1 << 20)


def _raw(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


async def _queued_for(path: str, state: SyncState, sub: socket.socket) -> None:
    """Subscribe `sub` to 'busy' and wait until the service has its reply."""
    sub.sendall(b'{"id": 1, "op": "subscribe", "topic": "busy"}\n')
    while not any(t.subscribers for t in state._topics.values()):  # noqa: ASYNC110
        await trio.sleep(0.01)  # the service's state has no event to wait on


def test_a_subscriber_that_leaves_with_replies_queued_does_not_end_the_service() -> None:
    async def main() -> None:
        async with running_server() as (path, state, events):
            sub = _raw(path)
            await _queued_for(path, state, sub)
            async with connect_unix(path, "pub/0") as pub:
                for _ in range(4):  # more than the socket takes: the rest is queued
                    await pub.publish("busy", MB.decode())
                sub.close()  # gone, with about 3 MB queued for it
                for _ in range(4):
                    await pub.publish("busy", MB.decode())
                await trio.sleep(0.1)  # the writer meets the closed socket
                assert await pub.publish("other", 1) == 1  # the service goes on
            async with connect_unix(path) as later:
                assert await later.signal_entry("s") == 1
        lost = [e for e in events if e["kind"] == "connection"]
        assert lost and lost[0]["status"] == "lost" and "queued" in lost[0]["reason"]

    run(main)


def test_an_error_inside_a_request_closes_only_that_connection() -> None:
    def broken(frame: bytes) -> None:
        if b'"item"' in frame:
            raise RuntimeError("a subscriber that breaks")

    async def main() -> None:
        async with running_server() as (path, state, events):
            state.subscribe("t", "internal", broken)
            async with connect_unix(path, "a/0") as a:
                with pytest.raises(SyncError, match="internal error"):
                    await a.publish("t", 1)
            async with connect_unix(path, "b/0") as b:  # others are served as before
                assert await b.signal_entry("s") == 1
        failed = [e for e in events if e["kind"] == "connection"]
        assert failed[0]["status"] == "failed" and "a subscriber that breaks" in failed[0]["reason"]
        assert failed[0]["instance"] == "a/0"

    run(main)


def test_a_subscriber_that_does_not_read_falls_behind_holding_nothing_in_the_service(
) -> None:
    """100 x 1 MB to a subscriber that does not read: the items wait in the topic, not in
    its connection's queue, and it is not dropped; reading then, it gets them all, in order.
    (Readers that read, each large item in turn, were dropped as ones that did not.)"""

    async def main() -> None:
        events: list[dict[str, object]] = []
        state = SyncState(record=events.append)
        server = SyncServer(state)
        async with serving(server) as path:
            sub = _raw(path)
            await _queued_for(path, state, sub)
            most = 0
            async with connect_unix(path, "pub/0") as pub:
                for _ in range(100):
                    await pub.publish("busy", MB.decode())
                    most = max(most, server.queued())
            assert most <= 2 * len(MB), most  # at most the frame being written
            assert not [e for e in events if e["kind"] == "connection"]
            sub.setblocking(False)
            data = bytearray()
            with trio.fail_after(60):
                while data.count(b"\n") < 101:
                    await trio.lowlevel.wait_readable(sub)
                    data += sub.recv(1 << 22)
            sub.close()
            frames = [orjson.loads(line) for line in data.splitlines()]
            assert frames[0] == {"id": 1, "ok": True}
            assert [f["seq"] for f in frames[1:]] == list(range(1, 101))

    run(main)


def test_a_client_that_does_not_read_its_replies_is_dropped_at_the_bound_and_learns_why(
) -> None:
    """Replies to its requests (each echoes the request's id: 100 KB here) past the bound:
    what is queued for it stays bounded, it is dropped with a recorded reason, and the last
    frame it gets says why."""

    async def main() -> None:
        events: list[dict[str, object]] = []
        state = SyncState(record=events.append)
        server = SyncServer(state)
        big_id = "i" * 100_000
        async with serving(server) as path:
            client = _raw(path)
            request = orjson.dumps({"id": big_id, "op": "signal_entry", "state": "s"}) + b"\n"
            most = 0
            for n in range(1, 4 * _protocol.MAX_QUEUED // len(big_id)):
                # one at a time, each read by the service before the next: a client's
                # bytes it had not read when it closed would reset the connection
                client.sendall(request)
                with trio.fail_after(10):
                    while state.snapshot().get("s", 0) < n:  # noqa: ASYNC110
                        await trio.sleep(0.001)
                most = max(most, server.queued())
                if [e for e in events if e["kind"] == "connection"]:
                    break
            assert most <= 2 * _protocol.MAX_QUEUED + 200_000
            dropped = [e for e in events if e["kind"] == "connection"]
            assert dropped[0]["status"] == "dropped"
            assert f"{_protocol.MAX_QUEUED}" in str(dropped[0]["reason"])
            # The dropped client reads what was on its way, then the reason, then the end.
            data = b""
            client.settimeout(5)
            while chunk := await trio.to_thread.run_sync(client.recv, 1 << 20):
                data += chunk
            client.close()
            last = orjson.loads(data.rstrip(b"\n").rsplit(b"\n", 1)[-1])
            assert last["id"] is None and last["closed"] is True
            assert "bytes" in last["error"] and "not reading" in last["error"]

    run(main)


def test_an_sdk_subscriber_that_does_not_iterate_for_a_while_gets_every_item() -> None:
    """It was dropped ("not reading") once 8 MiB of items had come while it did other work."""

    async def main() -> None:
        async with (
            running_server() as (path, _, events),
            connect_unix(path, "slow/0") as slow,
            slow.subscribe("busy") as items,
        ):
            count = _protocol.MAX_QUEUED // len(MB) + 4
            async with connect_unix(path, "pub/0") as pub:
                for i in range(count):
                    await pub.publish("busy", f"{i:08d}{MB.decode()[8:]}")
            got = [int((await items.__anext__())[:8]) for _ in range(count)]
            assert got == list(range(count))
            assert not [e for e in events if e["kind"] == "connection"]

    run(main)


def test_the_service_itself_is_not_ended_by_a_closed_stream() -> None:
    """A SyncServer whose handler meets any error in a connection keeps serving."""

    async def main() -> None:
        server = SyncServer(SyncState())

        class Broken(trio.abc.Stream):
            async def send_all(self, data: bytes | bytearray | memoryview) -> None:
                raise trio.ClosedResourceError

            async def wait_send_all_might_not_block(self) -> None:
                pass

            async def receive_some(self, max_bytes: int | None = None) -> bytes:
                await trio.lowlevel.checkpoint()
                return b'{"id": 1, "op": "publish", "topic": "t", "payload": 1}\n'

            async def aclose(self) -> None:
                pass

        with trio.fail_after(5):
            await server._handle(Broken())

    run(main)



def test_a_late_subscriber_reading_a_long_backlog_is_not_dropped_for_live_items() -> None:
    """300 items of 100 kB there, then 200 more published while the new subscriber read
    them all: the live ones queued behind its backlog passed 8 MiB, and it was dropped as
    a reader that does not read (after 186 items). They are in the topic already: the
    backlog takes them."""
    item = "y" * 100_000

    async def main() -> None:
        async with running_server() as (path, _, events), \
                connect_unix(path, "pub/0") as pub, connect_unix(path, "sub/0") as sub:
            for _ in range(300):
                await pub.publish("busy", item)
            got: list[int] = []

            async def publish_more() -> None:
                for _ in range(200):
                    await pub.publish("busy", item)

            async with sub.subscribe("busy") as items, trio.open_nursery() as nursery:
                nursery.start_soon(publish_more)
                with trio.fail_after(60):
                    while len(got) < 500:
                        msg = await items.next_message()
                        assert msg.payload == item
                        got.append(msg.seq)
                        if len(got) == 50:  # a reply behind the backlog: it waits for no item
                            assert await sub.signal_entry("midway") == 1
            assert got == list(range(1, 501))  # in order, once each
            assert not [e for e in events if e["kind"] == "connection"]

    run(main)


def test_a_client_that_shuts_only_its_sending_side_still_gets_its_replies() -> None:
    """`printf '...signal_and_wait...' | socat - UNIX-CONNECT:...` (its input's end shuts
    the socket's sending side, then it reads): the service took the end for the client
    leaving, dropped its barrier, and the instance went on as if it had met it."""

    def client(path: str) -> list[dict[str, object]]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            s.sendall(b'{"id": 1, "op": "hello", "instance": "g/0"}\n'
                      b'{"id": 2, "op": "signal_and_wait", "state": "hc", "target": 2}\n')
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return [orjson.loads(line) for line in out.splitlines()]

    async def main() -> None:
        async with running_server(["g/0", "g/1"]) as (path, state, _):
            async with trio.open_nursery() as nursery:
                got: list[list[dict[str, object]]] = []

                async def run_client() -> None:
                    got.append(await trio.to_thread.run_sync(client, path))

                nursery.start_soon(run_client)
                with trio.fail_after(10):
                    while state.snapshot().get("hc") != 1:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                await trio.sleep(0.2)  # its end of sending has come meanwhile
                async with connect_unix(path, "g/1") as other:
                    assert await other.signal_and_wait("hc", 2) == 2
            assert got == [[{"id": 1, "ok": True}, {"id": 2, "ok": True, "seq": 1}]]

    run(main)


def test_a_client_that_closes_after_shutting_its_sending_side_is_let_go() -> None:
    """Over TCP a close looks like a half-close (a FIN): such a connection, and over a Unix
    socket one that half-closed and then closed, stayed with its subscription and barrier
    until the run's end."""

    async def main() -> None:
        state = SyncState()
        server = SyncServer(state)
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server.serve_tcp, ("127.0.0.1", 0))

            def tcp_client() -> None:
                with socket.create_connection((host, port)) as s:
                    s.sendall(b'{"id": 1, "op": "subscribe", "topic": "t"}\n')
                    s.recv(100)

            await trio.to_thread.run_sync(tcp_client)
            with trio.fail_after(5):
                while server.connections or state.subscribers("t"):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        async with serving(server) as path:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(b'{"id": 1, "op": "subscribe", "topic": "t"}\n'
                      b'{"id": 2, "op": "barrier", "state": "b", "target": 5}\n')
            s.shutdown(socket.SHUT_WR)
            await trio.sleep(0.3)
            s.close()
            with trio.fail_after(5):
                while server.connections or state.subscribers("t"):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            assert not any(st.waiters for st in state._states.values())

    run(main)


def test_a_failing_expectation_comes_after_the_items_it_was_sent() -> None:
    """The items waiting in the subscription's cursor were thrown away when it failed, and
    its error, a reply, overtook them: ok, item 1, error, though 3 had been published."""

    async def main() -> None:
        state = SyncState([f"p/{i}" for i in range(5)])
        async with serving(SyncServer(state)) as path:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(b'{"id": 1, "op": "subscribe", "topic": "u", "expect": 5}\n')
            with trio.fail_after(5):
                while not state.subscribers("u"):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            for i in range(3):  # 1 MiB each, to a subscriber not reading yet
                async with connect_unix(path, f"p/{i}") as p:
                    await p.publish("u", "x" * len(MB))
            state.instance_ended("p/3", "exited")
            state.instance_ended("p/4", "exited")

            def read() -> list[dict[str, object]]:
                data = b""
                s.settimeout(2)
                with contextlib.suppress(TimeoutError):
                    while chunk := s.recv(1 << 20):
                        data += chunk
                        if b'"error"' in data and data.endswith(b"\n"):
                            break
                return [orjson.loads(line) for line in data.splitlines()]

            frames = await trio.to_thread.run_sync(read)
            s.close()
        said = [f.get("seq") or ("error" if "error" in f else "ok") for f in frames]
        assert said == ["ok", 1, 2, 3, "error"]

    run(main)
