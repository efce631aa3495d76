"""Topologies: generators and the pair matrix of a graph (pure; no namespaces)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from ipaddress import IPv4Address

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netem import LinkShape, RequestError
from netem import topology as topo


def weighted_graphs(directed: bool = False) -> st.SearchStrategy[nx.Graph]:
    @st.composite
    def build(draw: st.DrawFn) -> nx.Graph:
        n = draw(st.integers(2, 8))
        graph: nx.Graph = nx.DiGraph() if directed else nx.Graph()
        graph.add_nodes_from(range(n))
        possible = list(
            itertools.permutations(range(n), 2) if directed else itertools.combinations(range(n), 2)
        )
        edges = draw(st.lists(st.sampled_from(possible), unique=True, max_size=len(possible)))
        for u, v in edges:
            graph.add_edge(
                u,
                v,
                latency_ms=draw(st.floats(0, 500, allow_nan=False)),
                loss_pct=draw(st.sampled_from([0.0, 1.0, 10.0])),
                bandwidth_bps=draw(st.sampled_from([None, 1_000_000, 5_000_000])),
            )
        return graph

    return build()


@given(weighted_graphs())
def test_undirected_matrix_is_symmetric(graph: nx.Graph) -> None:
    m = topo.pair_matrix(graph)
    for (a, b), shape in m.shapes.items():
        assert m.shapes[(b, a)].latency_ms == pytest.approx(shape.latency_ms)
    assert {(b, a) for a, b in m.unreachable} == m.unreachable


@given(weighted_graphs(directed=True))
def test_shortest_paths_satisfy_the_triangle_inequality(graph: nx.DiGraph) -> None:
    m = topo.pair_matrix(graph)
    for a, b, c in itertools.permutations(graph.nodes, 3):
        if (a, b) in m.shapes and (b, c) in m.shapes:
            assert (a, c) in m.shapes  # reachable through b
            assert m.latency(a, c) <= m.latency(a, b) + m.latency(b, c) + 1e-9


@given(weighted_graphs(directed=True))
def test_every_ordered_pair_is_either_shaped_or_unreachable(graph: nx.DiGraph) -> None:
    m = topo.pair_matrix(graph)
    pairs = set(itertools.permutations(graph.nodes, 2))
    assert set(m.shapes) | m.unreachable == pairs
    assert not set(m.shapes) & m.unreachable
    for a, b in m.unreachable:
        assert not nx.has_path(graph, a, b)
    for (a, b), shape in m.shapes.items():
        # never worse than the direct link, and equal to networkx's own shortest distance
        if graph.has_edge(a, b):
            assert shape.latency_ms <= graph.edges[a, b]["latency_ms"] + 1e-9
        assert shape.latency_ms == pytest.approx(
            nx.shortest_path_length(graph, a, b, weight="latency_ms")
        )


def test_path_shapes_combine() -> None:
    g = nx.Graph()
    g.add_edge("a", "b", latency_ms=10, jitter_ms=3, loss_pct=10, bandwidth_bps=5_000_000)
    g.add_edge("b", "c", latency_ms=20, jitter_ms=4, loss_pct=20, bandwidth_bps=2_000_000)
    g.add_edge("a", "c", latency_ms=100)
    m = topo.pair_matrix(g)
    ac = m.shapes[("a", "c")]
    assert ac.latency_ms == 30
    assert ac.jitter_ms == pytest.approx(5.0)  # sqrt(3^2 + 4^2)
    assert ac.loss_pct == pytest.approx(28.0)  # 1 - 0.9 * 0.8
    assert ac.bandwidth_bps == 2_000_000
    assert m.shapes[("a", "b")].bandwidth_bps == 5_000_000


def test_unreachable_pairs_are_reported() -> None:
    g = nx.Graph()
    g.add_edge(0, 1, latency_ms=5)
    g.add_edge(2, 3, latency_ms=5)
    m = topo.pair_matrix(g)
    assert (0, 2) in m.unreachable and (3, 1) in m.unreachable
    assert m.latency(1, 0) == 5


def test_by_address_maps_nodes_to_hosts() -> None:
    m = topo.pair_matrix(topo.ring(3, latency_ms=7))
    ips = {i: IPv4Address(f"198.18.0.{i + 1}") for i in range(3)}
    by_ip = m.by_address(ips)
    assert by_ip[(ips[0], ips[2])] == LinkShape(latency_ms=7)
    with pytest.raises(topo.TopologyError, match="no address for node"):
        m.by_address({0: ips[0]})


def test_a_self_loop_shapes_nothing() -> None:
    """It was skipped when reading the edges, then looked up as a path step: KeyError."""
    graph = nx.Graph([(0, 0, {"latency_ms": 5}), (0, 1, {"latency_ms": 7})])
    assert topo.pair_matrix(graph).latency(0, 1) == 7


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (nx.Graph([(0, 1)]), "has no latency_ms"),
        (nx.Graph([(0, 1, {"latency_ms": -1})]), "latency_ms -1 is out of range"),
        (nx.Graph([(0, 1, {"latency_ms": 1, "loss_pct": 200})]), "loss_pct 200 is out of range: 0 to 100"),
        (nx.MultiGraph([(0, 1, {"latency_ms": 1})]), "multigraphs"),
        ("not a graph", "networkx graph"),
        # each edge fits, their sum does not: a bare ShapeError naming no pair
        (nx.Graph([(0, 1, {"latency_ms": 200_000}), (1, 2, {"latency_ms": 200_000})]),
         r"^path 0 -> 2 \(2 edges\): latency_ms 400000.0 is out of range"),
    ],
)
def test_bad_graphs_are_one_line_errors(graph: object, message: str) -> None:
    with pytest.raises(topo.TopologyError, match=message) as info:
        topo.pair_matrix(graph)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert isinstance(info.value, RequestError)


def test_full_mesh_and_ring_shapes() -> None:
    mesh = topo.full_mesh(5, latency_ms=12, loss_pct=1.0)
    assert mesh.number_of_edges() == 10
    m = topo.pair_matrix(mesh)
    assert all(s == LinkShape(latency_ms=12, loss_pct=1.0) for s in m.shapes.values())
    r = topo.pair_matrix(topo.ring(6, latency_ms=10))
    assert r.latency(0, 3) == 30 and r.latency(0, 5) == 10


def test_generators_are_seeded() -> None:
    makers: list[Callable[[int], nx.Graph]] = [
        lambda s: topo.random_regular(10, 3, (1, 50), seed=s),
        lambda s: topo.small_world(12, 4, 0.3, (1, 50), seed=s),
        lambda s: topo.scale_free(12, 2, (1, 50), seed=s),
    ]
    for make in makers:
        a, b, c = make(1), make(1), make(2)
        assert nx.utils.graphs_equal(a, b)
        assert not nx.utils.graphs_equal(a, c)
        assert nx.is_connected(a)


def test_random_regular_degrees() -> None:
    g = topo.random_regular(10, 3, latency_ms=5, seed=4)
    assert {d for _, d in g.degree} == {3}
    with pytest.raises(topo.TopologyError, match="regular graph"):
        topo.random_regular(5, 3, latency_ms=5, seed=4)


def test_scale_free_has_hubs() -> None:
    g = topo.scale_free(60, 1, latency_ms=5, seed=3)
    degrees = sorted((d for _, d in g.degree), reverse=True)
    assert degrees[0] >= 5 * degrees[len(degrees) // 2]


def test_regions_take_latency_from_the_table() -> None:
    g = topo.regions(["europe", "europe", "asia", "north_america"])
    m = topo.pair_matrix(g)
    assert m.latency(0, 1) == topo.CONTINENTS[("europe", "europe")]
    assert m.latency(0, 2) == topo.CONTINENTS[("asia", "europe")]
    assert m.latency(3, 2) == topo.CONTINENTS[("asia", "north_america")]
    assert g.nodes[2]["region"] == "asia"


def test_regions_from_counts_are_shuffled_by_seed() -> None:
    counts = {"europe": 4, "asia": 4}
    a = [r for _, r in topo.regions(counts, seed=1).nodes(data="region")]
    b = [r for _, r in topo.regions(counts, seed=1).nodes(data="region")]
    assert a == b and sorted(a) == ["asia"] * 4 + ["europe"] * 4
    plain = [r for _, r in topo.regions(counts).nodes(data="region")]
    assert plain == ["europe"] * 4 + ["asia"] * 4


def test_custom_region_table_and_missing_entry() -> None:
    table = {("x", "x"): 1.0, ("x", "y"): 50.0, ("y", "y"): 2.0}
    m = topo.pair_matrix(topo.regions(["x", "y", "y"], table))
    # y -> y directly is 2 ms, cheaper than through x
    assert m.latency(1, 2) == 2.0 and m.latency(2, 0) == 50.0
    with pytest.raises(topo.TopologyError, match="no entry for x - z"):
        topo.regions(["x", "z"], table)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: topo.ring(2, 5), "n must be"),
        (lambda: topo.full_mesh(3, -5), "latency_ms must be"),
        (lambda: topo.full_mesh(3, (9, 1)), "low > high"),
        (lambda: topo.full_mesh(3, 5, wobble=1), "unknown link shape field"),
        (lambda: topo.small_world(10, 4, 1.5, 5, seed=1), "probability"),
        (lambda: topo.scale_free(5, 5, 5, seed=1), "m must be below"),
        (lambda: topo.scale_free(5, 1, 5, seed="x"), "seed must be"),  # type: ignore[arg-type]
        # a ValueError or AttributeError of unpacking
        (lambda: topo.regions(["a", "b"], {"a": 1}), "keys are \\(region, region\\) pairs, not 'a'"),  # type: ignore[dict-item]
        (lambda: topo.regions(["a", "b"], {("a", "b", "c"): 5}), "pairs, not \\('a', 'b', 'c'\\)"),  # type: ignore[dict-item]
        (lambda: topo.regions(["a", "b"], [("a", "b")]), "is a mapping of .* not list"),  # type: ignore[arg-type]
    ],
)
def test_bad_generator_arguments(call: object, message: str) -> None:
    with pytest.raises(topo.TopologyError, match=message):
        call()  # type: ignore[operator]


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 30), st.integers(0, 2**32))
def test_small_world_latencies_stay_within_the_edge_range(n: int, seed: int) -> None:
    m = topo.pair_matrix(topo.small_world(n, 2, 0.2, (5, 10), seed=seed))
    assert not m.unreachable
    for shape in m.shapes.values():
        assert 5 <= shape.latency_ms <= 10 * (n - 1)
        assert math.isfinite(shape.latency_ms)
