"""A whole network in one process over the in-memory transport (tests, simulation)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import anyio

from ._clock import Clock, LoopClock
from ._memnet import MemoryLink, MemoryNetwork
from ._mesh import MeshParams
from ._node import Node, NodeConfig
from ._poet import PoetConfig, PoetService
from ._poet_client import LocalPoetClient


@dataclasses.dataclass
class MemoryCluster:
    """The running parts of an in-memory network."""

    net: MemoryNetwork
    poet: PoetService
    poet_client: LocalPoetClient
    gateways: list[Node]
    miners: list[Node]
    clock: Clock

    @property
    def nodes(self) -> list[Node]:
        """Gateways first, then miners."""
        return [*self.gateways, *self.miners]


@contextlib.asynccontextmanager
async def memory_cluster(
    *,
    miners: int = 4,
    gateways: int = 1,
    seed: int = 0,
    layer_duration: float = 1.0,
    genesis_delay: float = 0.5,
    params: MeshParams | None = None,
    link: MemoryLink | None = None,
    poet_chain_length: int = 100,
    poet_reachable: bool = True,
    target_peers: int = 4,
) -> AsyncIterator[MemoryCluster]:
    """Start a PoET, ``gateways`` gateway nodes and ``miners`` smeshing nodes; stop on exit.

    Time is the event loop's, so under trio's ``MockClock`` the network runs virtually.
    """
    if miners < 1 or gateways < 1:
        raise ValueError("a cluster needs at least one gateway and one miner")
    params = params or MeshParams()
    clock = LoopClock()
    genesis = clock.now() + genesis_delay
    net = MemoryNetwork(seed, link or MemoryLink(delay=0.01))
    gateway_nodes: dict[str, Node] = {}

    async def broadcast(address: str, data: bytes) -> bool:
        node = gateway_nodes.get(address)
        if node is None:
            raise ConnectionRefusedError(f"no gateway at {address}")
        await anyio.sleep(net.link("poet", address).delay)
        return node.broadcast_poet(data)[0]

    epoch = params.layers_per_epoch * layer_duration
    poet_config = PoetConfig(
        genesis=genesis,
        round_duration=epoch / 2,
        chain_length=poet_chain_length,
        key_seed=f"poet/{seed}",
    )
    poet = PoetService(poet_config, clock, broadcast)
    poet_client = LocalPoetClient(poet, "poet:80", reachable=poet_reachable)

    def config(i: int, *, smeshing: bool, bootnodes: tuple[str, ...]) -> NodeConfig:
        return NodeConfig(
            identity=f"{seed}/node/{i}",
            listen=f"10.0.{i // 250}.{i % 250 + 1}:7513",
            genesis=genesis,
            layer_duration=layer_duration,
            mesh=params,
            bootnodes=bootnodes,
            smeshing=smeshing,
            target_peers=target_peers,
            poet_keys=(poet.public_key,),
            seed=seed,
        )

    gw = [config(i, smeshing=False, bootnodes=()) for i in range(gateways)]
    boot = tuple(c.listen for c in gw)
    gws = [Node(c, transport=net.transport(c.listen), clock=clock, poets=[poet_client]) for c in gw]
    for node in gws:
        gateway_nodes[node.config.listen] = node
    mns = []
    for i in range(miners):
        cfg = config(gateways + i, smeshing=True, bootnodes=boot)
        node = Node(cfg, transport=net.transport(cfg.listen), clock=clock, poets=[poet_client])
        mns.append(node)
    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        for node in gws:
            await tg.start(node.run)
        for node in mns:
            await tg.start(node.run)
        poet.start(list(boot))
        tg.start_soon(poet.run)
        yield MemoryCluster(net, poet, poet_client, gws, mns, clock)
        tg.cancel_scope.cancel()
