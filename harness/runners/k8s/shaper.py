"""`python -m harness.runners.k8s.shaper MODE ENDED_FILE`: the shaping sidecar of a pod.

Connects to the run's sync service as the pod's instance, announces the pod's address on
`k8s/hosts`, learns every other pod's, applies the instance's network requests (published
by the sync service on `network/<instance>`) to the pod's egress and signals each request's
`callback_state`; exits once the instance has ended (ENDED_FILE exists)."""

from __future__ import annotations

import os
import sys
from ipaddress import IPv4Address
from pathlib import Path

import anyio

from harness._runparams import RunParams
from harness.runners.k8s._podnet import PodEgress
from harness.runners.k8s.syncd import network_topic
from harness.sync import connect_tcp

__all__ = ["HOSTS_TOPIC", "main", "shape"]

HOSTS_TOPIC = "k8s/hosts"


async def shape(params: RunParams, ended: Path) -> None:
    """Serve the instance's network until it ends."""
    assert params.sync_tcp is not None and params.data_ip is not None
    me = IPv4Address(params.data_ip)
    egress = PodEgress(me)
    host, _, port = params.sync_tcp.rpartition(":")
    async with connect_tcp(host, int(port), params.instance_id, params.sync_token) as client, \
            anyio.create_task_group() as tasks:
        await client.publish(HOSTS_TOPIC, {"ip": str(me), "seq": params.global_seq})

        async def hosts() -> None:
            async with client.subscribe(HOSTS_TOPIC) as sub:
                async for item in sub:
                    egress.hosts[IPv4Address(item["ip"])] = int(item["seq"])
                    egress.apply()

        async def requests() -> None:
            async with client.subscribe(network_topic(params.instance_id)) as sub:
                async for config in sub:
                    egress.request(config)
                    if isinstance(config.get("callback_state"), str):
                        await client.signal_entry(config["callback_state"])

        tasks.start_soon(hosts)
        tasks.start_soon(requests)
        while not await anyio.Path(ended).exists():  # noqa: ASYNC110 (the other container writes it: no event to wait on)
            await anyio.sleep(0.5)
        tasks.cancel_scope.cancel()


def main() -> None:
    """Entry point of the shaper container."""
    mode, ended = sys.argv[1], Path(sys.argv[2])
    if mode == "userspace":
        sys.exit("harness: shaper: the userspace engine inside pods is not supported yet")
    anyio.run(shape, RunParams.from_environ(os.environ), ended)


if __name__ == "__main__":
    main()
