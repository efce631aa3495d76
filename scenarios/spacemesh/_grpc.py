"""The node's gRPC API (spacemesh.v1, wire-compatible with go-spacemesh's; plus our extras in
spacemesh.harness.v1) and the PoET's gateway client, over grpclib (asyncio only).

Streams poll the node's state (every `STREAM_POLL_S`) and send what changed since the last
look, from the moment the client subscribed, as go-spacemesh's event streams do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import anyio
from google.protobuf import empty_pb2
from grpclib.client import Channel
from grpclib.const import Status as Code
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Server, Stream

from ._codec import canonical
from ._mesh import LayerState
from ._node import Node
from ._proto import harness_grpc as hrpc
from ._proto import harness_pb2 as hpb
from ._proto import spacemesh_grpc as rpc
from ._proto import spacemesh_pb2 as pb
from ._transport import split_address
from ._txs import address_of

STREAM_POLL_S = 0.2
LAYER = pb.Layer
APPROVED, CONFIRMED, APPLIED = (
    LAYER.LAYER_STATUS_APPROVED, LAYER.LAYER_STATUS_CONFIRMED, LAYER.LAYER_STATUS_APPLIED
)  # fmt: skip
TX_STATES = {
    "unknown": pb.TransactionState.TRANSACTION_STATE_UNSPECIFIED,
    "rejected": pb.TransactionState.TRANSACTION_STATE_REJECTED,
    "mempool": pb.TransactionState.TRANSACTION_STATE_MEMPOOL,
    "included": pb.TransactionState.TRANSACTION_STATE_MESH,
    "applied": pb.TransactionState.TRANSACTION_STATE_PROCESSED,
}
MALFEASANCE_KINDS = {
    "atx": pb.MalfeasanceProof.MALFEASANCE_ATX,
    "ballot": pb.MalfeasanceProof.MALFEASANCE_BALLOT,
    "hare": pb.MalfeasanceProof.MALFEASANCE_HARE,
}
FLAG_REWARD, FLAG_ACCOUNT, FLAG_HASH = 2, 4, 8  # GlobalStateDataFlag / AccountDataFlag bits


def api_status(state: LayerState) -> int:
    """A decided layer's status in LayersQuery: APPROVED by the hare, CONFIRMED by the
    tortoise (our LayerStatus keeps the API's values 1 and 2)."""
    return int(state.status)


# -- message builders -----------------------------------------------------------------------


def activation(node: Node, atx_id: str, atx: dict[str, Any]) -> pb.Activation:
    """An ATX as spacemesh.v1.Activation (layer: the first layer of its publish epoch)."""
    publish = max(0, int(atx["target_epoch"]) - 1)
    prev = [pb.ActivationId(id=bytes.fromhex(atx["prev"]))] if atx.get("prev") else []
    return pb.Activation(
        id=pb.ActivationId(id=bytes.fromhex(atx_id)),
        layer=pb.LayerNumber(number=publish * node.config.mesh.layers_per_epoch),
        smesher_id=pb.SmesherId(id=bytes.fromhex(atx["smesher"])),
        coinbase=pb.AccountId(address=address_of(atx["smesher"])),
        num_units=int(atx["num_units"]),
        previous_atxs=prev,
    )


def layer_message(node: Node, state: LayerState, status: int) -> pb.Layer:
    """A decided layer as spacemesh.v1.Layer."""
    blocks = []
    if state.block is not None:
        txs = [pb.Transaction(id=bytes.fromhex(t)) for t in state.block.get("txs", [])]
        blocks.append(pb.Block(id=bytes.fromhex(state.block_id), transactions=txs))
    epoch = node.config.mesh.epoch(state.number)
    atxs = sorted(node.mesh.atxs_for_epoch(epoch).items())
    return pb.Layer(
        number=pb.LayerNumber(number=state.number),
        status=status,  # type: ignore[arg-type]
        hash=state.hash,
        blocks=blocks,
        activations=[activation(node, i, a) for i, a in atxs],
        root_state_hash=state.state_root,
    )


def rewards(state: LayerState) -> Iterator[pb.Reward]:
    """The rewards a decided layer's block pays."""
    if state.block is None:
        return
    for smesher, amount in state.block["rewards"]:
        yield pb.Reward(
            layer=pb.LayerNumber(number=state.number),
            total=pb.Amount(value=int(amount)),
            layer_reward=pb.Amount(value=int(amount)),
            layer_computed=pb.LayerNumber(number=state.number),
            coinbase=pb.AccountId(address=address_of(smesher)),
            smesher=pb.SmesherId(id=bytes.fromhex(smesher)),
        )


def account_message(address: str, balance: int, nonce: int) -> pb.Account:
    """An account's state (current = projected: no pending transactions are projected)."""
    state = pb.AccountState(counter=nonce, balance=pb.Amount(value=balance))
    return pb.Account(
        account_id=pb.AccountId(address=address), state_current=state, state_projected=state
    )


def malfeasance_message(proof: dict[str, Any], include_proof: bool) -> pb.MalfeasanceProof:
    """One of `Node.malfeasance_proofs()` as spacemesh.v1.MalfeasanceProof."""
    return pb.MalfeasanceProof(
        smesher_id=pb.SmesherId(id=bytes.fromhex(proof["smesher"])),
        layer=pb.LayerNumber(number=int(proof.get("layer", 0))),
        kind=MALFEASANCE_KINDS.get(proof.get("kind", ""), 0),  # type: ignore[arg-type]
        debug_info=f"{proof.get('kind', '?')} equivocation",
        proof=canonical(proof.get("proof", {})) if include_proof else b"",
    )


def _proof_key(proof: dict[str, Any]) -> tuple[str, str, int]:
    return (proof["smesher"], str(proof.get("kind", "")), int(proof.get("layer", 0)))


# -- spacemesh.v1 services ------------------------------------------------------------------


class _NodeService(rpc.NodeServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def Status(self, stream: Stream[pb.StatusRequest, pb.StatusResponse]) -> None:
        await stream.recv_message()
        st = self._node.status()
        await stream.send_message(
            pb.StatusResponse(
                status=pb.NodeStatus(
                    connected_peers=int(st["connected_peers"]),
                    is_synced=bool(st["is_synced"]),
                    synced_layer=pb.LayerNumber(number=int(st["synced_layer"])),
                    top_layer=pb.LayerNumber(number=int(st["top_layer"])),
                    verified_layer=pb.LayerNumber(number=int(st["verified_layer"])),
                )
            )
        )


class _MeshService(rpc.MeshServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def GenesisTime(
        self, stream: Stream[pb.GenesisTimeRequest, pb.GenesisTimeResponse]
    ) -> None:
        await stream.recv_message()
        value = int(self._node.config.genesis)
        await stream.send_message(pb.GenesisTimeResponse(unixtime=pb.SimpleInt(value=value)))

    async def CurrentLayer(
        self, stream: Stream[pb.CurrentLayerRequest, pb.CurrentLayerResponse]
    ) -> None:
        await stream.recv_message()
        layer = pb.LayerNumber(number=self._node.current_layer())
        await stream.send_message(pb.CurrentLayerResponse(layernum=layer))

    async def CurrentEpoch(
        self, stream: Stream[pb.CurrentEpochRequest, pb.CurrentEpochResponse]
    ) -> None:
        await stream.recv_message()
        epoch = self._node.config.mesh.epoch(self._node.current_layer())
        await stream.send_message(pb.CurrentEpochResponse(epochnum=pb.EpochNumber(number=epoch)))

    async def EpochNumLayers(
        self, stream: Stream[pb.EpochNumLayersRequest, pb.EpochNumLayersResponse]
    ) -> None:
        await stream.recv_message()
        n = pb.LayerNumber(number=self._node.config.mesh.layers_per_epoch)
        await stream.send_message(pb.EpochNumLayersResponse(numlayers=n))

    async def LayerDuration(
        self, stream: Stream[pb.LayerDurationRequest, pb.LayerDurationResponse]
    ) -> None:
        await stream.recv_message()
        value = int(self._node.config.layer_duration)
        await stream.send_message(pb.LayerDurationResponse(duration=pb.SimpleInt(value=value)))

    async def LayersQuery(
        self, stream: Stream[pb.LayersQueryRequest, pb.LayersQueryResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        node = self._node
        states = node.layers()
        end = min(request.end_layer.number, node.current_layer())
        layers = []
        for number in range(request.start_layer.number, end + 1):
            if number < len(states):
                state = states[number]
                layers.append(layer_message(node, state, api_status(state)))
            else:
                layers.append(pb.Layer(number=pb.LayerNumber(number=number)))
        await stream.send_message(pb.LayersQueryResponse(layer=layers))

    async def LayerStream(
        self, stream: Stream[pb.LayerStreamRequest, pb.LayerStreamResponse]
    ) -> None:
        await stream.recv_message()
        node = self._node
        seen = {s.number: (api_status(s), s.hash) for s in node.layers()}
        while True:
            await anyio.sleep(STREAM_POLL_S)
            for state in node.layers():
                status, before = api_status(state), seen.get(state.number)
                if before == (status, state.hash):
                    continue
                seen[state.number] = (status, state.hash)
                # Hare output is approved, then applied; the tortoise confirms (again
                # applied first when it chose another block than we had applied).
                events = [APPROVED, APPLIED] if status == APPROVED else [APPLIED, CONFIRMED]
                if before is not None and before[1] == state.hash:
                    events = [CONFIRMED]
                for event in events:
                    msg = layer_message(node, state, event)
                    await stream.send_message(pb.LayerStreamResponse(layer=msg))

    async def EpochStream(
        self, stream: Stream[pb.EpochStreamRequest, pb.EpochStreamResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        for atx_id in sorted(self._node.mesh.atxs_for_epoch(request.epoch + 1)):
            msg = pb.EpochStreamResponse(id=pb.ActivationId(id=bytes.fromhex(atx_id)))
            await stream.send_message(msg)

    async def MalfeasanceQuery(
        self, stream: Stream[pb.MalfeasanceRequest, pb.MalfeasanceResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        try:
            bytes.fromhex(request.smesher_hex)
        except ValueError:
            raise GRPCError(Code.INVALID_ARGUMENT, "smesher_hex is not hex") from None
        for proof in self._node.malfeasance_proofs():
            if proof["smesher"] == request.smesher_hex.lower():
                msg = malfeasance_message(proof, request.include_proof)
                await stream.send_message(pb.MalfeasanceResponse(proof=msg))
                return
        await stream.send_message(pb.MalfeasanceResponse())

    async def MalfeasanceStream(
        self, stream: Stream[pb.MalfeasanceStreamRequest, pb.MalfeasanceStreamResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        sent: set[tuple[str, str, int]] = set()
        while True:  # those known first, then each new one
            for proof in self._node.malfeasance_proofs():
                if (key := _proof_key(proof)) not in sent:
                    sent.add(key)
                    msg = malfeasance_message(proof, request.include_proof)
                    await stream.send_message(pb.MalfeasanceStreamResponse(proof=msg))
            await anyio.sleep(STREAM_POLL_S)


class _GlobalStateService(rpc.GlobalStateServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def GlobalStateHash(
        self, stream: Stream[pb.GlobalStateHashRequest, pb.GlobalStateHashResponse]
    ) -> None:
        await stream.recv_message()
        states = self._node.layers()
        reply = pb.GlobalStateHashResponse()
        if states:
            last = states[-1]
            reply.response.CopyFrom(
                pb.GlobalStateHash(
                    root_hash=last.state_root, layer=pb.LayerNumber(number=last.number)
                )
            )
        await stream.send_message(reply)

    async def Account(self, stream: Stream[pb.AccountRequest, pb.AccountResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        address = request.account_id.address
        balance, nonce = self._node.account(address)
        msg = account_message(address, balance, nonce)
        await stream.send_message(pb.AccountResponse(account_wrapper=msg))

    def _account_data(self, flt: pb.AccountDataFilter) -> list[pb.AccountData]:
        address, out = flt.account_id.address, []
        if flt.account_data_flags & FLAG_REWARD:
            for state in self._node.layers():
                out += [pb.AccountData(reward=r) for r in rewards(state)
                        if r.coinbase.address == address]  # fmt: skip
        if flt.account_data_flags & FLAG_ACCOUNT:
            balance, nonce = self._node.account(address)
            out.append(pb.AccountData(account_wrapper=account_message(address, balance, nonce)))
        return out

    async def AccountDataQuery(
        self, stream: Stream[pb.AccountDataQueryRequest, pb.AccountDataQueryResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        if not request.filter.account_id.address or not request.filter.account_data_flags:
            raise GRPCError(Code.INVALID_ARGUMENT, "filter needs an account id and flags")
        items = self._account_data(request.filter)
        page = items[request.offset :]
        if request.max_results:
            page = page[: request.max_results]
        await stream.send_message(
            pb.AccountDataQueryResponse(total_results=len(items), account_item=page)
        )

    async def AccountDataStream(
        self, stream: Stream[pb.AccountDataStreamRequest, pb.AccountDataStreamResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        flt = request.filter
        if not flt.account_id.address or not flt.account_data_flags:
            raise GRPCError(Code.INVALID_ARGUMENT, "filter needs an account id and flags")
        sent = {d.SerializeToString(deterministic=True) for d in self._account_data(flt)}
        while True:
            await anyio.sleep(STREAM_POLL_S)
            for datum in self._account_data(flt):
                key = datum.SerializeToString(deterministic=True)
                if key not in sent:
                    sent.add(key)
                    await stream.send_message(pb.AccountDataStreamResponse(datum=datum))

    def _global_data(self, flags: int) -> list[pb.GlobalStateData]:
        out: list[pb.GlobalStateData] = []
        for state in self._node.layers():
            if flags & FLAG_HASH:
                gsh = pb.GlobalStateHash(
                    root_hash=state.state_root, layer=pb.LayerNumber(number=state.number)
                )
                out.append(pb.GlobalStateData(global_state=gsh))
            if flags & FLAG_REWARD:
                out += [pb.GlobalStateData(reward=r) for r in rewards(state)]
        if flags & FLAG_ACCOUNT:
            for address, (balance, nonce) in sorted(self._node.accounts().items()):
                msg = account_message(address, balance, nonce)
                out.append(pb.GlobalStateData(account_wrapper=msg))
        return out

    async def GlobalStateStream(
        self, stream: Stream[pb.GlobalStateStreamRequest, pb.GlobalStateStreamResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        flags = request.global_state_data_flags
        if not flags:
            raise GRPCError(Code.INVALID_ARGUMENT, "global_state_data_flags is empty")
        sent = {d.SerializeToString(deterministic=True) for d in self._global_data(flags)}
        while True:
            await anyio.sleep(STREAM_POLL_S)
            for datum in self._global_data(flags):
                key = datum.SerializeToString(deterministic=True)
                if key not in sent:
                    sent.add(key)
                    await stream.send_message(pb.GlobalStateStreamResponse(datum=datum))


class _TransactionService(rpc.TransactionServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def SubmitTransaction(
        self, stream: Stream[pb.SubmitTransactionRequest, pb.SubmitTransactionResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        tx_id, error = self._node.submit_tx(request.transaction)
        state = TX_STATES["rejected" if error else "mempool"]
        await stream.send_message(
            pb.SubmitTransactionResponse(
                status=pb.RpcStatus(code=Code.INVALID_ARGUMENT.value if error else 0,
                                    message=error or ""),  # fmt: skip
                txstate=pb.TransactionState(
                    id=pb.TransactionId(id=bytes.fromhex(tx_id)), state=state
                ),
            )
        )

    async def TransactionsState(
        self, stream: Stream[pb.TransactionsStateRequest, pb.TransactionsStateResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        states = [
            pb.TransactionState(
                id=t, state=TX_STATES.get(self._node.tx_state(t.id.hex()), 0)  # type: ignore[arg-type]
            )
            for t in request.transaction_id
        ]
        await stream.send_message(pb.TransactionsStateResponse(transactions_state=states))


class _SmesherService(rpc.SmesherServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def IsSmeshing(self, stream: Stream[empty_pb2.Empty, pb.IsSmeshingResponse]) -> None:
        await stream.recv_message()
        await stream.send_message(pb.IsSmeshingResponse(is_smeshing=self._node.config.smeshing))

    async def SmesherIDs(self, stream: Stream[empty_pb2.Empty, pb.SmesherIDsResponse]) -> None:
        await stream.recv_message()
        keys = [self._node.signer.public_key]
        await stream.send_message(pb.SmesherIDsResponse(public_keys=keys))

    async def Coinbase(self, stream: Stream[empty_pb2.Empty, pb.CoinbaseResponse]) -> None:
        await stream.recv_message()
        account = pb.AccountId(address=address_of(self._node.smesher_id))
        await stream.send_message(pb.CoinbaseResponse(account_id=account))


class _ActivationService(rpc.ActivationServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def Get(self, stream: Stream[pb.GetRequest, pb.GetResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        node = self._node
        atx = node.mesh.atxs.get(request.id.hex())
        if atx is None:
            raise GRPCError(Code.NOT_FOUND, f"no ATX {request.id.hex()[:16]}")
        reply = pb.GetResponse(atx=activation(node, request.id.hex(), atx))
        for proof in node.malfeasance_proofs():
            if proof["smesher"] == atx["smesher"]:
                reply.malfeasance_proof.CopyFrom(malfeasance_message(proof, True))
                break
        await stream.send_message(reply)

    async def Highest(self, stream: Stream[empty_pb2.Empty, pb.HighestResponse]) -> None:
        await stream.recv_message()
        atxs = self._node.mesh.atxs
        if not atxs:
            raise GRPCError(Code.NOT_FOUND, "no ATX yet")
        best = min(atxs, key=lambda i: (-int(atxs[i]["target_epoch"]), i))
        await stream.send_message(pb.HighestResponse(atx=activation(self._node, best, atxs[best])))


class _DebugService(rpc.DebugServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def Accounts(self, stream: Stream[pb.AccountsRequest, pb.AccountsResponse]) -> None:
        await stream.recv_message()  # layer 0 = the latest, the only one we keep
        accounts = [account_message(a, b, n) for a, (b, n) in sorted(self._node.accounts().items())]
        await stream.send_message(pb.AccountsResponse(account_wrapper=accounts))

    async def ActiveSet(self, stream: Stream[pb.ActiveSetRequest, pb.ActiveSetResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        ids = [pb.ActivationId(id=bytes.fromhex(i))
               for i in sorted(self._node.mesh.atxs_for_epoch(request.epoch))]  # fmt: skip
        await stream.send_message(pb.ActiveSetResponse(ids=ids))

    async def ProposalsStream(self, stream: Stream[empty_pb2.Empty, pb.Proposal]) -> None:
        """This node's own proposals as it makes them (Created), then Included once its
        block is decided, like go-spacemesh's proposal events."""
        await stream.recv_message()
        node = self._node
        lpe = node.config.mesh.layers_per_epoch
        created: dict[str, dict[str, Any]] = {}
        included: set[str] = set()
        start = node.current_layer()
        while True:
            for layer in range(start, node.current_layer() + 1):
                for pid, p in node.mesh.layer_proposals(layer).items():
                    if p["smesher"] == node.smesher_id and pid not in created:
                        created[pid] = p
                        await stream.send_message(self._proposal(pid, p, lpe, included=False))
            for state in node.layers():
                block_ids = set(state.block["proposals"]) if state.block else set()
                for pid in block_ids & created.keys() - included:
                    included.add(pid)
                    await stream.send_message(self._proposal(pid, created[pid], lpe, True))
            await anyio.sleep(STREAM_POLL_S)

    @staticmethod
    def _proposal(pid: str, p: dict[str, Any], lpe: int, included: bool) -> pb.Proposal:
        layer = int(p["layer"])
        slots = p.get("eligibilities") or [0]
        return pb.Proposal(
            id=bytes.fromhex(pid),
            epoch=pb.EpochNumber(number=layer // lpe),
            layer=pb.LayerNumber(number=layer),
            smesher=pb.SmesherId(id=bytes.fromhex(p["smesher"])),
            ballot=bytes.fromhex(pid),
            eligibilities=[pb.Eligibility(j=int(j) if not isinstance(j, dict) else int(j["j"]))
                           for j in slots],  # fmt: skip
            status=pb.Proposal.Included if included else pb.Proposal.Created,
        )


# -- spacemesh.harness.v1: our extras ------------------------------------------------------


class _HarnessService(hrpc.HarnessServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def SmeshingStatus(
        self, stream: Stream[empty_pb2.Empty, hpb.SmeshingStatusResponse]
    ) -> None:
        await stream.recv_message()
        node = self._node
        await stream.send_message(
            hpb.SmeshingStatusResponse(
                is_smeshing=node.config.smeshing,
                atxs_published=node.atxs_published,
                last_poet_round=node.last_poet_round,
                last_error=node.last_error,
            )
        )

    async def ActivationsQuery(
        self, stream: Stream[hpb.ActivationsQueryRequest, hpb.ActivationsQueryResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        node, mesh = self._node, self._node.mesh
        atxs = mesh.atxs if request.all_epochs else mesh.atxs_for_epoch(request.target_epoch)
        infos = [
            hpb.AtxInfo(atx=activation(node, i, a), target_epoch=int(a["target_epoch"]),
                        poet_round=int(a["poet"]["round"]))  # fmt: skip
            for i, a in sorted(atxs.items())
        ]
        await stream.send_message(hpb.ActivationsQueryResponse(activations=infos))

    async def Eligibilities(
        self, stream: Stream[hpb.EligibilitiesRequest, hpb.EligibilitiesResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        slots = self._node.eligibilities(request.epoch)
        await stream.send_message(hpb.EligibilitiesResponse(slots=slots))

    async def Checkpoint(
        self, stream: Stream[hpb.CheckpointRequest, hpb.CheckpointResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        try:
            data = canonical(self._node.checkpoint(request.layer))
        except ValueError as exc:  # the layer is not applied yet: the caller may retry
            raise GRPCError(Code.FAILED_PRECONDITION, str(exc)) from None
        await stream.send_message(hpb.CheckpointResponse(data=data))


class _GatewayService(hrpc.GatewayServiceBase):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def BroadcastPoet(
        self, stream: Stream[hpb.BroadcastPoetRequest, hpb.BroadcastPoetResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        accepted, error = self._node.broadcast_poet(request.data)
        await stream.send_message(hpb.BroadcastPoetResponse(accepted=accepted, error=error))


def node_services(node: Node) -> list[Any]:
    """The grpclib handlers of a node's API."""
    services = (
        _NodeService, _MeshService, _GlobalStateService, _TransactionService, _SmesherService,
        _ActivationService, _DebugService, _HarnessService, _GatewayService,
    )  # fmt: skip
    return [service(node) for service in services]


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
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
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
        stub = hrpc.GatewayServiceStub(channel)
        try:
            reply = await stub.BroadcastPoet(
                hpb.BroadcastPoetRequest(data=data), timeout=self._timeout
            )
        except (GRPCError, StreamTerminatedError) as exc:
            raise OSError(f"gateway {gateway}: {exc}") from None
        return bool(reply.accepted)

    def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                channel.close()
        self._channels.clear()
