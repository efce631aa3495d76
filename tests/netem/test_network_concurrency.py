"""Changes asked for from many threads at once (one per instance's request) all take effect."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

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
