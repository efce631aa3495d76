"""Putting a topology on a network: requests per host, drops for unreachable pairs, rollback."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import networkx as nx
import pytest

from netem import LinkShape, Network, RequestError
from netem import topology as topo


@pytest.fixture
def net() -> Iterator[Network]:
    with Network(backend="none", dry_run=True) as network:
        network.build(5)
        yield network


def test_requests_group_destinations_by_shape_and_drop_the_unreachable() -> None:
    g = nx.Graph()
    g.add_edge("a", "b", latency_ms=5)
    g.add_edge("a", "c", latency_ms=5)
    g.add_node("d")
    ips = {n: IPv4Address(f"198.18.0.{i + 1}") for i, n in enumerate("abcd")}
    configs = topo.requests_for(topo.pair_matrix(g), ips)
    assert configs[ips["a"]] == {
        "rules": [
            {"peers": ["198.18.0.2", "198.18.0.3"], "shape": LinkShape(latency_ms=5).to_dict()},
            {"peers": ["198.18.0.4"], "drop": True},
        ]
    }
    assert configs[ips["d"]] == {
        "rules": [{"peers": ["198.18.0.1", "198.18.0.2", "198.18.0.3"], "drop": True}]
    }


def test_the_network_gets_the_pair_matrix(net: Network) -> None:
    g = topo.ring(4, latency_ms=10, loss_pct=1.0)
    g.add_node(4)  # an island: cut from everyone
    m = topo.apply_topology(net, g)
    hosts = net.hosts
    expected = m.by_address({i: h.ip for i, h in enumerate(hosts)})
    assert net.matrix() == expected
    assert net.matrix()[(hosts[0].ip, hosts[2].ip)].latency_ms == 20
    island = hosts[4].ip
    assert {(island, h.ip) for h in hosts[:4]} <= net.drops()
    assert {(h.ip, island) for h in hosts[:4]} <= net.drops()


def test_explicit_node_to_host_mapping(net: Network) -> None:
    g = nx.Graph([("x", "y", {"latency_ms": 7})])
    h = net.hosts
    topo.apply_topology(net, g, {"x": h[3], "y": h[1]})
    assert net.matrix() == {
        (h[3].ip, h[1].ip): LinkShape(latency_ms=7),
        (h[1].ip, h[3].ip): LinkShape(latency_ms=7),
    }


def test_too_many_nodes_is_a_one_line_error(net: Network) -> None:
    with pytest.raises(topo.TopologyError, match="6 nodes but the network 5 hosts"):
        topo.apply_topology(net, topo.ring(6, latency_ms=1))
    assert net.matrix() == {}


def test_a_refused_request_restores_the_hosts_already_changed(
    net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = net.hosts
    net.set_default(h[0], LinkShape(latency_ms=3))
    net.set_rule(h[1], h[2], LinkShape(latency_ms=4))
    net.apply_request(h[2], {"rules": [{"peers": [str(h[4].ip)], "drop": True}]}, "test")
    before = (net.matrix(), net.drops())
    real = net.apply_request
    calls = [0]

    def flaky(host: Any, config: Any, asked_by: str) -> Any:
        calls[0] += 1
        if calls[0] == 4:
            raise RequestError("refused by the test")
        return real(host, config, asked_by)

    monkeypatch.setattr(net, "apply_request", flaky)
    with pytest.raises(RequestError, match="refused by the test"):
        topo.apply_topology(net, topo.full_mesh(5, latency_ms=9))
    assert (net.matrix(), net.drops()) == before
