"""Topologies: a networkx graph whose edges carry link shapes becomes the pair matrix.

Every edge has `latency_ms` and optionally other `LinkShape` fields (jitter_ms, loss_pct,
bandwidth_bps, corrupt_pct, duplicate_pct, reorder_pct); other attributes are ignored.
Between every two nodes the path of least total latency is taken and its edges combined:

- latency adds up;
- jitter adds up in quadrature (independent variations: sqrt of the sum of squares);
- loss, corruption, duplication and reordering compose as independent chances,
  1 - prod(1 - p);
- bandwidth is the narrowest edge's (None when no edge on the path is capped).

An undirected graph gives both directions the same shape; in a `DiGraph` an edge u -> v
shapes only that direction.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Hashable, Iterable, Mapping
from ipaddress import IPv4Address
from typing import Any

import networkx as nx

from netem._errors import RequestError
from netem._shape import LinkShape, ShapeError

Node = Hashable
NodePair = tuple[Node, Node]

_SHAPE_FIELDS = tuple(f.name for f in dataclasses.fields(LinkShape))
_CHANCES = ("loss_pct", "corrupt_pct", "duplicate_pct", "reorder_pct")


class TopologyError(RequestError):
    """A graph or generator argument that cannot make a topology; the message names it."""


@dataclasses.dataclass(frozen=True, slots=True)
class PairMatrix:
    """The shape of every direction between two nodes of a graph.

    shapes: (src node, dst node) -> LinkShape, for every ordered pair with a path.
    unreachable: the ordered pairs with no path (a partitioned graph).
    """

    shapes: Mapping[NodePair, LinkShape]
    unreachable: frozenset[NodePair]

    def latency(self, src: Node, dst: Node) -> float:
        """The one-way latency (ms) from src to dst; KeyError if there is no path."""
        return self.shapes[(src, dst)].latency_ms

    def by_address(
        self, addresses: Mapping[Any, IPv4Address]
    ) -> dict[tuple[IPv4Address, IPv4Address], LinkShape]:
        """The matrix keyed by the hosts' addresses (`addresses`: node -> host address),
        ready for a backend's `apply`. Every node must have an address."""
        missing = sorted({n for pair in self.shapes for n in pair} - set(addresses), key=repr)
        if missing:
            raise TopologyError(f"no address for node(s) {', '.join(map(repr, missing))}")
        return {(addresses[s], addresses[d]): shape for (s, d), shape in self.shapes.items()}


def _edge_shape(u: Node, v: Node, data: Mapping[str, Any]) -> LinkShape:
    if "latency_ms" not in data:
        raise TopologyError(f"edge ({u!r}, {v!r}) has no latency_ms")
    fields = {k: data[k] for k in _SHAPE_FIELDS if k in data}
    try:
        return LinkShape(**fields)
    except ShapeError as exc:
        raise TopologyError(f"edge ({u!r}, {v!r}): {exc}") from None


def combine(shapes: Iterable[LinkShape]) -> LinkShape:
    """The shape of a path made of links with `shapes`, in order (see the module doc)."""
    shapes = list(shapes)
    if len(shapes) == 1:
        return shapes[0]  # exactly the link's own (no float round-off)
    latency = 0.0
    jitter_sq = 0.0
    keep = dict.fromkeys(_CHANCES, 1.0)
    bandwidth: int | None = None
    for s in shapes:
        latency += s.latency_ms
        jitter_sq += s.jitter_ms**2
        for name in _CHANCES:
            keep[name] *= 1 - getattr(s, name) / 100
        if s.bandwidth_bps is not None:
            bandwidth = s.bandwidth_bps if bandwidth is None else min(bandwidth, s.bandwidth_bps)
    # rounded so that 1 - (1 - p) gives p back
    chances = {name: min(100.0, max(0.0, round((1 - keep[name]) * 100, 9))) for name in _CHANCES}
    if not latency:
        chances["reorder_pct"] = 0.0  # netem reorders by skipping the delay: none to skip
    return LinkShape(
        latency_ms=latency, jitter_ms=math.sqrt(jitter_sq), bandwidth_bps=bandwidth, **chances
    )


def pair_matrix(graph: nx.Graph) -> PairMatrix:
    """The `PairMatrix` of `graph`: for every ordered pair of distinct nodes, the path of
    least latency combined into one shape; pairs without a path listed as unreachable."""
    if not isinstance(graph, nx.Graph):
        raise TopologyError(f"a topology is a networkx graph, not {type(graph).__name__}")
    if graph.is_multigraph():
        raise TopologyError("multigraphs are not supported: merge parallel edges first")
    edge_shapes: dict[NodePair, LinkShape] = {}
    for u, v, data in graph.edges(data=True):
        if u == v:
            continue  # a self-loop shapes nothing between hosts
        shape = _edge_shape(u, v, data)
        edge_shapes[(u, v)] = shape
        if not graph.is_directed():
            edge_shapes[(v, u)] = shape

    def weight(u: Node, v: Node, _data: Mapping[str, Any]) -> float | None:
        shape = edge_shapes.get((u, v))
        return None if shape is None else shape.latency_ms  # None: a self-loop, not taken

    shapes: dict[NodePair, LinkShape] = {}
    unreachable: set[NodePair] = set()
    nodes = list(graph.nodes)
    for src in nodes:
        _dist, paths = nx.single_source_dijkstra(graph, src, weight=weight)
        for dst in nodes:
            if dst == src:
                continue
            path = paths.get(dst)
            if path is None:
                unreachable.add((src, dst))
                continue
            try:
                shapes[(src, dst)] = combine(edge_shapes[(a, b)]
                                             for a, b in itertools.pairwise(path))
            except ShapeError as exc:  # each edge fits, their sum may not
                raise TopologyError(f"path {src!r} -> {dst!r} ({len(path) - 1} edges): "
                                    f"{exc}") from None
    return PairMatrix(shapes, frozenset(unreachable))
