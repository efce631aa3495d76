"""Changes asked for from many threads at once (one per instance's request) all take effect."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

import pytest

import netem


class SlowBackend:
    """Takes a while to apply, as a real one does: requests queue up behind it."""

    name: ClassVar[str] = "slow"

    def attach(self, hub_netns: str, hosts: Sequence[netem.HostInfo]) -> None:
        pass

    def apply(self, matrix: Mapping[netem.Pair, netem.LinkShape]) -> None:
        time.sleep(0.01)

    def stats(self) -> Mapping[netem.Pair, netem.LinkStats]:
        return {}

    def close(self) -> None:
        pass


def test_concurrent_requests_build_on_each_other() -> None:
    with netem.Network(backend=SlowBackend(), dry_run=True) as net:
        hosts = net.build(24)
        start = threading.Barrier(len(hosts))

        def ask(host: netem.Host) -> None:
            start.wait()
            net.apply_request(host, {"default": {"latency_ms": 10 + host.number}}, host.name)

        threads = [threading.Thread(target=ask, args=(h,)) for h in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        matrix = net.matrix()
        assert len(matrix) == 24 * 23  # a lost update would leave some sources unshaped
        for (src, _), shape in matrix.items():
            assert shape.latency_ms == 10 + net.host(str(src)).number


@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0, reason="builds network namespaces: needs root")
def test_a_network_may_be_changed_and_closed_from_other_threads() -> None:
    """As the harness does: built on one worker thread, changed on others, closed on
    another. pyroute2 binds netlink sockets to threads; the shaper must not care."""
    from concurrent.futures import ThreadPoolExecutor

    net = netem.Network(backend="userspace")
    try:
        with ThreadPoolExecutor(1) as one:
            hosts = one.submit(net.build, 3).result()
        for i, host in enumerate(hosts):
            with ThreadPoolExecutor(1) as other:  # a new thread for every change
                other.submit(net.apply_request, host,
                             {"default": {"bandwidth_bps": 10_000_000 * (i + 1)}}, "t").result()
        with ThreadPoolExecutor(1) as other:
            assert len(other.submit(net.link_stats).result()) == 6
    finally:
        with ThreadPoolExecutor(1) as last:
            last.submit(net.close).result()  # raised "Socket operation on non-socket" before
