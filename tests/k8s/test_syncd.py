"""The run's sync service in the cluster, over TCP on this host's loopback."""

from __future__ import annotations

import socket
from contextlib import AbstractAsyncContextManager

import trio

from harness.runners.k8s._actions import life_topic
from harness.runners.k8s.syncd import serve
from harness.sync import NETWORK_INITIALIZED, SyncClient, SyncError, Tokens, connect_tcp

KEY = bytes(range(32))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _listening(port: int) -> None:
    """Until the service started in the background listens on `port`."""
    with trio.fail_after(10):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


def _client(port: int, instance: str) -> AbstractAsyncContextManager[SyncClient]:
    return connect_tcp("127.0.0.1", port, instance, Tokens(KEY).for_instance(instance))


def test_without_shapers_every_instance_is_ready_as_it_starts() -> None:
    """shaping = off: no shaper signals network-initialized, so the service does, as
    local:exec does (every plan that waits on it waited for the run's timeout)."""
    run = {"shaped": False, "faults": [],
           "instances": [{"id": f"g/{n}", "group": "g", "role": ""} for n in range(2)]}
    port = _free_port()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, run, KEY, port, "127.0.0.1")
            await _listening(port)
            with trio.fail_after(10):
                async with _client(port, "g/0") as c:
                    await c.barrier(NETWORK_INITIALIZED, 2)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_an_instance_whose_agent_says_it_ended_fails_what_waits_for_it_at_once() -> None:
    """The service never heard that an instance ended: a run whose instance crashed at
    once waited for the run's timeout (106 s under kube play, 3 s on local:exec), its
    other instances saying only that the timeout had passed."""
    run = {"shaped": False, "faults": [],
           "instances": [{"id": f"g/{n}", "group": "g", "role": ""} for n in range(2)]}
    port = _free_port()
    reasons: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, run, KEY, port, "127.0.0.1")
            await _listening(port)
            with trio.fail_after(10):
                async with _client(port, "g/0") as w, _client(port, "g/1") as agent:
                    await agent.publish(life_topic("g/1"), {"running": True})
                    await agent.publish(life_topic("g/1"), {"running": False, "code": 3})
                    try:
                        await w.barrier("both-done", 2)
                    except SyncError as e:
                        reasons.append(str(e))
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert len(reasons) == 1 and "g/1 (exit code 3)" in reasons[0], reasons
