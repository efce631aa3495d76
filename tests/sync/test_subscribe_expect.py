"""A subscription that expects N items fails, naming who ended, once they cannot come."""

from __future__ import annotations

import socket

import orjson
import pytest
import trio

from harness.sync import SubscriptionFailed, connect_unix

from ._util import run, running_server


def test_an_expecting_subscription_fails_when_a_publisher_ends_without_publishing() -> None:
    async def main() -> None:
        async with (
            running_server(["g/0", "g/1", "g/2"]) as (path, state, events),
            connect_unix(path, "g/0") as a,
            connect_unix(path, "g/1") as b,
        ):
            await a.publish("peers", 0)
            await b.publish("peers", 1)
            async with a.subscribe("peers", expect=3) as items:
                assert [await items.__anext__(), await items.__anext__()] == [0, 1]
                state.instance_ended("g/2", "exit code 13")
                with trio.fail_after(5), pytest.raises(SubscriptionFailed) as err:
                    await items.__anext__()
        assert "subscription to 'peers' can no longer reach 3" in str(err.value)
        assert "g/2 (exit code 13)" in str(err.value)
        failed = [e for e in events if e["kind"] == "subscription"]
        assert failed[0]["status"] == "failed" and failed[0]["instance"] == "g/0"

    run(main)


def test_it_fails_at_once_when_already_unreachable_and_not_when_met() -> None:
    async def main() -> None:
        async with (
            running_server(["g/0", "g/1"]) as (path, state, _),
            connect_unix(path, "g/0") as a,
        ):
            await a.publish("t", "x")
            state.instance_ended("g/1", "crashed")
            with trio.fail_after(5), pytest.raises(SubscriptionFailed, match="g/1 \\(crashed\\)"):
                async with a.subscribe("t", expect=2):
                    pass
            async with a.subscribe("t", expect=1) as items:  # met: items as ever
                assert await items.__anext__() == "x"

    run(main)


def test_an_instance_that_published_is_not_counted_on_again() -> None:
    """The rule: items so far + one per running instance that has not published yet."""

    async def main() -> None:
        async with (
            running_server(["g/0", "g/1", "g/2"]) as (path, state, _),
            connect_unix(path, "g/0") as a,
            connect_unix(path, "g/1") as b,
        ):
            await b.publish("t", 1)
            async with a.subscribe("t", expect=3) as items:
                assert await items.__anext__() == 1
                state.instance_ended("g/1", "passed")  # had published: still reachable
                await a.publish("t", 0)
                assert await items.__anext__() == 0
                state.instance_ended("g/2", "exit code 1")  # 2 + 0 < 3
                with trio.fail_after(5), pytest.raises(SubscriptionFailed):
                    await items.__anext__()

    run(main)


ROLES = {"s/0": "server", "c/0": "client", "c/1": "client", "c/2": "client"}


def test_with_roles_only_their_instances_count_as_publishers() -> None:
    """A server that collects its clients' results: it counted itself (and any other role)
    as one that may still publish, so a client's death left it waiting to the timeout."""

    async def main() -> None:
        async with (
            running_server(list(ROLES), roles=ROLES) as (path, state, events),
            connect_unix(path, "s/0") as server,
            connect_unix(path, "c/0") as client,
        ):
            await client.publish("results", "ok")
            async with server.subscribe("results", expect=3, roles=["client"]) as items:
                assert await items.__anext__() == "ok"
                state.instance_ended("c/1", "killed by SIGKILL")  # 1 + c/2: 2 < 3
                with trio.fail_after(5), pytest.raises(SubscriptionFailed) as err:
                    await items.__anext__()
            # Without roles the server itself counts: 1 + s/0 + c/2 = 3, it waits.
            async with server.subscribe("results", expect=3) as items:
                assert await items.__anext__() == "ok"
                with trio.move_on_after(0.3) as waited:
                    await items.__anext__()
                assert waited.cancelled_caught
        assert str(err.value) == (
            "subscription to 'results' can no longer reach 3: 1 published, at most 1 more "
            "can; ended without publishing: c/1 (killed by SIGKILL)")
        assert [e["status"] for e in events if e["kind"] == "subscription"] == ["failed"]

    run(main)


