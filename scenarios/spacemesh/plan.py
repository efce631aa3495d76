"""The ``start`` test case: a network from genesis, checked through the nodes' gRPC APIs.

Roles by sequence number: PoETs, then gateways (the bootnodes, whose API the PoETs call),
then miners. Instance 0 fixes the genesis time; addresses travel over the sync service.
Each node instance queries its own node's gRPC API and publishes what it saw; every
instance then checks the reports (same layer hashes everywhere, every miner smeshing and
its ATX known to every node). A PoET instance checks all reports, so the run's verdict
does not depend on any node's own view.

The nodes and PoETs read time through `env.clock`, so a clock fault on an instance skews its
node's protocol; the plan's own deadlines (genesis, the watch) stay on real time: the judge
of a skewed node is not skewed with it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import anyio
from grpclib.client import Channel

from harness import sdk
from harness.faults import FaultSchedule, FaultScheduleError, play

from ._clock import HarnessClock
from ._keys import Signer
from ._mesh import MeshParams
from ._node import NodeConfig
from ._poet import PoetConfig
from ._proto import spacemesh_grpc as rpc
from ._proto import spacemesh_pb2 as pb
from ._services import serve_node, serve_poet

POET_PORT = 7000
GOSSIP_PORT = 7513
GRPC_PORT = 9092
METRICS_PORT = 9100
POLL_S = 0.5  # how often a node instance asks its node how far it got
SETTLE_LAYERS = 2  # after a fault schedule's last heal, before the nodes are judged


@dataclasses.dataclass
class PoetAddr:
    """A PoET as published on the ``poets`` topic."""

    seq: int
    ip: str
    address: str
    pubkey: str


@dataclasses.dataclass
class GatewayAddr:
    """A gateway as published on the ``gateways`` topic."""

    seq: int
    ip: str
    grpc: str
    gossip: str


@dataclasses.dataclass
class Report:
    """What one node's gRPC API said at the end, published on ``reports``."""

    seq: int
    instance: str
    role: str
    smesher: str
    is_smeshing: bool
    verified_layer: int
    hashes: list[str]
    atx_smeshers: list[str]
    smeshing_error: str
    error: str = ""
    """Why this node failed its own checks (it stops right after publishing this)."""


@dataclasses.dataclass
class NodeAddr:
    """A node's number in a fault schedule (gateways, then miners) and its data address."""

    index: int
    ip: str


GENESIS = sdk.Topic("genesis", float)
POETS = sdk.Topic("poets", PoetAddr)
GATEWAYS = sdk.Topic("gateways", GatewayAddr)
REPORTS = sdk.Topic("reports", Report)
NODES = sdk.Topic("nodes", NodeAddr)


def poet_key_seed(seq: int) -> str:
    """The seed of the PoET key of the instance with global sequence number ``seq``."""
    return f"poet-{seq}"


def compare_reports(reports: list[Report], target: int) -> list[str]:
    """Every disagreement between the nodes' reports (empty when the network agrees)."""
    problems: list[str] = [f"{r.instance}: {r.error}" for r in reports if r.error]
    if not reports:
        return ["no node reported"]
    reports = [r for r in reports if not r.error]
    miners = [r for r in reports if r.role == "miner"]
    for r in miners:
        if not r.is_smeshing:
            problems.append(f"miner {r.instance} is not smeshing")
    for r in reports:
        if r.verified_layer < target or len(r.hashes) < target + 1:
            problems.append(f"{r.instance} verified layer {r.verified_layer}, not {target}")
    reference = min(reports, key=lambda r: r.seq)
    for r in reports:
        for layer, (mine, theirs) in enumerate(zip(reference.hashes, r.hashes, strict=False)):
            if layer > target:
                break
            if mine != theirs:
                problems.append(
                    f"layer {layer}: {r.instance} has hash {theirs[:12]}, "
                    f"{reference.instance} has {mine[:12]}"
                )
                break
    for miner in miners:
        missing = [r.instance for r in reports if miner.smesher not in r.atx_smeshers]
        if missing:
            why = f" (its node says: {miner.smeshing_error})" if miner.smeshing_error else ""
            problems.append(f"ATX of miner {miner.instance} unknown to {', '.join(missing)}{why}")
    return problems


async def _first(topic: sdk.Topic[Any], sync: sdk.SyncClient) -> Any:
    return (await topic.collect(sync, 1))[0]


