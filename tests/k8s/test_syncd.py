"""The run's sync service in the cluster, over TCP on this host's loopback."""

from __future__ import annotations

import socket

import trio

from harness.runners.k8s.syncd import serve
from harness.sync import NETWORK_INITIALIZED, SyncError, Tokens, connect_tcp

KEY = bytes(range(32))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_without_shapers_every_instance_is_ready_as_it_starts() -> None:
    """shaping = off: no shaper signals network-initialized, so the service does, as
    local:exec does (every plan that waits on it waited for the run's timeout)."""
    run = {"shaped": False, "faults": [],
           "instances": [{"id": f"g/{n}", "group": "g", "role": ""} for n in range(2)]}
    port = _free_port()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, run, KEY, port, "127.0.0.1")
            with trio.fail_after(10):
                while True:
                    try:
                        client = connect_tcp("127.0.0.1", port, "g/0",
                                             Tokens(KEY).for_instance("g/0"))
                        async with client as c:
                            await c.barrier(NETWORK_INITIALIZED, 2)
                        break
                    except SyncError:  # not listening yet
                        await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    trio.run(main)
