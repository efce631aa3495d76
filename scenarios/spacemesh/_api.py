"""A typed async client of a node's API (spacemesh.v1 and our spacemesh.harness.v1 extras).

The plan reads every node through this, never through logs: each method returns plain
values (hex strings, ints, small dataclasses) that the checks in `_checks` compare.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from google.protobuf import empty_pb2
from grpclib.client import Channel

from ._proto import harness_grpc as hrpc
from ._proto import harness_pb2 as hpb
from ._proto import spacemesh_grpc as rpc
from ._proto import spacemesh_pb2 as pb

TIMEOUT_S = 5.0
TX_STATE_NAMES = {0: "unknown", 1: "rejected", 2: "rejected", 3: "rejected", 4: "mempool",
                  5: "included", 6: "applied", 7: "rejected"}  # fmt: skip
KIND_NAMES = {1: "atx", 2: "ballot", 3: "hare"}


@dataclasses.dataclass(frozen=True)
class NodeStatus:
    """NodeService.Status."""

    connected_peers: int
    is_synced: bool
    synced_layer: int
    top_layer: int
    verified_layer: int


@dataclasses.dataclass(frozen=True)
class LayerView:
    """One layer of MeshService.LayersQuery / LayerStream."""

    number: int
    status: int  # Layer.LayerStatus: 0 none, 1 approved, 2 confirmed, 3 applied
    hash: str
    state_root: str
    block: str  # the block id ("" for none)


@dataclasses.dataclass(frozen=True)
class AtxView:
    """An ATX (harness ActivationsQuery)."""

    id: str
    smesher: str
    target_epoch: int
    poet_round: int


@dataclasses.dataclass(frozen=True)
class Malfeasance:
    """A malfeasance proof as the API serves it."""

    smesher: str
    kind: str
    layer: int


def _layer(msg: pb.Layer) -> LayerView:
    block = msg.blocks[0].id.hex() if msg.blocks else ""
    return LayerView(msg.number.number, int(msg.status), msg.hash.hex(),
                     msg.root_state_hash.hex(), block)  # fmt: skip


def _malfeasance(msg: pb.MalfeasanceProof) -> Malfeasance:
    return Malfeasance(msg.smesher_id.id.hex(), KIND_NAMES.get(int(msg.kind), "?"),
                       msg.layer.number)  # fmt: skip


class NodeApi:
    """One node's API over one channel (asyncio only, as grpclib).

    Each call waits `TIMEOUT_S` for its answer, or until ``until`` (a time) when that is
    later: a node starved of CPU (a hundred on two cores) may take longer than any fixed
    deadline to answer, and a call abandoned at its deadline and asked again only adds
    work the node does twice, so it never catches up.
    """

    def __init__(self, host: str, port: int, *, until: float | None = None) -> None:
        self.until = until
        """Calls wait for their answers until this time (``time.time()``), if later."""
        self._channel = Channel(host, port)
        self.node = rpc.NodeServiceStub(self._channel)
        self.mesh = rpc.MeshServiceStub(self._channel)
        self.state = rpc.GlobalStateServiceStub(self._channel)
        self.txs = rpc.TransactionServiceStub(self._channel)
        self.smesher = rpc.SmesherServiceStub(self._channel)
        self.activation = rpc.ActivationServiceStub(self._channel)
        self.debug = rpc.DebugServiceStub(self._channel)
        self.harness = hrpc.HarnessServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def timeout(self) -> float:
        """How long the next call waits for its answer."""
        if self.until is None:
            return TIMEOUT_S
        return max(TIMEOUT_S, self.until - time.time())

    async def status(self) -> NodeStatus:
        """NodeService.Status."""
        st = (await self.node.Status(pb.StatusRequest(), timeout=self.timeout())).status
        return NodeStatus(int(st.connected_peers), st.is_synced, st.synced_layer.number,
                          st.top_layer.number, st.verified_layer.number)  # fmt: skip

    async def genesis_time(self) -> int:
        """MeshService.GenesisTime (unix seconds)."""
        reply = await self.mesh.GenesisTime(pb.GenesisTimeRequest(), timeout=self.timeout())
        return int(reply.unixtime.value)

    async def current_layer(self) -> int:
        """MeshService.CurrentLayer."""
        reply = await self.mesh.CurrentLayer(pb.CurrentLayerRequest(), timeout=self.timeout())
        return int(reply.layernum.number)

    async def layers(self, start: int, end: int) -> list[LayerView]:
        """MeshService.LayersQuery, `end` inclusive."""
        request = pb.LayersQueryRequest(
            start_layer=pb.LayerNumber(number=start), end_layer=pb.LayerNumber(number=end)
        )
        reply = await self.mesh.LayersQuery(request, timeout=self.timeout())
        return [_layer(m) for m in reply.layer]

    @asynccontextmanager
    async def layer_stream(self) -> AsyncIterator[AsyncIterator[LayerView]]:
        """MeshService.LayerStream: each layer event from now on."""
        async with self.mesh.LayerStream.open() as stream:
            await stream.send_message(pb.LayerStreamRequest(), end=True)

            async def items() -> AsyncIterator[LayerView]:
                async for msg in stream:
                    yield _layer(msg.layer)

            yield items()

    async def smesher_id(self) -> str:
        """SmesherService.SmesherIDs: this node's (first) identity, hex."""
        reply = await self.smesher.SmesherIDs(empty_pb2.Empty(), timeout=self.timeout())
        return reply.public_keys[0].hex() if reply.public_keys else ""

    async def is_smeshing(self) -> bool:
        """SmesherService.IsSmeshing."""
        reply = await self.smesher.IsSmeshing(empty_pb2.Empty(), timeout=self.timeout())
        return bool(reply.is_smeshing)

    async def smeshing_status(self) -> tuple[int, str]:
        """(ATXs published, why the last failed or "") from our SmeshingStatus extra."""
        reply = await self.harness.SmeshingStatus(empty_pb2.Empty(), timeout=self.timeout())
        return int(reply.atxs_published), str(reply.last_error)

    async def atxs(self) -> list[AtxView]:
        """Every ATX the node knows (our ActivationsQuery extra)."""
        request = hpb.ActivationsQueryRequest(all_epochs=True)
        reply = await self.harness.ActivationsQuery(request, timeout=self.timeout())
        return [AtxView(a.atx.id.id.hex(), a.atx.smesher_id.id.hex(), a.target_epoch,
                        a.poet_round) for a in reply.activations]  # fmt: skip

    async def eligibilities(self, epoch: int) -> dict[str, int]:
        """Proposal slots per smesher in `epoch` (our Eligibilities extra)."""
        request = hpb.EligibilitiesRequest(epoch=epoch)
        reply = await self.harness.Eligibilities(request, timeout=self.timeout())
        return {k: int(v) for k, v in reply.slots.items()}

    async def accounts(self) -> dict[str, tuple[int, int]]:
        """DebugService.Accounts: address -> (balance, nonce)."""
        reply = await self.debug.Accounts(pb.AccountsRequest(), timeout=self.timeout())
        return {a.account_id.address: (a.state_current.balance.value, a.state_current.counter)
                for a in reply.account_wrapper}  # fmt: skip

    async def account(self, address: str) -> tuple[int, int]:
        """GlobalStateService.Account: (balance, nonce)."""
        request = pb.AccountRequest(account_id=pb.AccountId(address=address))
        reply = await self.state.Account(request, timeout=self.timeout())
        st = reply.account_wrapper.state_current
        return int(st.balance.value), int(st.counter)

    async def submit_tx(self, raw: bytes) -> tuple[str, str]:
        """TransactionService.SubmitTransaction: (tx id hex, error or "")."""
        request = pb.SubmitTransactionRequest(transaction=raw)
        reply = await self.txs.SubmitTransaction(request, timeout=self.timeout())
        return reply.txstate.id.id.hex(), reply.status.message if reply.status.code else ""

    async def tx_states(self, ids: list[str]) -> dict[str, str]:
        """TransactionService.TransactionsState: id -> unknown/rejected/mempool/included/applied."""
        request = pb.TransactionsStateRequest(
            transaction_id=[pb.TransactionId(id=bytes.fromhex(i)) for i in ids]
        )
        reply = await self.txs.TransactionsState(request, timeout=self.timeout())
        return {s.id.id.hex(): TX_STATE_NAMES.get(int(s.state), "unknown")
                for s in reply.transactions_state}  # fmt: skip

    async def malfeasance(self, smesher: str) -> Malfeasance | None:
        """MeshService.MalfeasanceQuery: the node's proof against `smesher`, if any."""
        request = pb.MalfeasanceRequest(smesher_hex=smesher, include_proof=True)
        reply = await self.mesh.MalfeasanceQuery(request, timeout=self.timeout())
        return _malfeasance(reply.proof) if reply.HasField("proof") else None

    async def malfeasance_known(self, listen_s: float = 1.0) -> list[Malfeasance]:
        """What MeshService.MalfeasanceStream sends in its first `listen_s` (the known proofs
        come first)."""
        out: list[Malfeasance] = []
        with anyio.move_on_after(listen_s):
            async with self.mesh.MalfeasanceStream.open() as stream:
                await stream.send_message(pb.MalfeasanceStreamRequest(), end=True)
                async for msg in stream:
                    out.append(_malfeasance(msg.proof))
        return out

    async def checkpoint(self, layer: int) -> bytes:
        """A checkpoint at `layer` (our Checkpoint extra), canonical JSON."""
        reply = await self.harness.Checkpoint(hpb.CheckpointRequest(layer=layer),
                                              timeout=self.timeout())  # fmt: skip
        return bytes(reply.data)
