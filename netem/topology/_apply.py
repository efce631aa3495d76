"""Putting a topology on a running network: one `network` request per source host."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any, Protocol

import networkx as nx

from netem._shape import LinkShape
from netem.topology._matrix import PairMatrix, TopologyError, pair_matrix


class _HasIp(Protocol):
    @property
    def ip(self) -> IPv4Address: ...


class _Network(Protocol):
    """What `apply_topology` needs of a `netem.Network`."""

    @property
    def hosts(self) -> Sequence[Any]: ...

    @property
    def policy(self) -> Any: ...

    def apply_request(self, host: Any, config: Mapping[str, Any], asked_by: str) -> Any: ...


def _current_config(policy: Any, ip: IPv4Address) -> dict[str, Any]:
    """The `network` config that gives host `ip` its present egress policy back."""
    default = policy.defaults.get(ip)
    groups: dict[LinkShape, list[str]] = {}
    for (src, dst), shape in policy.rules.items():
        if src == ip:
            groups.setdefault(shape, []).append(str(dst))
    rules: list[dict[str, Any]] = [
        {"peers": peers, "shape": shape.to_dict()} for shape, peers in groups.items()
    ]
    drops = [str(dst) for src, dst in policy.request_drops if src == ip]
    if drops:
        rules.append({"peers": drops, "drop": True})
    config: dict[str, Any] = {"rules": rules, "enabled": ip not in policy.disabled}
    if default is not None:
        config["default"] = default.to_dict()
    return config


def requests_for(
    matrix: PairMatrix, addresses: Mapping[Any, IPv4Address]
) -> dict[IPv4Address, dict[str, Any]]:
    """The `network` config (docs/contracts.md section 6) of every source host: a rule per
    group of destinations sharing a shape, and a drop rule for the unreachable ones."""
    by_ip = matrix.by_address(addresses)
    missing = sorted({n for pair in matrix.unreachable for n in pair} - set(addresses), key=repr)
    if missing:
        raise TopologyError(f"no address for node(s) {', '.join(map(repr, missing))}")
    per_src: dict[IPv4Address, dict[LinkShape, list[IPv4Address]]] = {
        ip: {} for ip in addresses.values()
    }
    for (src, dst), shape in by_ip.items():
        per_src[src].setdefault(shape, []).append(dst)
    drops: dict[IPv4Address, list[IPv4Address]] = {ip: [] for ip in addresses.values()}
    for s, d in matrix.unreachable:
        drops[addresses[s]].append(addresses[d])
    out: dict[IPv4Address, dict[str, Any]] = {}
    for src, groups in per_src.items():
        rules: list[dict[str, Any]] = [
            {"peers": [str(ip) for ip in sorted(dsts)], "shape": shape.to_dict()}
            for shape, dsts in groups.items()
            if not shape.is_identity
        ]
        if drops[src]:
            rules.append({"peers": [str(ip) for ip in sorted(drops[src])], "drop": True})
        out[src] = {"rules": rules}
    return out


def apply_topology(
    network: _Network,
    topology: nx.Graph | PairMatrix,
    hosts: Mapping[Any, _HasIp] | None = None,
    *,
    asked_by: str = "topology",
) -> PairMatrix:
    """Shape `network` as `topology` says and return its pair matrix.

    `hosts` maps graph nodes to the network's hosts; by default the graph's nodes, in
    order, are the network's first hosts. Each host's whole egress policy (default shape,
    rules, request drops) is replaced: pairs get their path's shape, unreachable pairs
    are dropped. One request per host, validated by the network before it is applied; if
    one is refused, the hosts changed before it get their previous policy back.
    """
    if isinstance(topology, PairMatrix):
        matrix = topology
        nodes = sorted(
            {n for pair in (*matrix.shapes, *matrix.unreachable) for n in pair}, key=repr
        )
    else:
        matrix = pair_matrix(topology)
        nodes = list(topology.nodes)
    if hosts is None:
        available = list(network.hosts)
        if len(nodes) > len(available):
            raise TopologyError(
                f"the topology has {len(nodes)} nodes but the network {len(available)} hosts"
            )
        hosts = dict(zip(nodes, available, strict=False))
    addresses = {node: host.ip for node, host in hosts.items()}
    configs = requests_for(matrix, addresses)
    by_ip = {host.ip: host for host in hosts.values()}
    before = network.policy
    done: list[IPv4Address] = []
    try:
        for src, config in configs.items():
            network.apply_request(by_ip[src], config, asked_by)
            done.append(src)
    except BaseException:
        # put back the hosts already changed, so a refusal leaves the old topology whole
        for src in reversed(done):
            network.apply_request(by_ip[src], _current_config(before, src), asked_by)
        raise
    return matrix