def test_roles_name_only_the_ended_instances_of_those_roles_and_say_when_too_few() -> None:
    async def main() -> None:
        async with (
            running_server(list(ROLES), roles=ROLES) as (path, state, _),
            connect_unix(path, "c/0") as client,
        ):
            state.instance_ended("s/0", "exit code 1")  # not a publisher: not named
            with trio.fail_after(5), pytest.raises(SubscriptionFailed) as err:
                async with client.subscribe("results", expect=4, roles=["client"]):
                    pass
            assert str(err.value) == (
                "subscription to 'results' can no longer reach 4: 0 published, at most 3 "
                "more can; only 3 instances may publish it")
            state.instance_ended("c/2", "crashed")
            with trio.fail_after(5), pytest.raises(SubscriptionFailed) as err:
                async with client.subscribe("results", expect=3, roles=["client"]):
                    pass
            assert str(err.value).endswith("ended without publishing: c/2 (crashed)")

    run(main)


def test_a_role_no_instance_has_is_refused_naming_the_run_s_roles() -> None:
    async def main() -> None:
        async with (
            running_server(list(ROLES), roles=ROLES) as (path, _, _),
            connect_unix(path, "c/0") as client,
        ):
            with trio.fail_after(5), pytest.raises(SubscriptionFailed) as err:
                async with client.subscribe("results", expect=1, roles=["client", "miner"]):
                    pass
            assert str(err.value) == ("subscription to 'results': no instance has the role "
                                      "'miner' (the run's roles: client, server)")
            with pytest.raises(ValueError, match="give expect too"):
                async with client.subscribe("results", roles=["client"]):
                    pass
            async with client.subscribe("results", expect=0, roles=["client"]):
                pass  # the connection still serves

    run(main)


def test_nothing_of_a_subscription_s_backlog_follows_its_cancel_or_its_failure() -> None:
    """A slow reader of a long backlog: after the expectation's error and after the cancel's
    ok, the rest of each backlog kept coming (4,000 and 5,000 items)."""

    async def main() -> None:
        async with running_server(["a/0", "a/1", "a/2"]) as (path, state, _):
            for _ in range(5000):
                state.publish("T", "x" * 1000, "a/0")
            s = trio.socket.socket(socket.AF_UNIX)
            await s.connect(path)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await s.send(b'{"id":1,"op":"subscribe","topic":"T","expect":5002}\n'
                         b'{"id":2,"op":"subscribe","topic":"T"}\n')
            await trio.sleep(0.2)
            await s.send(b'{"id":3,"op":"cancel","target":2}\n')
            await trio.sleep(0.2)
            state.instance_ended("a/1", "killed")  # 5,002 can no longer come
            data = b""
            with trio.move_on_after(2):
                while d := await s.recv(1 << 20):
                    data += d
            s.close()
            frames = [orjson.loads(line) for line in data.splitlines() if line.strip()]
            failed = next(i for i, f in enumerate(frames) if f["id"] == 1 and "error" in f)
            cancelled = next(i for i, f in enumerate(frames) if f["id"] == 3)
            assert "can no longer reach 5002" in frames[failed]["error"]
            assert [f for f in frames[failed:] if f["id"] == 1 and "item" in f] == []
            assert [f for f in frames[cancelled:] if f["id"] == 2 and "item" in f] == []
            # what came before is in order, from the first item
            seqs = [f["seq"] for f in frames if f["id"] == 2 and "item" in f]
            assert seqs == list(range(1, len(seqs) + 1))

    run(main)


@pytest.mark.parametrize("late", [False, True])
def test_an_instance_publishing_again_counts_once_where_one_item_each_is_expected(
    late: bool,
) -> None:
    """Restarted (its test function run again), an instance published its item again:
    `collect(n, one_per_instance=True)` returned [0, 1, 1], one instance short. A
    subscription that expects one item per instance skips the repeats (published before it
    subscribed, or after); any other subscription gets every item."""

    async def main() -> None:
        async with (
            running_server(["g/0", "g/1", "g/2"]) as (path, state, _),
            connect_unix(path, "g/0") as a,
            connect_unix(path, "g/1") as b,
        ):
            await b.publish("peers", 1)
            if late:
                await b.publish("peers", "1 again")
            async with a.subscribe("peers", expect=2) as expecting, a.subscribe("peers") as every:
                if not late:
                    await b.publish("peers", "1 again")
                await a.publish("peers", 0)
                assert [await expecting.__anext__(), await expecting.__anext__()] == [1, 0]
                assert [await every.__anext__() for _ in range(3)] == [1, "1 again", 0]
                state.instance_ended("g/2", "exit code 1")  # 2 of 2 met: nothing fails
                await b.publish("peers", "1 a third time")
                await a.publish("peers", "0 again")
                assert await every.__anext__() == "1 a third time"
                assert await every.__anext__() == "0 again"
            with trio.fail_after(5), pytest.raises(SubscriptionFailed, match="2 published"):
                async with a.subscribe("peers", expect=3):  # 2 + none left < 3
                    pass

    run(main)
