"""The node's gRPC API and the PoET's gateway client, over grpclib (asyncio only)."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Server, Stream

from ._mesh import LayerState
from ._node import Node
from ._proto import spacemesh_grpc as rpc
from ._proto import spacemesh_pb2 as pb
from ._transport import split_address


def _activation(atx_id: str, atx: dict[str, Any]) -> pb.Activation:
    return pb.Activation(
        id=bytes.fromhex(atx_id),
        target_epoch=int(atx["target_epoch"]),
        smesher_id=bytes.fromhex(atx["smesher"]),
        num_units=int(atx["num_units"]),
        poet_round=int(atx["poet"]["round"]),
    )


def _layer(node: Node, state: LayerState) -> pb.Layer:
    blocks = []
    if state.block is not None:
        blocks.append(
            pb.Block(
                id=bytes.fromhex(state.block_id),
                proposals=[bytes.fromhex(p) for p in state.block["proposals"]],
                rewards=[
                    pb.Reward(smesher_id=bytes.fromhex(s), amount=int(a))
                    for s, a in state.block["rewards"]
                ],
            )
        )
    epoch = node.config.mesh.epoch(state.number)
    atxs = sorted(node.mesh.atxs_for_epoch(epoch).items())
    return pb.Layer(
        number=state.number,
        status=int(state.status),  # type: ignore[arg-type]
        hash=state.hash,
        blocks=blocks,
        activations=[_activation(i, a) for i, a in atxs],
        state_root=state.state_root,
    )


class _NodeService(rpc.NodeServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def Status(self, stream: Stream[pb.Empty, pb.StatusResponse]) -> None:
        await stream.recv_message()
        await stream.send_message(pb.StatusResponse(**self._node.status()))


class _MeshService(rpc.MeshServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def CurrentLayer(self, stream: Stream[pb.Empty, pb.CurrentLayerResponse]) -> None:
        await stream.recv_message()
        await stream.send_message(pb.CurrentLayerResponse(layer=self._node.current_layer()))

    async def LayersQuery(
        self, stream: Stream[pb.LayersQueryRequest, pb.LayersQueryResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        states = self._node.layers()
        end = min(request.end_layer, self._node.current_layer())
        layers = []
        for number in range(request.start_layer, end + 1):
            if number < len(states):
                layers.append(_layer(self._node, states[number]))
            else:
                layers.append(pb.Layer(number=number))
        await stream.send_message(pb.LayersQueryResponse(layers=layers))

    async def Genesis(self, stream: Stream[pb.Empty, pb.GenesisResponse]) -> None:
        await stream.recv_message()
        cfg = self._node.config
        await stream.send_message(
            pb.GenesisResponse(
                genesis_time=cfg.genesis,
                layer_duration=cfg.layer_duration,
                layers_per_epoch=cfg.mesh.layers_per_epoch,
            )
        )


class _SmesherService(rpc.SmesherServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def IsSmeshing(self, stream: Stream[pb.Empty, pb.IsSmeshingResponse]) -> None:
        await stream.recv_message()
        await stream.send_message(pb.IsSmeshingResponse(is_smeshing=self._node.config.smeshing))

    async def SmesherID(self, stream: Stream[pb.Empty, pb.SmesherIDResponse]) -> None:
        await stream.recv_message()
        await stream.send_message(pb.SmesherIDResponse(public_key=self._node.signer.public_key))

    async def SmeshingStatus(self, stream: Stream[pb.Empty, pb.SmeshingStatusResponse]) -> None:
        await stream.recv_message()
        node = self._node
        await stream.send_message(
            pb.SmeshingStatusResponse(
                is_smeshing=node.config.smeshing,
                atxs_published=node.atxs_published,
                last_poet_round=node.last_poet_round,
                last_error=node.last_error,
            )
        )


class _ActivationService(rpc.ActivationServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def Query(
        self, stream: Stream[pb.ActivationsQueryRequest, pb.ActivationsQueryResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        mesh = self._node.mesh
        atxs = mesh.atxs if request.all_epochs else mesh.atxs_for_epoch(request.target_epoch)
        await stream.send_message(
            pb.ActivationsQueryResponse(activations=[_activation(i, a) for i, a in sorted(atxs.items())])
        )

    async def Get(self, stream: Stream[pb.ActivationRequest, pb.Activation]) -> None:
        from grpclib.const import Status

        request = await stream.recv_message()
        assert request is not None
        atx = self._node.mesh.atxs.get(request.id.hex())
        if atx is None:
            raise GRPCError(Status.NOT_FOUND, f"no ATX {request.id.hex()[:16]}")
        await stream.send_message(_activation(request.id.hex(), atx))


class _GatewayService(rpc.GatewayServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def BroadcastPoet(
        self, stream: Stream[pb.BroadcastPoetRequest, pb.BroadcastPoetResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        accepted, error = self._node.broadcast_poet(request.data)
        await stream.send_message(pb.BroadcastPoetResponse(accepted=accepted, error=error))


def node_services(node: Node) -> list[Any]:
    """The grpclib handlers of a node's API."""
    return [
        _NodeService(node),
        _MeshService(node),
        _SmesherService(node),
        _ActivationService(node),
        _GatewayService(node),
    ]


async def serve_grpc(
    node: Node,
    address: str,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the node's API on ``address`` until cancelled (asyncio event loop only)."""
    host, port = split_address(address)
    server = Server(node_services(node))
    await server.start(host, port)
    task_status.started()
    try:
        await anyio.sleep_forever()
    finally:
        server.close()
        with anyio.CancelScope(shield=True):
            await server.wait_closed()


class GrpcGatewayBroadcaster:
    """The PoET's side of ``GatewayService.BroadcastPoet`` (a PoET ``Broadcaster``)."""

    def __init__(self, timeout: float = 3.0) -> None:
        self._timeout = timeout
        self._channels: dict[str, Channel] = {}

    async def __call__(self, gateway: str, data: bytes) -> bool:
        channel = self._channels.get(gateway)
        if channel is None:
            host, port = split_address(gateway)
            channel = self._channels[gateway] = Channel(host, port)
        stub = rpc.GatewayServiceStub(channel)
        try:
            reply = await stub.BroadcastPoet(pb.BroadcastPoetRequest(data=data), timeout=self._timeout)
        except (GRPCError, StreamTerminatedError) as exc:
            raise OSError(f"gateway {gateway}: {exc}") from None
        return bool(reply.accepted)

    def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                channel.close()
        self._channels.clear()