async def start(env: sdk.RunEnv) -> None:
    """Run this instance's role (PoET, gateway or miner) and check the network."""
    p = env.params
    role = env.role or "miner"
    ip = env.data_ip or "127.0.0.1"
    n = env.instance_count
    nodes = n - int(p["poets"])
    layer_duration = float(p["layer_duration"])
    params = MeshParams(
        layers_per_epoch=int(p["layers_per_epoch"]),
        pow_bits=int(p["pow_bits"]),
        proposals_per_layer=int(p["proposals_per_layer"]),
    )
    epoch_duration = params.layers_per_epoch * layer_duration
    target = int(p["layers"])
    schedule = _fault_schedule(env, nodes)  # checked before anything starts
    node_index = env.global_seq - int(p["poets"])  # in a schedule: gateways, then miners

    await env.network.wait_initialized()
    if env.global_seq == 0:
        await GENESIS.publish(env.sync, time.time() + float(p["genesis_offset"]))
    genesis = float(await _first(GENESIS, env.sync))
    if role == "poet":
        pubkey = Signer(poet_key_seed(env.global_seq)).public_hex
        address = f"{ip}:{POET_PORT}"
        await POETS.publish(env.sync, PoetAddr(env.global_seq, ip, address, pubkey))
    elif role == "gateway":
        gw = GatewayAddr(env.global_seq, ip, f"{ip}:{GRPC_PORT}", f"{ip}:{GOSSIP_PORT}")
        await GATEWAYS.publish(env.sync, gw)
    poets = await POETS.collect(env.sync, int(p["poets"]))
    gateways = await GATEWAYS.collect(env.sync, int(p["gateways"]))
    node_ips: dict[int, str] = {}
    if schedule is not None:
        if role != "poet":
            await NODES.publish(env.sync, NodeAddr(node_index, ip))
        node_ips = {a.index: a.ip for a in await NODES.collect(env.sync, nodes)}

    cut = role == "miner" and bool(p.get("poet_unreachable"))
    rules = [{"peers": [x.ip for x in poets], "drop": True}] if cut else []
    shape = sdk.LinkShape(
        latency_ms=float(p["latency"]) * 1000,
        jitter_ms=float(p["jitter"]) * 1000,
        loss_pct=float(p["loss"]),
    )
    if env.network.configurable:
        await env.network.configure(shape, rules=rules, callback_state="shaped", callback_target=n)
        await env.sync.barrier("shaped", n)
    poet_addresses = [x.address for x in poets]
    if cut and not env.network.configurable:
        # Without a configurable network, "unreachable" is a port nothing listens on.
        poet_addresses = [f"{x.ip}:1" for x in poets]
    await env.record_message(f"{role} at {ip}; genesis in {genesis - time.time():.1f}s")

    async with anyio.create_task_group() as tg:
        if role == "poet":
            config = PoetConfig(
                genesis=genesis,
                round_duration=epoch_duration / 2,
                chain_length=int(p["chain_length"]),
                key_seed=poet_key_seed(env.global_seq),
            )
            service = await tg.start(
                lambda task_status: serve_poet(
                    config, f"{ip}:{POET_PORT}", [g.grpc for g in gateways],
                    clock=HarnessClock(env.clock), task_status=task_status,
                )
            )
            reports = await REPORTS.collect(env.sync, nodes)
            problems = compare_reports(reports, target)
            delivered = sum(1 for b in service.broadcasts.values() if b.delivered)
            await env.record_message(f"PoET broadcast {delivered} proofs; {len(reports)} reports")
        else:
            config_node = NodeConfig(
                identity=f"{env.run_id}/{env.instance_id}",
                listen=f"{ip}:{GOSSIP_PORT}",
                genesis=genesis,
                layer_duration=layer_duration,
                mesh=params,
                bootnodes=tuple(g.gossip for g in gateways),
                smeshing=role == "miner",
                target_peers=int(p["target_peers"]),
                poet_keys=tuple(x.pubkey for x in poets),
                outputs=str(env.outputs_path),
                seed=env.global_seq,
            )
            await tg.start(
                lambda task_status: serve_node(
                    config_node,
                    grpc_address=f"{ip}:{GRPC_PORT}",
                    metrics_address=f"{ip}:{METRICS_PORT}",
                    poets=poet_addresses,
                    clock=HarnessClock(env.clock),  # a skew fault reaches the node
                    task_status=task_status,
                )
            )
            await env.expose_metrics(METRICS_PORT)  # scraped into the run's outputs
            if schedule is not None:
                tg.start_soon(lambda: play(env, schedule, node_index, node_ips, t0=genesis,
                                           default=shape, rules=rules))  # fmt: skip
            watch = Watch.of(
                role,
                target=target,
                genesis=genesis,
                layer_duration=layer_duration,
                params=params,
                check_slack=float(p["check_slack"]),
                healed_at=schedule.healed_by() if schedule is not None else None,
                # Started again by a fault: it syncs back, and publishes its next ATX later.
                restarted_at=time.time() if env.is_restart else None,
            )
            mine = await _watch_own_node(env, ip, watch)
            await REPORTS.publish(env.sync, mine)
            if mine.error:
                raise sdk.TestFailure(mine.error)
            reports = await REPORTS.collect(env.sync, nodes)
            problems = compare_reports(reports, target)
        if not problems:
            # Keep serving until every instance has checked: others may still query us.
            await env.sync.signal_and_wait("checked", n)
        tg.cancel_scope.cancel()
    if problems:
        raise sdk.TestFailure("; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))


def _fault_schedule(env: sdk.RunEnv, nodes: int) -> FaultSchedule | None:
    """The case's fault schedule (None without one); a TestFailure if it cannot be played."""
    text = str(env.params.get("schedule") or "")
    if not text:
        return None
    if not env.network.configurable:
        raise sdk.TestFailure("a fault schedule needs a runner that shapes links (local:netns)")
    try:
        schedule = FaultSchedule.from_json(text)
        schedule.check(nodes)
    except FaultScheduleError as exc:
        raise sdk.TestFailure(str(exc)) from None
    return schedule


@dataclasses.dataclass
class Watch:
    """When a node instance stops watching its node, and why: the plan's rule, which the
    fault search's simulation applies too (`scenarios.spacemesh.faults`)."""

    role: str
    target: int
    genesis: float
    epoch_duration: float
    deadline: float
    not_before: float = 0.0  # judged no earlier: after a fault schedule's last heal
    atx_checked: bool = False
    atx_after: float = 0.0  # when a miner without an ATX fails (0: one epoch after genesis)

    @classmethod
    def of(
        cls,
        role: str,
        *,
        target: int,
        genesis: float,
        layer_duration: float,
        params: MeshParams,
        check_slack: float,
        healed_at: float | None = None,
        restarted_at: float | None = None,
    ) -> Watch:
        """The watch of one node: verified `target` by `hdist + 1` layers later (plus
        `check_slack`); with `healed_at` (seconds from genesis when a fault schedule's last
        cut ends), judged only `SETTLE_LAYERS` layers after it, once the network had the
        time to converge again. A node restarted at `restarted_at` (a time) starts its
        smeshing over: a miner has two epochs from then to publish an ATX (a PoET round
        it joins late may close too late for the epoch it targets)."""
        deadline = genesis + (target + params.hdist + 1) * layer_duration + check_slack
        not_before = 0.0
        if healed_at:
            not_before = genesis + healed_at + SETTLE_LAYERS * layer_duration
            deadline = max(deadline, not_before + check_slack)
        epoch = params.layers_per_epoch * layer_duration
        atx_after = genesis + epoch
        if restarted_at is not None:
            atx_after = max(atx_after, restarted_at + 2 * epoch)
        return cls(role, target, genesis, epoch, deadline, not_before, atx_after=atx_after)

    def wants_atx_status(self, now: float) -> bool:
        """True once for a miner, one epoch after genesis: one epoch is enough for a PoET
        round and an ATX, so a miner without one fails early, with the reason."""
        after = self.atx_after or self.genesis + self.epoch_duration
        return self.role == "miner" and not self.atx_checked and now > after

    def step(
        self,
        now: float,
        status: Mapping[str, Any],
        atx_status: tuple[int, str] | None = None,
    ) -> str | None:
        """After one poll (`status` as NodeService.Status; `atx_status` = (atxs published,
        last error) when `wants_atx_status` asked for it): None to poll again, else the
        error to report ("" when the node verified the target)."""
        if status["verified_layer"] >= self.target and now >= self.not_before:
            return ""
        if atx_status is not None:
            self.atx_checked = True
            if atx_status[0] == 0:
                why = atx_status[1] or "no PoET proof arrived"
                if self.atx_after > self.genesis + self.epoch_duration:
                    return f"restarted miner published no ATX in two epochs: {why}"
                return f"miner published no ATX in epoch 0: {why}"
        if now > self.deadline:
            return (
                f"node verified layer {status['verified_layer']}, not {self.target}, by the "
                f"deadline (top layer {status['top_layer']}, {status['connected_peers']} peers)"
            )
        return None


async def _watch_own_node(env: sdk.RunEnv, ip: str, watch: Watch) -> Report:
    """Poll this instance's node through its gRPC API until `watch` says stop; its report."""
    channel = Channel(ip, GRPC_PORT)
    try:
        node = rpc.NodeServiceStub(channel)
        mesh = rpc.MeshServiceStub(channel)
        smesher = rpc.SmesherServiceStub(channel)
        atxs = rpc.ActivationServiceStub(channel)
        while True:
            st = await node.Status(pb.Empty(), timeout=5)
            status = {"verified_layer": st.verified_layer, "top_layer": st.top_layer,
                      "connected_peers": st.connected_peers}  # fmt: skip
            now = time.time()
            atx_status = None
            if watch.wants_atx_status(now):
                sm = await smesher.SmeshingStatus(pb.Empty(), timeout=5)
                atx_status = (sm.atxs_published, sm.last_error)
            error = watch.step(now, status, atx_status)
            if error is not None:
                break
            await anyio.sleep(POLL_S)
        layers = await mesh.LayersQuery(
            pb.LayersQueryRequest(start_layer=0, end_layer=watch.target)
        )
        ident = await smesher.SmesherID(pb.Empty())
        smeshing = await smesher.IsSmeshing(pb.Empty())
        sm = await smesher.SmeshingStatus(pb.Empty())
        known = await atxs.Query(pb.ActivationsQueryRequest(all_epochs=True))
        return Report(
            seq=env.global_seq,
            instance=env.instance_id,
            role=watch.role,
            smesher=ident.public_key.hex(),
            is_smeshing=smeshing.is_smeshing,
            verified_layer=status["verified_layer"],
            hashes=[layer.hash.hex() for layer in layers.layers],
            atx_smeshers=sorted({a.smesher_id.hex() for a in known.activations}),
            smeshing_error=sm.last_error,
            error=error,
        )
    finally:
        channel.close()
