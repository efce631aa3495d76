"""A whole network in one process over the in-memory transport (tests, simulation).

Each part is a simulated process (`SimProcess`) that faults act on as on a real one: killed
(its tasks cancelled, its listener and connections gone), restarted with the same identity
and address and, given a ``data_root``, its data directory (without, it has none of its
state: a restarted node syncs from its peers as a late joiner does), paused and resumed
(`Gate`), its clock skewed (`SkewClock`). Instance ids are those `harness run` gives the
plan's instances in one group: ``single/0`` the PoET, then the gateways, then the miners.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import anyio
import trio
from anyio.abc import TaskGroup

from harness import fewer_collections

from ._clock import Clock, LoopClock, SkewClock
from ._codec import Json
from ._keys import Signer
from ._memnet import MemoryLink, MemoryNetwork
from ._mesh import MeshParams
from ._node import Node, NodeConfig
from ._poet import PoetConfig, PoetError, PoetService
from ._poet_client import PoetClient

POET_HOST = "poet"
CALL_TIMEOUT = 3.0
"""How long the real clients wait for an answer (HTTP to the PoET, gRPC to a gateway)."""

T = TypeVar("T")


@dataclasses.dataclass
class SimProcess:
    """One simulated instance: its host, its clock, and what runs while it is alive."""

    id: str
    role: str
    host: str
    clock: SkewClock
    part: Node | PoetService | None = None
    """What runs in it (a new one at each start); None before the first."""
    scope: anyio.CancelScope | None = None
    """Cancels its tasks; None while it is dead."""
    restarts: int = 0
    started_at: float | None = None
    """When it was last started (true time); None before the first start."""

    @property
    def alive(self) -> bool:
        """Started and not killed since."""
        return self.scope is not None

    @property
    def paused(self) -> bool:
        """Frozen (and alive)."""
        return self.alive and self.clock.gate.paused


@dataclasses.dataclass
class MemoryCluster:
    """The running parts of an in-memory network, and what faults do to them."""

    net: MemoryNetwork
    processes: dict[str, SimProcess]
    """By instance id, in sequence order: the PoET, the gateways, the miners."""
    clock: Clock
    """True time: what an observer outside the processes reads."""
    _tg: TaskGroup
    _build: Callable[[SimProcess], Node | PoetService]

    @property
    def poet(self) -> PoetService:
        """The PoET service (a new one after each restart)."""
        part = self.processes[_poet_id(self)].part
        assert isinstance(part, PoetService)
        return part

    def _nodes(self, role: str) -> list[Node]:
        return [p.part for p in self.processes.values()
                if p.role == role and isinstance(p.part, Node)]  # fmt: skip

    @property
    def gateways(self) -> list[Node]:
        """The gateway nodes (the current incarnation of each)."""
        return self._nodes("gateway")

    @property
    def miners(self) -> list[Node]:
        """The smeshing nodes (the current incarnation of each)."""
        return self._nodes("miner")

    @property
    def nodes(self) -> list[Node]:
        """Gateways first, then miners."""
        return [*self.gateways, *self.miners]

    def node_processes(self) -> list[SimProcess]:
        """The processes of `nodes`, in the same order."""
        return [p for p in self.processes.values() if isinstance(p.part, Node)]

    def kill(self, instance: str) -> None:
        """SIGKILL: its tasks stop, nothing listens at its address, peers see its
        connections end; what it held in memory is gone. A dead one stays dead."""
        proc = self.processes[instance]
        if proc.scope is None:
            return
        proc.scope.cancel()
        proc.scope = None
        self.net.close_host(proc.host)

    async def start(self, instance: str) -> None:
        """Start it afresh (a restart, when it ran before): same identity and address,
        none of the old state; killed first if it is still alive."""
        proc = self.processes[instance]
        if proc.alive:
            self.kill(instance)
            proc.restarts += 1
        elif proc.started_at is not None:
            proc.restarts += 1
        await anyio.lowlevel.checkpoint()  # the old incarnation's tasks end first
        proc.part = self._build(proc)
        proc.started_at = self.clock.now()
        await self._tg.start(_run, proc)

    def pause(self, instance: str) -> None:
        """SIGSTOP: its tasks make no progress; what peers send it waits in its socket
        buffers (TCP keeps receiving for a stopped process) and arrives on `resume`."""
        proc = self.processes[instance]
        if proc.alive:
            self.net.pause(proc.host)

    def resume(self, instance: str) -> None:
        """SIGCONT: it goes on, its overdue timers fire at once, its inbox is delivered."""
        self.net.resume(self.processes[instance].host)

    def skew(self, instance: str, offset: float = 0.0, drift: float = 0.0) -> None:
        """Its clock reads `offset` seconds ahead (and gains `drift` s/s) from now on."""
        self.processes[instance].clock.skew(offset, drift)

    async def request(self, src_host: str, instance: str, handle: Callable[[], T]) -> T:
        """One request/response exchange with `instance`, as a client with the real
        clients' timeout sees it: refused when it is dead, timed out when a link either way
        is cut or it is paused past the timeout, else `handle()`'s answer a round trip later.
        Raises OSError subclasses, as the real clients do."""
        await self.net.gate(src_host).wait()  # a paused caller calls nothing
        proc = self.processes[instance]
        there, back = self.net.link(src_host, proc.host), self.net.link(proc.host, src_host)
        if there.down or back.down:
            await anyio.sleep(CALL_TIMEOUT)
            raise TimeoutError(f"{proc.host} unreachable: connect timed out")
        await anyio.sleep(there.delay)
        if not proc.alive:
            await anyio.sleep(back.delay)
            raise ConnectionRefusedError(f"{proc.host}: connection refused")
        with anyio.move_on_after(max(0.0, CALL_TIMEOUT - there.delay)):
            await proc.clock.gate.wait()
        if proc.paused:
            raise TimeoutError(f"{proc.host}: no answer (read timed out)")
        if not proc.alive:
            raise ConnectionResetError(f"{proc.host}: connection reset")
        answer = handle()
        await anyio.sleep(back.delay)
        return answer


class SimPoetClient:
    """A node's PoET client in a simulation: HTTP to a PoET process, as `request`s."""

    def __init__(self, cluster: MemoryCluster, host: str, instance: str | None = None) -> None:
        self._cluster = cluster
        self._host = host
        self._instance = instance or _poet_id(cluster)
        self.address = f"{cluster.processes[self._instance].host}:80"

    def _service(self) -> PoetService:
        part = self._cluster.processes[self._instance].part
        assert isinstance(part, PoetService)
        return part

    async def submit(self, challenge: bytes) -> int:
        def handle() -> int:
            try:
                return self._service().submit(challenge)
            except PoetError as exc:
                raise OSError(str(exc)) from None

        return await self._cluster.request(self._host, self._instance, handle)

    async def info(self) -> dict[str, Json]:
        return await self._cluster.request(self._host, self._instance,
                                           lambda: self._service().info())  # fmt: skip


