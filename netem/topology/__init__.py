"""Topologies from networkx graphs: generators, and the pair matrix of a graph.

from netem import topology
g = topology.small_world(20, k=4, p=0.1, latency_ms=(5, 40), seed=7)
m = topology.pair_matrix(g)          # shortest-latency path between every two nodes
net_matrix = m.by_address({i: host.ip for i, host in enumerate(hosts)})
"""

from netem.topology._apply import apply_topology, requests_for
from netem.topology._gen import (
    CONTINENTS,
    full_mesh,
    random_regular,
    regions,
    ring,
    scale_free,
    small_world,
)
from netem.topology._matrix import PairMatrix, TopologyError, combine, pair_matrix

__all__ = [
    "CONTINENTS",
    "PairMatrix",
    "TopologyError",
    "apply_topology",
    "combine",
    "full_mesh",
    "pair_matrix",
    "random_regular",
    "regions",
    "requests_for",
    "ring",
    "scale_free",
    "small_world",
]
