"""A Spacemesh-style network under test: PoET servers, gateway nodes, smeshing miners.

The protocol code (:class:`PoetService`, :class:`Node`) depends only on anyio, an injected
:class:`Transport` and an injected :class:`Clock`. Real runs use :class:`TcpTransport` and
:class:`WallClock` behind gRPC (grpclib), HTTP (h11) and Prometheus adapters
(:func:`serve_node`, :func:`serve_poet`); simulations use :class:`MemoryNetwork` and
:class:`LoopClock` (virtual under trio's ``MockClock``), see :func:`memory_cluster`.

Processes: ``python -m scenarios.spacemesh.poet`` and ``python -m scenarios.spacemesh.node``.
The harness plan is ``manifest.toml`` / :mod:`scenarios.spacemesh.plan`.
"""

from ._clock import Clock, HarnessClock, LoopClock, WallClock
from ._cluster import MemoryCluster, memory_cluster
from ._gossip import Gossip, message_id
from ._grpc import GrpcGatewayBroadcaster, node_services, serve_grpc
from ._http import metrics_app, poet_app, serve_http
from ._memnet import MemoryLink, MemoryNetwork, MemoryTransport
from ._merkle import hash_chain, merkle_proof, merkle_root, verify_merkle_proof
from ._mesh import LayerState, LayerStatus, Mesh, MeshParams
from ._metrics import NodeMetrics
from ._node import TOPICS, Node, NodeConfig
from ._poet import BroadcastResult, PoetConfig, PoetError, PoetService, verify_poet_proof
from ._poet_client import HttpPoetClient, LocalPoetClient, PoetClient
from ._services import serve_node, serve_poet
from ._trace import Tracer
from ._transport import Connection, TcpTransport, Transport

__all__ = [
    "TOPICS",
    "BroadcastResult",
    "Clock",
    "Connection",
    "Gossip",
    "GrpcGatewayBroadcaster",
    "HarnessClock",
    "HttpPoetClient",
    "LayerState",
    "LayerStatus",
    "LocalPoetClient",
    "LoopClock",
    "MemoryCluster",
    "MemoryLink",
    "MemoryNetwork",
    "MemoryTransport",
    "Mesh",
    "MeshParams",
    "Node",
    "NodeConfig",
    "NodeMetrics",
    "PoetClient",
    "PoetConfig",
    "PoetError",
    "PoetService",
    "TcpTransport",
    "Tracer",
    "Transport",
    "WallClock",
    "hash_chain",
    "memory_cluster",
    "merkle_proof",
    "merkle_root",
    "message_id",
    "metrics_app",
    "node_services",
    "poet_app",
    "serve_grpc",
    "serve_http",
    "serve_node",
    "serve_poet",
    "verify_merkle_proof",
    "verify_poet_proof",
]
