"""The real-network assembly: wall clock, TCP gossip, HTTP and gRPC adapters (asyncio)."""

from __future__ import annotations

import anyio

from ._clock import Clock, WallClock
from ._grpc import GrpcGatewayBroadcaster, serve_grpc
from ._http import metrics_app, poet_app, serve_http
from ._node import Node, NodeConfig
from ._poet import PoetConfig, PoetService
from ._poet_client import HttpPoetClient
from ._transport import TcpTransport


async def serve_poet(
    config: PoetConfig,
    listen: str,
    gateways: list[str] | None = None,
    *,
    clock: Clock | None = None,
    task_status: anyio.abc.TaskStatus[PoetService] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run a PoET with its HTTP API on ``listen``; started at once when ``gateways`` is given.
    Its time is ``clock`` (default: Unix time)."""
    broadcaster = GrpcGatewayBroadcaster()
    service = PoetService(config, clock or WallClock(), broadcaster)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(serve_http, listen, poet_app(service))
            tg.start_soon(service.run)
            if gateways:
                service.start(gateways)
            task_status.started(service)
    finally:
        broadcaster.close()


async def serve_node(
    config: NodeConfig,
    *,
    grpc_address: str,
    metrics_address: str | None = None,
    poets: list[str] = (),  # type: ignore[assignment]
    clock: Clock | None = None,
    task_status: anyio.abc.TaskStatus[Node] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node: TCP gossip on ``config.listen``, its gRPC API and its metrics endpoint.
    Its time is ``clock`` (default: Unix time)."""
    clients = [HttpPoetClient(p) for p in poets]
    node = Node(config, transport=TcpTransport(), clock=clock or WallClock(),
                poets=list(clients))
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(serve_grpc, node, grpc_address)
            if metrics_address:
                assert node.metrics is not None  # a node keeps them unless told not to
                await tg.start(serve_http, metrics_address, metrics_app(node.metrics))
            await tg.start(node.run)
            task_status.started(node)
    finally:
        with anyio.CancelScope(shield=True):
            for client in clients:
                await client.aclose()
