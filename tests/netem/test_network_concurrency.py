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

    def __init__(self) -> None:
        self.applied: list[int] = []
        self.fail = False

    def apply(self, matrix: Mapping[netem.Pair, netem.LinkShape]) -> None:
        time.sleep(0.01)
        if self.fail:
            raise netem.NetworkError("the backend refused")
        self.applied.append(len(matrix))

    def stats(self) -> Mapping[netem.Pair, netem.LinkStats]:
        return {}

    def close(self) -> None:
        pass


def _ask_at_once(net: netem.Network, configs: dict[netem.Host, dict[str, object]]
                 ) -> dict[netem.Host, BaseException | None]:  # fmt: skip
    """Every host's request from its own thread, all released together; how each ended."""
    start = threading.Barrier(len(configs))
    ended: dict[netem.Host, BaseException | None] = {}

    def ask(host: netem.Host) -> None:
        start.wait()
        try:
            net.apply_request(host, configs[host], host.name)
            ended[host] = None
        except netem.NetemError as exc:
            ended[host] = exc

    threads = [threading.Thread(target=ask, args=(h,)) for h in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ended


def test_concurrent_requests_build_on_each_other() -> None:
    backend = SlowBackend()
    with netem.Network(backend=backend, dry_run=True) as net:
        hosts = net.build(24)
        ended = _ask_at_once(net, {h: {"default": {"latency_ms": 10 + h.number}} for h in hosts})
        assert set(ended.values()) == {None}
        matrix = net.matrix()
        assert len(matrix) == 24 * 23  # a lost update would leave some sources unshaped
        for (src, _), shape in matrix.items():
            assert shape.latency_ms == 10 + net.host(str(src)).number
        # Requests that queued behind one update were applied together, not one by one.
        assert len(backend.applied) < len(hosts)
        assert backend.applied[-1] == 24 * 23


def test_a_bad_request_fails_alone_a_backend_failure_fails_its_whole_batch() -> None:
    backend = SlowBackend()
    with netem.Network(backend=backend, dry_run=True) as net:
        hosts = net.build(12)
        configs: dict[netem.Host, dict[str, object]] = {
            h: {"default": {"latency_ms": 5}} for h in hosts}  # fmt: skip
        configs[hosts[3]] = {"rules": [{"peers": ["198.18.9.9"], "drop": True}]}  # no such host
        ended = _ask_at_once(net, configs)
        assert isinstance(ended.pop(hosts[3]), netem.RequestError)
        assert set(ended.values()) == {None}
        assert {src for src, _ in net.matrix()} == {h.ip for h in hosts if h is not hosts[3]}
        before = net.matrix()
        backend.fail = True
        ended = _ask_at_once(net, {h: {"default": {"latency_ms": 7}} for h in hosts[:6]})
        assert all(isinstance(e, netem.NetworkError) for e in ended.values())
        assert net.matrix() == before  # nothing of a failed batch is applied


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
