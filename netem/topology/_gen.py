"""Graph generators for common topologies; every random choice comes from a given seed.

Each returns an undirected `networkx.Graph` on nodes 0..n-1 whose edges carry
`latency_ms` (and any extra `LinkShape` fields given as keyword arguments), ready for
`pair_matrix`. `latency_ms` is a number, or a (low, high) range drawn uniformly per edge
from the seeded generator.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx

from netem._shape import LinkShape, ShapeError
from netem.topology._matrix import TopologyError

Latency = float | tuple[float, float]

CONTINENTS: Mapping[tuple[str, str], float] = {
    # one-way latencies in ms (half the typical round trip between well-connected cities)
    ("africa", "africa"): 20.0,
    ("africa", "asia"): 110.0,
    ("africa", "europe"): 50.0,
    ("africa", "north_america"): 90.0,
    ("africa", "oceania"): 160.0,
    ("africa", "south_america"): 150.0,
    ("asia", "asia"): 20.0,
    ("asia", "europe"): 85.0,
    ("asia", "north_america"): 75.0,
    ("asia", "oceania"): 60.0,
    ("asia", "south_america"): 150.0,
    ("europe", "europe"): 10.0,
    ("europe", "north_america"): 40.0,
    ("europe", "oceania"): 130.0,
    ("europe", "south_america"): 100.0,
    ("north_america", "north_america"): 15.0,
    ("north_america", "oceania"): 80.0,
    ("north_america", "south_america"): 60.0,
    ("oceania", "oceania"): 15.0,
    ("oceania", "south_america"): 140.0,
    ("south_america", "south_america"): 15.0,
}
"""A region latency table for `regions`: keys are unordered pairs of continent names."""


def _check_count(n: object, name: str = "n", minimum: int = 2) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise TopologyError(f"{name} must be a whole number >= {minimum}, not {n!r}")
    return n


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TopologyError(f"seed must be an integer, not {seed!r}")
    return seed


def _check_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    try:
        LinkShape(**{"latency_ms": 1.0, **extra})
    except TypeError as exc:
        raise TopologyError(f"unknown link shape field: {exc}") from None
    except ShapeError as exc:
        raise TopologyError(str(exc)) from None
    if "latency_ms" in extra:
        raise TopologyError("give latency_ms as the latency argument, not as an extra field")
    return dict(extra)


def _latency_sampler(latency: Latency, rng: random.Random) -> Any:
    if isinstance(latency, tuple):
        if len(latency) != 2:
            raise TopologyError(f"a latency range is (low, high), not {latency!r}")
        low, high = (_check_latency(x) for x in latency)
        if low > high:
            raise TopologyError(f"latency range {latency!r} has low > high")
        return lambda: rng.uniform(low, high)
    value = _check_latency(latency)
    return lambda: value


def _check_latency(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TopologyError(f"latency_ms must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise TopologyError(f"latency_ms must be a finite number >= 0, not {value!r}")
    return float(value)


def _decorate(graph: nx.Graph, latency: Latency, seed: int, extra: Mapping[str, Any]) -> nx.Graph:
    fields = _check_extra(extra)
    # a separate stream from the structure's, so the same seed gives the same latencies
    draw = _latency_sampler(latency, random.Random(f"latency-{seed}"))
    for u, v in sorted(graph.edges()):
        graph.edges[u, v].update(latency_ms=draw(), **fields)
    return graph


def full_mesh(n: int, latency_ms: Latency, *, seed: int = 0, **shape: Any) -> nx.Graph:
    """Every node linked to every other."""
    return _decorate(nx.complete_graph(_check_count(n)), latency_ms, _check_seed(seed), shape)


def ring(n: int, latency_ms: Latency, *, seed: int = 0, **shape: Any) -> nx.Graph:
    """Node i linked to i+1, and the last to the first."""
    return _decorate(
        nx.cycle_graph(_check_count(n, minimum=3)), latency_ms, _check_seed(seed), shape
    )


def random_regular(
    n: int, degree: int, latency_ms: Latency, *, seed: int, **shape: Any
) -> nx.Graph:
    """A random graph where every node has `degree` links (n * degree must be even)."""
    _check_count(n)
    _check_count(degree, "degree", 1)
    if degree >= n or (n * degree) % 2:
        raise TopologyError(
            f"no {degree}-regular graph on {n} nodes (need degree < n, n*degree even)"
        )
    graph = nx.random_regular_graph(degree, n, seed=_check_seed(seed))
    return _decorate(graph, latency_ms, seed, shape)


def small_world(
    n: int, k: int, p: float, latency_ms: Latency, *, seed: int, **shape: Any
) -> nx.Graph:
    """Watts-Strogatz: a ring where each node links to its k nearest, each link rewired
    with probability p; retried until connected."""
    _check_count(n, minimum=3)
    _check_count(k, "k", 2)
    if k >= n:
        raise TopologyError(f"k must be below n ({n}), not {k}")
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise TopologyError(f"p is a probability (0 to 1), not {p!r}")
    try:
        graph = nx.connected_watts_strogatz_graph(n, k, p, tries=100, seed=_check_seed(seed))
    except nx.NetworkXError as exc:
        raise TopologyError(f"small world: {exc}") from None
    return _decorate(graph, latency_ms, seed, shape)


def scale_free(n: int, m: int, latency_ms: Latency, *, seed: int, **shape: Any) -> nx.Graph:
    """Barabasi-Albert: each new node links to m existing ones, preferring the well linked."""
    _check_count(n)
    _check_count(m, "m", 1)
    if m >= n:
        raise TopologyError(f"m must be below n ({n}), not {m}")
    graph = nx.barabasi_albert_graph(n, m, seed=_check_seed(seed))
    return _decorate(graph, latency_ms, seed, shape)


def regions(
    assignment: Sequence[str] | Mapping[str, int],
    table: Mapping[tuple[str, str], float] = CONTINENTS,
    *,
    seed: int | None = None,
    **shape: Any,
) -> nx.Graph:
    """A full mesh of hosts placed in regions, each link's latency from `table`.

    assignment: the region of each node in order (["europe", "asia", ...]), or counts per
    region ({"europe": 3, "asia": 2}), which with a `seed` are shuffled over the nodes (in
    the order given without one). table: (region, region) -> one-way latency (ms), either
    order of the pair; a pair of the same region is the intra-region latency. Nodes carry
    a `region` attribute.
    """
    if isinstance(assignment, Mapping):
        placed: list[str] = []
        for region, count in assignment.items():
            placed += [region] * _check_count(count, f"count of {region!r}", 0)
        if seed is not None:
            random.Random(_check_seed(seed)).shuffle(placed)
    elif isinstance(assignment, Sequence) and not isinstance(assignment, str):
        placed = list(assignment)
    else:
        raise TopologyError(f"regions are a list or a mapping of counts, not {assignment!r}")
    _check_count(len(placed), "the number of hosts")
    if not isinstance(table, Mapping):
        raise TopologyError(f"the latency table is a mapping of (region, region) pairs to "
                            f"ms, not {type(table).__name__}")
    lookup: dict[frozenset[str], float] = {}
    for pair, value in table.items():
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TopologyError(f"the latency table's keys are (region, region) pairs, not "
                                f"{pair!r}")
        lookup[frozenset(pair)] = _check_latency(value)
    fields = _check_extra(shape)
    graph = nx.Graph()
    for node, region in enumerate(placed):
        graph.add_node(node, region=region)
    for u, v in itertools.combinations(range(len(placed)), 2):
        key = frozenset((placed[u], placed[v]))
        if key not in lookup:
            raise TopologyError(f"the latency table has no entry for {placed[u]} - {placed[v]}")
        graph.add_edge(u, v, latency_ms=lookup[key], **fields)
    return graph
