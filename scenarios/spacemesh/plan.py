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
import functools
import hashlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
from google.protobuf import empty_pb2
from grpclib.const import Status as Code
from grpclib.exceptions import GRPCError

from harness import sdk
from harness.faults import FaultSchedule, play

from . import _checks as checks
from . import _txs
from ._api import NodeApi
from ._checks import Report
from ._clock import HarnessClock
from ._keys import Signer
from ._mesh import MeshParams
from ._node import NodeConfig
from ._poet import PoetConfig
from ._runcheck import equivocator_pairs
from ._services import serve_node, serve_poet

POET_PORT = 7000
GOSSIP_PORT = 7513
GRPC_PORT = 9092
METRICS_PORT = 9100
POLL_S = 0.5  # a node instance asks its node how far it got at most this often
POLLS_PER_LAYER = 2  # and at most this many times a layer (each is a gRPC call into it)
OBSERVE_TRIES = 3  # the final checks' tries at least, when a node's API misses deadlines
CHECKED = "checked"
"""The state every instance signals once its checks passed; each waits for all of them
before it ends (others may still query it)."""
REACHED_WAIT_S = 1.0  # how long an answer to "has this barrier released?" may take
CHECKPOINT_WAIT_S = 60  # a restarted miner waits this long for a gateway's checkpoint
SETTLE_LAYERS = 2  # after a fault schedule's last heal, before the nodes are judged
WALLET_FUNDS = 10**9  # the genesis balance of the wallet the transfers are sent from


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
class NodeAddr:
    """A node's number in a fault schedule (gateways, then miners) and its data address."""

    index: int
    ip: str


GENESIS = sdk.Topic("genesis", float)
POETS = sdk.Topic("poets", PoetAddr)
GATEWAYS = sdk.Topic("gateways", GatewayAddr)
POETS_SERVING = "poets-serving"
"""The state each PoET signals once it answers submissions."""
REPORTS = sdk.Topic("reports", Report)
REPORTERS = ("gateway", "miner")
"""The roles whose instances publish a report, each once: the PoETs publish none."""
NODES = sdk.Topic("nodes", NodeAddr)
TXS = sdk.Topic("transactions", list)


def poet_key_seed(seq: int) -> str:
    """The seed of the PoET key of the instance with global sequence number ``seq``."""
    return f"poet-{seq}"


def compare_reports(reports: list[Report], target: int) -> list[str]:
    """Every disagreement between the nodes' reports (empty when the network agrees): the
    `start` case's checks, which every case makes."""
    if not reports:
        return ["no node reported"]
    return (checks.own_errors(reports) + checks.smeshing(reports)
            + checks.verified(reports, target) + checks.same_hashes(reports, target)
            + checks.atxs_known(reports))  # fmt: skip


def case_problems(p: Mapping[str, Any], reports: list[Report], target: int,
                  equivocators: list[str], tx_ids: list[str]) -> list[str]:  # fmt: skip
    """The checks a case's params ask for, beside `compare_reports`'s."""
    problems = compare_reports(reports, target)
    epochs = target // int(p["layers_per_epoch"])
    if p.get("check_atx_epochs"):
        problems += checks.atx_every_epoch(reports, 1, epochs)
    if p.get("check_state"):
        problems += checks.same_state(reports, int(p.get("checkpoint_layer", 0)))
        problems += checks.rewards_reach_coinbases(reports)
    if p.get("check_eligibility"):
        problems += checks.same_eligibilities(reports)
    if float(p.get("shared_keys", 0)) > 0:
        problems += checks.malfeasance_detected(reports, equivocators)
    if (count := int(p.get("transfers", 0))) > 0:
        problems += checks.transactions_applied(reports, tx_ids)
        if tx_ids:
            problems += checks.transfers_received(reports, dict(transfers(count)))
    if int(p.get("checkpoint_layer", 0)) > 0:
        problems += checks.same_checkpoint(reports)
    if (least := int(p.get("min_blocks", 0))) > 0:
        problems += checks.enough_blocks(reports, int(p["layers_per_epoch"]), target, least)
    return problems


def judged_reports(first: list[Report], mine: Report) -> list[Report]:
    """The reports a node checks: the `first` to arrive (as many as must), and its own.
    With `may_fail`, more nodes may report than must: one whose report came after the
    first would be compared by nobody, and a node that diverged passed unseen."""
    return first if any(r.seq == mine.seq for r in first) else [*first, mine]


