"""A subscription that expects N items fails, naming who ended, once they cannot come."""

from __future__ import annotations

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