def _poet_id(cluster: MemoryCluster) -> str:
    return next(i for i, p in cluster.processes.items() if p.role == "poet")


def poet_host(index: int) -> str:
    """The host of the ``index``-th PoET of a memory cluster (``poet``, ``poet1``, ...)."""
    return POET_HOST if index == 0 else f"{POET_HOST}{index}"


async def _run(proc: SimProcess, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    with anyio.CancelScope() as scope:
        proc.scope = scope
        part = proc.part
        if isinstance(part, Node):
            await part.run(task_status=task_status)
        else:
            assert part is not None
            task_status.started()
            await part.run()


def seed_trio_scheduler(seed: int) -> None:
    """Make the order in which trio runs the tasks woken at the same moment a function of
    `seed`. Left alone, trio randomly reverses each batch of woken tasks with its own
    unseeded random, and timers due at the same instant (the rule in virtual time) wake
    in the order of their objects' addresses; in its deterministic mode (the one its
    hypothesis plugin turns on) it sorts each batch by task creation, then shuffles it
    with that random, which is seeded here."""
    scheduler = getattr(getattr(trio, "_core", None), "_run", None)
    rng = getattr(scheduler, "_r", None)
    if scheduler is None or rng is None or not hasattr(scheduler, "_ALLOW_DETERMINISTIC_SCHEDULING"):
        raise RuntimeError("this trio has no deterministic scheduling mode to turn on: "
                           "the simulation cannot be made deterministic")  # fmt: skip
    scheduler._ALLOW_DETERMINISTIC_SCHEDULING = True
    rng.seed(f"spacemesh-cluster/{seed}")


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
    group: str = "single",
    poets: int = 1,
    node_config: Callable[[int, NodeConfig], NodeConfig] | None = None,
    poet_groups: bool = False,
    poet_phase_shift: float = 0.0,
    data_root: str | None = None,
) -> AsyncIterator[MemoryCluster]:
    """Start ``poets`` PoETs, ``gateways`` gateway nodes and ``miners`` smeshing nodes;
    stop on exit. Every node registers with every PoET; with ``poet_groups`` miner ``j``
    registers with PoET ``(gateways + j) % poets`` only (the plan's ``poet_groups``), and PoET ``k``'s
    rounds start ``k * poet_phase_shift`` later. ``node_config(i, config)`` may change node
    ``i``'s config (gateways first), e.g. give two miners one identity. With ``data_root``
    every node and PoET keeps its state in a directory of its own there, so a restarted one
    resumes it (as the plan's processes do); without, a restart starts from nothing.

    Time is the event loop's, so under trio's ``MockClock`` the network runs virtually, and
    with the same ``seed`` the same way every time (the scheduler is seeded too; on
    asyncio, which cannot be, a simulation is not deterministic). Instance ids are ``{group}/{seq}``: the PoET 0, then the gateways, then the miners.
    """
    if miners < 1 or gateways < 1 or poets < 1:
        raise ValueError("a cluster needs at least one PoET, one gateway and one miner")
    seed_trio_scheduler(seed)
    params = params or MeshParams()
    clock = LoopClock()
    genesis = clock.now() + genesis_delay
    net = MemoryNetwork(seed, link or MemoryLink(delay=0.01))
    epoch = params.layers_per_epoch * layer_duration
    poet_configs = {
        poet_host(k): PoetConfig(
            genesis=genesis + k * poet_phase_shift,
            round_duration=epoch / 2,
            chain_length=poet_chain_length,
            key_seed=f"poet/{seed}" if k == 0 else f"poet/{seed}/{k}",
            data_dir=None if data_root is None else os.path.join(data_root, f"poet-{k}"),
        )
        for k in range(poets)
    }
    poet_keys = tuple(Signer(c.key_seed).public_hex for c in poet_configs.values())

    def config(i: int, *, smeshing: bool, bootnodes: tuple[str, ...]) -> NodeConfig:
        made = NodeConfig(
            identity=f"{seed}/node/{i}",
            listen=f"10.0.{i // 250}.{i % 250 + 1}:7513",
            genesis=genesis,
            layer_duration=layer_duration,
            mesh=params,
            bootnodes=bootnodes,
            smeshing=smeshing,
            target_peers=target_peers,
            poet_keys=poet_keys,
            seed=seed,
            data_dir=None if data_root is None else os.path.join(data_root, f"node-{i}"),
        )
        return node_config(i, made) if node_config is not None else made

    gw = [config(i, smeshing=False, bootnodes=()) for i in range(gateways)]
    boot = tuple(c.listen for c in gw)
    configs = {
        **{c.listen.rpartition(":")[0]: c for c in gw},
        **{(c := config(gateways + i, smeshing=True, bootnodes=boot)).listen.rpartition(":")[0]: c
           for i in range(miners)},
    }  # fmt: skip
    roles = ["poet"] * poets + ["gateway"] * gateways + ["miner"] * miners
    hosts = [*poet_configs, *configs]
    miner_index = {host: gateways + j for j, host in enumerate(hosts[poets + gateways:])}

    # One process holds every node's state: the cycle collector's walks of it were a
    # quarter to a third of a 100-node simulation's CPU.
    with fewer_collections(young=50_000):
        async with anyio.create_task_group() as tg:
            await tg.start(net.run)

            def build(proc: SimProcess) -> Node | PoetService:
                if proc.role == "poet":
                    poet = PoetService(poet_configs[proc.host], proc.clock,
                                       functools.partial(broadcast, proc.id))  # fmt: skip
                    poet.start(list(boot))
                    return poet
                cfg = configs[proc.host]
                mine = poet_ids
                if poet_groups and proc.role == "miner":
                    mine = [poet_ids[miner_index[proc.host] % len(poet_ids)]]
                clients: list[PoetClient] = [SimPoetClient(cluster, proc.host, i) for i in mine]
                # Nobody scrapes a simulated node: no Prometheus series to count into.
                return Node(cfg, transport=net.transport(cfg.listen), clock=proc.clock,
                            poets=clients, metrics=False)  # fmt: skip

            async def broadcast(poet: str, address: str, data: bytes) -> bool:
                host = address.rpartition(":")[0]
                instance = next(i for i, p in cluster.processes.items() if p.host == host)

                def handle() -> bool:
                    node = cluster.processes[instance].part
                    assert isinstance(node, Node)
                    return node.broadcast_poet(data)[0]

                return await cluster.request(cluster.processes[poet].host, instance, handle)

            processes = {
                f"{group}/{seq}": SimProcess(f"{group}/{seq}", role, host, SkewClock(net.gate(host)))
                for seq, (role, host) in enumerate(zip(roles, hosts, strict=True))
            }  # fmt: skip
            cluster = MemoryCluster(net, processes, clock, tg, build)
            poet_ids = [i for i, p in processes.items() if p.role == "poet"]
            if not poet_reachable:
                for host in hosts[poets + gateways:]:
                    for poet_at in poet_configs:
                        net.set_link(host, poet_at, MemoryLink(down=True))
            for instance in processes:  # the PoETs last, as before: they need the gateways
                if processes[instance].role != "poet":
                    await cluster.start(instance)
            for instance in poet_ids:
                await cluster.start(instance)
            yield cluster
            tg.cancel_scope.cancel()