def expected_reports(p: Mapping[str, Any], nodes: int) -> int:
    """Nodes that must report: all but the miners a fault may kill for good (`may_fail`
    percent of the miners, rounded up as the fault selector does), and one miner at least
    unless `may_fail` is 100: with 2 miners, 60 % rounded up was both, and a network left
    with no miner passed as "the rest agree"."""
    miners = nodes - int(p["gateways"])
    may_fail = float(p.get("may_fail", 0))
    dead = math.ceil(miners * may_fail / 100)
    return nodes - (dead if may_fail >= 100 else max(0, min(dead, miners - 1)))


def equivocators(p: Mapping[str, Any], nodes: int) -> dict[int, int]:
    """Miner node index -> the node index whose key it shares (`shared_keys` percent of the
    miners, in pairs: the second of each pair signs with the first's key)."""
    gateways = int(p["gateways"])
    miners = list(range(gateways, nodes))
    pairs = equivocator_pairs(len(miners), float(p.get("shared_keys", 0)))
    return {miners[2 * i + 1]: miners[2 * i] for i in range(pairs)}


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
        # smeshing: the submitter's wallet is funded at genesis, as the system tests' are
        genesis_accounts=((wallet_of(env.run_id).address, WALLET_FUNDS),)
        if int(p.get("transfers", 0)) > 0 else (),
    )
    epoch_duration = params.layers_per_epoch * layer_duration
    target = int(p["layers"])
    schedule = _fault_schedule(env)  # checked with the other params (_runcheck) before
    node_index = env.global_seq - int(p["poets"])  # in a schedule: gateways, then miners
    expected = expected_reports(p, nodes)
    checking = n - (nodes - expected)  # instances that check: every one's checks wait for them
    shared = equivocators(p, nodes)
    first_miner = int(p["gateways"])
    late_count = int(p.get("late", 0))
    late_at = float(p["genesis_offset"]) + int(p.get("late_layers", 0)) * layer_duration
    late_start = {i: 0.0 for i in range(nodes - late_count, nodes)}

    def identity_of(index: int) -> str:
        # equivocation: the second of a pair signs with the first's key
        return f"{env.run_id}/node-{shared.get(index, index)}"

    bad_keys = sorted({Signer(identity_of(i)).public_hex for i in shared})

    await env.network.wait_initialized()
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
    await env.network.shape_and_wait(shape, rules=rules)
    # Genesis counts from when every link is shaped (shaping 100 instances takes seconds).
    if env.global_seq == 0:
        await GENESIS.publish(env.sync, time.time() + float(p["genesis_offset"]))
    genesis = float(await _first(GENESIS, env.sync))
    late_start = {i: genesis - float(p["genesis_offset"]) + late_at for i in late_start}
    poet_addresses = [x.address for x in poets]
    if cut and not env.network.configurable:
        # Without a configurable network, "unreachable" is a port nothing listens on.
        poet_addresses = [f"{x.ip}:1" for x in poets]
    my_poets = poet_addresses
    if p.get("poet_groups") and role == "miner":  # different_poets: one PoET per group
        my_poets = [poet_addresses[node_index % len(poet_addresses)]]
    await env.record_message(f"{role} at {ip}; genesis in {genesis - time.time():.1f}s")

    async with anyio.create_task_group() as tg:
        if role == "poet":
            # different_poets: each PoET's rounds are phase-shifted by its position.
            shift = (env.global_seq) * float(p.get("poet_phase_shift", 0))
            config = PoetConfig(
                genesis=genesis + shift,
                round_duration=epoch_duration / 2,
                chain_length=int(p["chain_length"]),
                key_seed=poet_key_seed(env.global_seq),
                data_dir=str(env.outputs_path / "data"),  # its rounds outlive a restart
            )
            service = await tg.start(
                lambda task_status: serve_poet(
                    config, f"{ip}:{POET_PORT}", [g.grpc for g in gateways],
                    clock=HarnessClock(env.clock), task_status=task_status,
                )
            )
            await env.sync.signal_entry(POETS_SERVING)
            reports = await _collect_reports(env, expected)
            problems = case_problems(p, reports, target, bad_keys, await _tx_ids(env))
            delivered = sum(1 for b in service.broadcasts.values() if b.delivered)
            made = checks.blocks_made(reports, params.layers_per_epoch, target)
            await env.record_message(
                f"PoET broadcast {delivered} proofs; {len(reports)} reports; {made}"
            )
        else:
            if env.is_restart and await _reached(env.sync, CHECKED, checking):
                raise sdk.TestFailure(
                    "started again after every node that must report had made its checks "
                    "and ended: no network is left to sync from (start it again earlier, or "
                    "run more layers)")
            if node_index in late_start:  # add_nodes: this miner joins late, from genesis
                await anyio.sleep(max(0.0, late_start[node_index] - time.time()))
            if role == "miner":
                # A miner registers with every PoET at its first try: each must be serving
                # by then (a node that starts first would register with fewer).
                await env.sync.barrier(POETS_SERVING, int(p["poets"]), watch=True)
            data_dir, checkpoint = env.outputs_path / "data", None
            if env.is_restart and (layer := int(p.get("checkpoint_layer", 0))) > 0:
                data_dir = env.outputs_path / f"data-{env.restarts}"
                checkpoint = await _fetch_checkpoint(gateways[0], layer, env.outputs_path)
            config_node = NodeConfig(
                identity=identity_of(node_index),
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
                data_dir=str(data_dir),
                checkpoint=checkpoint,
                honest_malfeasance=node_index >= int(p.get("dishonest", 0)),
            )
            node = await tg.start(
                lambda task_status: serve_node(
                    config_node,
                    grpc_address=f"{ip}:{GRPC_PORT}",
                    metrics_address=f"{ip}:{METRICS_PORT}",
                    poets=my_poets,
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
                restarted_at=time.time() if env.is_restart or node_index in late_start else None,
                judge_after=genesis + float(p.get("judge_after", 0)),
            )
            mine = await _watch_own_node(env, ip, watch, p, role == "miner" and node_index == first_miner)
            await REPORTS.publish(env.sync, mine)
            if mine.error:
                raise sdk.TestFailure(mine.error)
            reports = judged_reports(await _collect_reports(env, expected), mine)
            if expected == nodes:
                # Every node has reported: nobody needs this one's gossip any more, and on
                # a loaded machine its protocol would slow every instance's checks (at 100
                # nodes the last one checked 43 s after the last report). (With `may_fail`
                # a node may still be watching: it may need its peers.)
                node.stop()
            problems = case_problems(p, reports, target, bad_keys, await _tx_ids(env))
        if not problems:
            # Keep serving until every instance has checked: others may still query us.
            await env.sync.signal_and_wait(CHECKED, checking)
        tg.cancel_scope.cancel()
    if problems:
        raise sdk.TestFailure("; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))


async def _collect_reports(env: sdk.RunEnv, expected: int) -> list[Report]:
    """The first `expected` nodes' reports; as soon as too many nodes have ended without
    one, a failure naming them (it waited for the run's timeout, naming none)."""
    try:
        return await REPORTS.collect(env.sync, expected, one_per_instance=True,
                                     roles=REPORTERS)
    except sdk.SubscriptionFailed as e:
        raise sdk.TestFailure(f"too few nodes reported: {e}") from None


async def _reached(sync: sdk.SyncClient, state: str, target: int) -> bool:
    """Whether `target` instances have signalled `state` already (a barrier that does not
    release at once, within `REACHED_WAIT_S`, is taken as not reached)."""
    with anyio.move_on_after(REACHED_WAIT_S):
        await sync.barrier(state, target)
        return True
    return False


async def _fetch_checkpoint(gateway: GatewayAddr, layer: int, outputs: Path) -> str:
    """checkpoint: a restarted miner recovers from a checkpoint a gateway serves, as
    go-spacemesh's TestCheckpoint restarts nodes from one taken over its API; the file."""
    api = NodeApi(gateway.ip, GRPC_PORT)
    try:
        with anyio.fail_after(CHECKPOINT_WAIT_S):
            while True:
                try:
                    data = await api.checkpoint(layer)
                    break
                except GRPCError as exc:
                    if exc.status is not Code.FAILED_PRECONDITION:  # not just "not yet"
                        raise sdk.TestFailure(f"the gateway served no checkpoint: {exc}") from None
                    await anyio.sleep(POLL_S)
    except TimeoutError:
        raise sdk.TestFailure(
            f"the gateway had not applied layer {layer} {CHECKPOINT_WAIT_S} s after the restart"
        ) from None
    finally:
        api.close()
    path = outputs / f"checkpoint-{layer}.json"
    path.write_bytes(data)
    return str(path)


def _fault_schedule(env: sdk.RunEnv) -> FaultSchedule | None:
    """The case's fault schedule (None without one); a TestFailure if this runner cannot
    play it."""
    text = str(env.params.get("schedule") or "")
    if not text:
        return None
    if not env.network.configurable:
        raise sdk.TestFailure("a fault schedule needs a runner that shapes links (local:netns)")
    return FaultSchedule.from_json(text)


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
    poll: float = POLL_S
    """Seconds between two looks at the node: twice a layer (`POLLS_PER_LAYER`), every
    `POLL_S` at most. Each look is a unary gRPC call that costs the node's process a
    millisecond or two of CPU: every 0.5 s at 4 s layers, they took a sixth of it."""
    earliest: float = 0.0
    """When the target layer starts: no node verifies it before, so no look before it can
    pass the watch (`wait`)."""
    layer: float = 0.0
    """A layer's duration: while no look can end the watch, one look a layer still tells
    the run's progress line how far the node got (`wait`)."""
    restarted: bool = False
    """Started again (or late): what it verified counts only once it has had a peer to
    sync from (`step`)."""
    peered_at: float | None = None
    """When a look first found it connected (for a restarted node)."""

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
        judge_after: float = 0.0,
    ) -> Watch:
        """The watch of one node: verified `target` by `hdist + 1` layers later (plus
        `check_slack`); with `healed_at` (seconds from genesis when a fault schedule's last
        cut ends), judged only `SETTLE_LAYERS` layers after it, once the network had the
        time to converge again; judged no earlier than `judge_after` (a time) either, and
        the deadline then moves past both. A node restarted at `restarted_at` (a time) starts its
        smeshing over: a miner has two epochs from then to publish an ATX (a PoET round
        it joins late may close too late for the epoch it targets); and it has `hdist + 1`
        layers from then (plus `check_slack`) to sync and verify the target."""
        deadline = genesis + (target + params.hdist + 1) * layer_duration + check_slack
        if restarted_at is not None:
            deadline = max(deadline, restarted_at + (params.hdist + 1) * layer_duration
                           + check_slack)
        not_before = judge_after  # a composition's partition: judged after it healed
        if healed_at:
            not_before = max(not_before, genesis + healed_at + SETTLE_LAYERS * layer_duration)
        # A node is judged no earlier than `not_before`: its deadline comes after.
        deadline = max(deadline, not_before + check_slack)
        epoch = params.layers_per_epoch * layer_duration
        atx_after = genesis + epoch
        if restarted_at is not None:
            atx_after = max(atx_after, restarted_at + 2 * epoch)
        poll = max(POLL_S, layer_duration / POLLS_PER_LAYER)
        return cls(role, target, genesis, epoch, deadline, not_before, atx_after=atx_after,
                   poll=poll, earliest=genesis + target * layer_duration, layer=layer_duration,
                   restarted=restarted_at is not None)  # fmt: skip

    def wait(self, now: float) -> float:
        """Seconds until the next look: `poll`, or a layer while no look could end the
        watch (before `earliest` and `not_before`, but for a miner's ATX check). At 100
        nodes two looks a layer before the target cost the network a few percent of its
        CPU; one a layer keeps the run's progress line ("layer 5 verified 63/100") moving."""
        until = max(self.earliest, self.not_before)
        if self.role == "miner" and not self.atx_checked:
            until = min(until, self._atx_at)
        return max(self.poll, min(until - now, self.layer or until - now))

    def wants_atx_status(self, now: float) -> bool:
        """True once for a miner, one epoch after genesis: one epoch is enough for a PoET
        round and an ATX, so a miner without one fails early, with the reason."""
        return self.role == "miner" and not self.atx_checked and now > self._atx_at

    @property
    def _atx_at(self) -> float:
        return self.atx_after or self.genesis + self.epoch_duration

    def step(
        self,
        now: float,
        status: Mapping[str, Any],
        atx_status: tuple[int, str] | None = None,
    ) -> str | None:
        """After one poll (`status` as NodeService.Status; `atx_status` = (atxs published,
        last error) when `wants_atx_status` asked for it): None to poll again, else the
        error to report ("" when the node verified the target). A restarted node must have
        been connected one look before: alone, it verifies the layers past its vote window
        from what it held when it stopped (empty), and would be judged on those."""
        if self.peered_at is None and status["connected_peers"] > 0:
            self.peered_at = now
        synced = not self.restarted or (self.peered_at is not None and self.peered_at < now)
        if status["verified_layer"] >= self.target and now >= self.not_before and synced:
            return ""
        if atx_status is not None:
            self.atx_checked = True
            if atx_status[0] == 0:
                why = atx_status[1] or "no PoET proof arrived"
                if self.atx_after > self.genesis + self.epoch_duration:
                    return f"miner published no ATX in the two epochs after its (re)start: {why}"
                return f"miner published no ATX in epoch 0: {why}"
        if now > self.deadline:
            if self.restarted and self.peered_at is None:
                return ("started again, but found no peer to sync from by its deadline (top "
                        f"layer {status['top_layer']}): had every other node ended?")
            return (
                f"node verified layer {status['verified_layer']}, not {self.target}, by the "
                f"deadline (top layer {status['top_layer']}, {status['connected_peers']} peers)"
            )
        return None


async def _watch_own_node(env: sdk.RunEnv, ip: str, watch: Watch, p: Mapping[str, Any],
                          submitter: bool) -> Report:  # fmt: skip
    """Poll this instance's node through its gRPC API until `watch` says stop; its report.
    The `submitter` sends the case's transfers through its node's API once it has an ATX."""
    api = NodeApi(ip, GRPC_PORT, until=watch.deadline)
    transfers = int(p.get("transfers", 0)) if submitter else 0
    verified = -1
    # The run's progress line shows the latest layer nodes verified ("layer 5 verified
    # 63/100"). A restarted instance says nothing: it would count its layers twice. Layer 0
    # is not said: a node that verified nothing reports 0 (the API's numbers are unsigned),
    # and "layer 0 verified" came before genesis.
    said = 1 << 30 if env.is_restart else 0
    error: str | None = None
    try:
        while True:
            try:
                st = await api.status()
                now = time.time()
                atx_status = None
                if watch.wants_atx_status(now):
                    atx_status = await api.smeshing_status()
            except TimeoutError:
                # A starved machine (a hundred instances on two cores) answers late: each
                # call waits until the watch's deadline (`NodeApi.until`), which says
                # when it is too late.
                if time.time() > watch.deadline:
                    error = "the node's API did not answer by the deadline"
                    break
                continue
            verified = st.verified_layer
            if verified > said:
                said = verified
                await env.sync.signal_entry(f"layer {verified} verified")
            status = {"verified_layer": st.verified_layer, "top_layer": st.top_layer,
                      "connected_peers": st.connected_peers}  # fmt: skip
            if transfers and atx_status and atx_status[0]:
                await TXS.publish(env.sync, await submit_transfers(api, transfers, wallet_of(env.run_id)))
                transfers = 0
            error = watch.step(now, status, atx_status)
            if error is not None:
                break
            await anyio.sleep(watch.wait(time.time()))
        if transfers and not error:
            error = "the submitter's node published no ATX: no transfers were sent"
        for tries in itertools.count(1):
            try:
                report = await observe(env, api, watch, verified, error, p)
            except TimeoutError:
                # As above: a starved machine answers late. Ask again until the watch's
                # deadline (a few times at least), then fail with what the watch found,
                # not crash on one call's deadline.
                if tries >= OBSERVE_TRIES and time.time() > watch.deadline:
                    break
                continue
            # The layers were read after the status: votes that came between (a healed
            # partition's) may have reopened a layer the tortoise had verified, and its hash
            # may still change. Read them again while the watch has time; then the checks
            # say which layer is not verified.
            if (not error and checks.unconfirmed(report, watch.target) is not None
                    and time.time() + watch.poll < watch.deadline):
                await anyio.sleep(watch.poll)
                continue
            return report
        found = f"{error}; " if error else ""
        raise sdk.TestFailure(
            f"{found}the node's API did not answer the final checks ({tries} tries)"
        )
    finally:
        api.close()


@dataclasses.dataclass(frozen=True)
class Wallet:
    """The account the case's transfers are sent from (funded at genesis)."""

    signer: Signer

    @property
    def address(self) -> str:
        return _txs.address_of(self.signer.public_hex)


def wallet_of(run_id: str) -> Wallet:
    """The run's wallet: every node funds it at genesis, the submitter signs with it."""
    return Wallet(Signer(f"{run_id}/wallet"))


def transfers(count: int) -> list[tuple[str, int]]:
    """The case's `count` spends: (recipient address, amount), each to a fresh address."""
    return [(_txs.address_of(Signer(f"recipient/{i}").public_hex), 10 + i) for i in range(count)]


async def submit_transfers(api: NodeApi, count: int, wallet: Wallet) -> list[str]:
    """Spawn `wallet`, then `count` spends to fresh addresses, through
    TransactionService.SubmitTransaction; the tx ids."""
    signer = wallet.signer
    raws = [_txs.spawn_tx(signer, 0, 1)]
    for i, (to, amount) in enumerate(transfers(count)):
        raws.append(_txs.spend_tx(signer, to, amount, i + 1, 1))
    ids = []
    for raw in raws:
        tx_id, error = await api.submit_tx(raw)
        if error:
            raise sdk.TestFailure(f"SubmitTransaction refused a transfer: {error}")
        ids.append(tx_id)
    return ids


async def _tx_ids(env: sdk.RunEnv) -> list[str]:
    if int(env.params.get("transfers", 0)) <= 0:
        return []
    with anyio.move_on_after(30):  # the submitter failed (and said why) if none came
        return list(await _first(TXS, env.sync))
    return []


async def observe(env: sdk.RunEnv, api: NodeApi, watch: Watch, verified: int,
                  error: str, p: Mapping[str, Any] | None = None) -> Report:  # fmt: skip
    """Everything the checks compare, read from one node's API."""
    p = p or {}
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "layers": lambda: api.layers(0, watch.target),
        "atxs": api.atxs,
        "smesher": api.smesher_id,
        "is_smeshing": api.is_smeshing,
        "smeshing_status": api.smeshing_status,
    }
    if p.get("check_state") or int(p.get("transfers", 0)) > 0:  # the recipients' balances
        calls["accounts"] = api.accounts
    if p.get("check_state"):
        calls["coinbase"] = lambda: api.smesher.Coinbase(empty_pb2.Empty(), timeout=api.timeout())
    if p.get("check_eligibility"):
        last = watch.target // max(1, int(p["layers_per_epoch"]))
        for e in range(1, last + 1):
            calls[f"eligibilities:{e}"] = functools.partial(api.eligibilities, e)
    if float(p.get("shared_keys", 0)) > 0:
        calls["malicious"] = api.malfeasance_known
    if int(p.get("transfers", 0)) > 0:
        tx_ids = await _tx_ids(env)
        calls["tx_states"] = lambda: api.tx_states(tx_ids)
    if (layer := int(p.get("checkpoint_layer", 0))) > 0:
        calls["checkpoint"] = lambda: api.checkpoint(layer)
    got = await _at_once(calls)
    layers, atxs = got["layers"], got["atxs"]
    report = Report(
        seq=env.global_seq,
        instance=env.instance_id,
        role=watch.role,
        smesher=got["smesher"],
        is_smeshing=got["is_smeshing"],
        verified_layer=verified,
        hashes=[layer.hash for layer in layers],
        atx_smeshers=sorted({a.smesher for a in atxs}),
        smeshing_error=got["smeshing_status"][1],
        error=error,
        # Only the check that asks for it: every instance reads every report, and at 100
        # nodes these were nine tenths of their 5.6 MB.
        atxs=[[a.smesher, a.target_epoch] for a in atxs] if p.get("check_atx_epochs") else [],
        state_roots=[layer.state_root for layer in layers],
        blocks=[layer.block for layer in layers],
        statuses=[layer.status for layer in layers],
    )
    if "accounts" in got:
        report.accounts = {k: list(v) for k, v in got["accounts"].items()}
    if "coinbase" in got:
        report.coinbase = got["coinbase"].account_id.address
    report.eligibilities = {k.partition(":")[2]: v for k, v in got.items()
                            if k.startswith("eligibilities:")}
    if "malicious" in got:
        report.malicious = sorted({m.smesher for m in got["malicious"]})
    report.tx_states = got.get("tx_states", {})
    if "checkpoint" in got:
        report.checkpoint = hashlib.sha256(got["checkpoint"]).hexdigest()
    return report


async def _at_once(calls: Mapping[str, Callable[[], Awaitable[Any]]]) -> dict[str, Any]:
    """Each call's result by name, the calls made concurrently. A starved node answers each
    call only when its loop comes round: one after another, a 100-node run's nodes took up
    to 28 s for these. The first call's error (in `calls`' order) is raised."""
    results: dict[str, Any] = {}
    errors: dict[str, Exception] = {}

    async def one(name: str, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            results[name] = await call()
        except Exception as e:  # raised below: the first in order
            errors[name] = e

    async with anyio.create_task_group() as tg:
        for name, call in calls.items():
            tg.start_soon(one, name, call)
    for name in calls:
        if name in errors:
            raise errors[name]
    return results
