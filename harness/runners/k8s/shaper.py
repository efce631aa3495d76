"""`python -m harness.runners.k8s.shaper MODE ENDED_FILE`: the shaping sidecar of a pod.

MODE is `kernel` (tc netem on the pod's eth0), `userspace` (netem's userspace engine on the
pod's OUTPUT hook, htb for bandwidth caps) or `auto` (kernel where this node's kernel has
sch_netem, found by trying it on the pod's own loopback).

Connects to the run's sync service as the pod's instance, announces the pod's address on
`k8s/hosts`, learns every other pod's, applies the instance's network requests (published
by the sync service on `network/<instance>`) to the pod's egress and signals each request's
`callback_state`; drops on arrival what a fault cuts (`fault/<instance>`); signals `network-initialized` for the instance once every pod's address
is known; exits once the instance has ended (ENDED_FILE exists)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import anyio

from harness._runparams import RunParams
from harness.runners.k8s._actions import fault_topic
from harness.runners.k8s._podnet import PodEgress
from harness.runners.k8s.syncd import network_topic
from harness.sync import CONNECT_PATIENCE_S, NETWORK_INITIALIZED, SyncError, connect_tcp

__all__ = ["HOSTS_TOPIC", "main", "shape"]

HOSTS_TOPIC = "k8s/hosts"


def kernel_has_netem() -> bool:
    """Whether a netem qdisc can be made here (tried on this pod's loopback, then removed)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        try:
            ipr.tc("add", "netem", lo, 0x10000, delay=0)
        except NetlinkError:
            return False
        ipr.tc("del", "netem", lo, 0x10000)
        return True


@contextlib.contextmanager
def egress_for(mode: str, me: IPv4Address) -> Iterator[PodEgress]:
    """The pod's egress shaped in `mode`; the userspace engine stopped at the end."""
    if mode == "auto":
        mode = "kernel" if kernel_has_netem() else "userspace"
    if mode != "userspace":
        yield PodEgress(me)
        return
    from netem._userspace import Engine

    with Engine(None, hook="OUTPUT") as engine:
        print(f"shaper: userspace engine ({engine.implementation}) on OUTPUT", file=sys.stderr)
        yield PodEgress(me, engine=engine)


async def shape(params: RunParams, ended: Path, egress: PodEgress) -> None:
    """Serve the instance's network until it ends."""
    assert params.sync_tcp is not None and params.data_ip is not None
    me = egress.me
    host, _, port = params.sync_tcp.rpartition(":")
    async with connect_tcp(host, int(port), params.instance_id, params.sync_token,
                           patience_s=CONNECT_PATIENCE_S) as client, \
            anyio.create_task_group() as tasks:
        await client.publish(HOSTS_TOPIC, {"ip": str(me), "seq": params.global_seq,
                                           "instance": params.instance_id})
        ips: dict[str, IPv4Address] = {}

        async def hosts() -> None:
            async with client.subscribe(HOSTS_TOPIC) as sub:
                async for item in sub:
                    egress.hosts[IPv4Address(item["ip"])] = int(item["seq"])
                    ips[item["instance"]] = IPv4Address(item["ip"])
                    egress.apply()
                    if len(egress.hosts) == params.instance_count:
                        # every peer known: the instance's requests can name any of them
                        await client.signal_entry(NETWORK_INITIALIZED)

        async def requests() -> None:
            async with client.subscribe(network_topic(params.instance_id)) as sub:
                async for config in sub:
                    egress.request(config)
                    if isinstance(config.get("callback_state"), str):
                        await client.signal_entry(config["callback_state"])

        async def faults() -> None:
            async with client.subscribe(fault_topic(params.instance_id)) as sub:
                async for fault in sub:
                    if "cut_from" in fault:  # every pod is known: faults start after that
                        srcs = {ips[i] for i in fault["cut_from"]}
                        egress.cut_from = (egress.cut_from | srcs if fault["on"]
                                           else egress.cut_from - srcs)
                        egress.apply()

        tasks.start_soon(hosts)
        tasks.start_soon(faults)
        tasks.start_soon(requests)
        while not await anyio.Path(ended).exists():  # noqa: ASYNC110 (the other container writes it: no event to wait on)
            await anyio.sleep(0.5)
        tasks.cancel_scope.cancel()


def main() -> None:
    """Entry point of the shaper container."""
    mode, ended = sys.argv[1], Path(sys.argv[2])
    if mode not in ("auto", "kernel", "userspace"):
        sys.exit(f"harness: shaper: unknown mode {mode!r} (auto, kernel or userspace)")
    params = RunParams.from_environ(os.environ)
    if params.data_ip is None:
        sys.exit("harness: shaper: TEST_DATA_IP is not set (the pod's address)")
    with egress_for(mode, IPv4Address(params.data_ip)) as egress:
        # trio: pyroute2's synchronous calls run an asyncio loop of their own, which a
        # running asyncio loop forbids
        try:
            anyio.run(shape, params, ended, egress, backend="trio")
        except SyncError as e:  # e.g. the service never came up: one line in shaper.log
            sys.exit(f"harness: shaper: {e}")


if __name__ == "__main__":
    main()
