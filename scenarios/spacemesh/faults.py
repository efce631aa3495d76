"""``python -m scenarios.spacemesh.faults``: search fault schedules in simulation, then replay.

hypothesis draws lists of faults from the harness's whole vocabulary (`harness.faults`:
partitions, isolation, link shapes, heal, kill, stop, restart, pause, resume, clock skew),
each list is played on a whole simulated cluster in virtual time, and each node is judged
when and as the ``spacemesh:faults`` test case judges it through its gRPC API
(`plan.Watch`, `plan.compare_reports`). The first failing list is shrunk to a minimal one,
written to a file in the form ``harness run --faults FILE`` reads, and printed with the
command that replays it in network namespaces::

    python -m scenarios.spacemesh.faults --miners 3 --examples 30 --no-heal
    harness run spacemesh:faults -i 5 --faults outputs/spacemesh-faults/found-....json ...

Instances are named as that run names them: ``single/0`` the PoET, then the gateways, then
the miners; `at` is seconds after the instances start (genesis `genesis_offset` later).
Every simulated node and PoET has a data directory (temporary, on /dev/shm), as the plan's
have, so a restarted one resumes what it kept.

``--cuts`` searches the older, narrower schedules of timed cuts between nodes instead
(numbered gateways first, then miners, the PoET not cut; times in seconds from genesis),
replayed with ``-p schedule=...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio
import trio.testing

from harness.faults import (
    ACTIONS,
    Fault,
    FaultError,
    FaultSchedule,
    FaultScheduleError,
    Member,
    load_faults,
    schedules,
)
from harness.faults import without_each as leave_out_each

from ._checks import Report
from ._cli import LOG_LEVELS, MAX_LAYERS, MAX_NODES, ArgumentParser, configure_logging
from ._cluster import MemoryCluster, SimProcess, memory_cluster
from ._memnet import MemoryLink
from ._mesh import MeshParams
from ._node import Node
from ._simfaults import UNMODELLED, Plan, Player, members
from .plan import POLL_S, SETTLE_LAYERS, Watch, compare_reports

Faults = tuple[Fault, ...]
SEARCHED = ("partition", "isolate", "shape", "heal", "kill", "restart", "pause", "skew")
"""What a search draws by default: every action the simulation models, less `stop` (here
the same as kill) and `resume` (a no-op unless something is paused)."""
MODELLED = tuple(a for a in ACTIONS if a not in UNMODELLED)
ROLES = ("poet", "gateway", "miner")


@dataclasses.dataclass(frozen=True)
class Setup:
    """The network a schedule is played on (the ``spacemesh:faults`` params it replays as)."""

    miners: int = 3
    gateways: int = 1
    layers: int = 8
    layer_duration: float = 2.0
    layers_per_epoch: int = 3
    latency: float = 0.05
    proposals_per_layer: int = 50
    pow_bits: int = 6
    target_peers: int = 6
    check_slack: float = 20.0
    chain_length: int = 1000
    genesis_offset: float = 4.0
    seed: int = 0

    @property
    def nodes(self) -> int:
        """Gateways and miners: the instances a cut schedule numbers."""
        return self.gateways + self.miners

    def members(self) -> list[Member]:
        """The instances of the replay run, as fault selectors see them."""
        return members(self.gateways, self.miners)

    def params(self) -> MeshParams:
        """The mesh parameters the plan derives from the same params."""
        return MeshParams(
            layers_per_epoch=self.layers_per_epoch,
            pow_bits=self.pow_bits,
            proposals_per_layer=self.proposals_per_layer,
        )

    def healed_at(self, plan: Plan) -> float:
        """When a fault list has settled, in seconds from genesis (0: before it): the nodes
        are judged `SETTLE_LAYERS` after it, in simulation and in the replayed run."""
        return max(0.0, plan.settled_at() - self.genesis_offset)

    def replay_command(self, schedule: FaultSchedule | Faults, file: Path | None = None) -> str:
        """The `harness run` that plays `schedule` in namespaces on the same network: cuts
        as the `schedule` param, a fault list from `file` (written by `write_faults`)."""
        words = ["harness", "run", "spacemesh:faults", "-i", str(self.nodes + 1)]
        if not isinstance(schedule, FaultSchedule):
            if file is None:
                raise ValueError("a fault list replays from a file: give `file`")
            words += ["--faults", str(file)]
        for name, value in (
            ("gateways", self.gateways),
            ("layers", self.layers),
            ("layer_duration", f"{self.layer_duration:g}s"),
            ("layers_per_epoch", self.layers_per_epoch),
            ("latency", f"{self.latency * 1000:g}ms"),
            ("proposals_per_layer", self.proposals_per_layer),
            ("pow_bits", self.pow_bits),
            ("target_peers", self.target_peers),
            ("check_slack", f"{self.check_slack:g}s"),
            ("chain_length", self.chain_length),
        ):
            words += ["-p", f"{name}={value}"]
        if isinstance(schedule, FaultSchedule):  # times from genesis: the offset is free
            words += ["-p", f"schedule={schedule.to_json()}"]
        else:  # times from the start: genesis as simulated; the default cuts off
            words += ["-p", f"genesis_offset={self.genesis_offset:g}s", "-p", "schedule="]
            # Miners it may kill for good need not report, as the simulation judged them
            # (without it the survivors waited for their reports until the timeout).
            role = {m.id: m.role for m in self.members()}
            plan = Plan.of(schedule, self.members())
            gone = sum(1 for i, expect in plan.dead_at_end().items()
                       if expect == "may_die" and role[i] == "miner")
            if gone:
                words += ["-p", f"may_fail={math.ceil(100 * gone / self.miners)}"]
            # Judged when the simulation judged them: `SETTLE_LAYERS` after the last fault
            # settled (a plan without it judged at its usual time, before a late fault had
            # been played: the simulation said "survived", the run failed).
            healed = self.healed_at(plan)
            if healed:
                after = healed + SETTLE_LAYERS * self.layer_duration
                words += ["-p", f"judge_after={after:g}s"]
        return shlex.join(words)


def faults_json(faults: Sequence[Fault]) -> str:
    """The ``--faults FILE`` form: ``{"faults": [...]}`` of `Fault.to_data` tables."""
    return json.dumps({"faults": [f.to_data() for f in faults]}, indent=2) + "\n"


def write_faults(faults: Sequence[Fault], directory: Path) -> Path:
    """Write `faults` to a file named after its content in `directory`; its path."""
    text = faults_json(faults)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"found-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    path.write_text(text)
    return path


_LIVE: set[str] = set()
"""The data directories of the simulated runs in progress (removed on an interrupt)."""


def simulate(setup: Setup, schedule: FaultSchedule | Faults) -> list[str]:
    """Play `schedule` on a simulated cluster; the problems the plan's check finds (none:
    the network survived it). Each node is watched as its instance watches it in a real run
    (`plan.Watch`, every `Watch.poll`), so its report is taken at the same moment; a node
    killed for good is not judged when its fault allowed it to die ('may_die'), and fails
    when it was meant to recover. A FaultError (one line) when it cannot be played.

    Every node and PoET has a data directory (a temporary one), as the plan's have: a
    restarted node resumes what it kept and dials the peers it was connected to, a
    restarted PoET closes the rounds it had open."""
    if isinstance(schedule, FaultSchedule):
        schedule.check(setup.nodes)
        plan = None
    else:
        plan = Plan.of(schedule, setup.members())
    reports: list[Report] = []
    lost: list[str] = []

    async def run(data: str) -> None:
        async with (
            memory_cluster(
                miners=setup.miners,
                gateways=setup.gateways,
                seed=setup.seed,
                layer_duration=setup.layer_duration,
                genesis_delay=setup.genesis_offset,
                params=setup.params(),
                link=MemoryLink(setup.latency),
                poet_chain_length=setup.chain_length,
                target_peers=setup.target_peers,
                data_root=data,
            ) as c,
            anyio.create_task_group() as tg,
        ):
            t0 = c.clock.now()
            genesis = t0 + setup.genesis_offset
            if plan is None:
                assert isinstance(schedule, FaultSchedule)
                tg.start_soon(_play_cuts, c, schedule, genesis)
                judge = _Judge(c, setup, genesis, schedule.healed_by(), None, {})
            else:
                player = Player(c, plan, t0)
                tg.start_soon(player.run)
                healed = setup.healed_at(plan)
                judge = _Judge(c, setup, genesis, healed, player, plan.dead_at_end())
            reports.extend(await judge.run())
            poet = next(p for p in c.processes.values() if p.role == "poet")
            if not poet.alive:  # killed for good: nothing checks the reports
                lost.append(f"{poet.id} (the PoET) was dead at the end: it checks every "
                            "report, so the run could not be judged")
            tg.cancel_scope.cancel()

    clock = trio.testing.MockClock(autojump_threshold=0)
    # In memory where there is a tmpfs: the nodes' databases are created, committed to
    # and closed in every one of a search's runs (on a disk, a third of its time).
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix=f"spacemesh-sim-{os.getpid()}-", dir=shm) as data:
        _LIVE.add(data)
        try:
            anyio.run(run, data, backend="trio", backend_options={"clock": clock})
        finally:
            _LIVE.discard(data)
    return lost + compare_reports(reports, setup.layers)



async def _play_cuts(c: MemoryCluster, schedule: FaultSchedule, genesis: float) -> None:
    hosts = [n.config.listen for n in c.nodes]
    cut: set[tuple[int, int]] = set()
    for t, now_cut in schedule.steps():
        await c.clock.sleep_until(genesis + t)
        for src, dst in cut - now_cut:
            c.net.reset_link(hosts[src], hosts[dst])
        for src, dst in now_cut - cut:
            c.net.set_link(hosts[src], hosts[dst], MemoryLink(down=True), both=False)
        cut = now_cut


@dataclasses.dataclass
class _Judge:
    """Every node instance's watch, as the plan runs it inside the instance: a dead or
    paused instance watches nothing, a restarted one starts a new watch."""

    c: MemoryCluster
    setup: Setup
    genesis: float
    healed_at: float | None
    player: Player | None
    """What plays the fault list (None: cuts, which kill nobody)."""
    dead_at_end: dict[str, str]

    def watch(self, proc: SimProcess) -> Watch:
        return Watch.of(
            proc.role,
            target=self.setup.layers,
            genesis=self.genesis,
            layer_duration=self.setup.layer_duration,
            params=self.setup.params(),
            check_slack=self.setup.check_slack,
            healed_at=self.healed_at,
            restarted_at=proc.started_at if proc.restarts else None,
        )

    async def run(self) -> list[Report]:
        """The reports of the nodes that are judged, each taken when its watch stops."""
        procs = self.c.node_processes()
        watches = {p.id: (p.restarts, self.watch(p)) for p in procs}
        poll = min((w.poll for _, w in watches.values()), default=POLL_S)  # one layer length
        done: dict[str, Report | None] = {}
        while len(done) < len(procs):
            now = self.c.clock.now()
            for seq, proc in enumerate(procs, start=1):
                if proc.id in done:
                    continue
                if not proc.alive:
                    if self.player is not None and self.player.finished:
                        done[proc.id] = self._dead(seq, proc)
                    continue
                if proc.paused:
                    if self.player is not None and self.player.finished:  # for good
                        done[proc.id] = _stuck(seq, proc)
                    continue
                if watches[proc.id][0] != proc.restarts:  # the instance re-entered the plan
                    watches[proc.id] = (proc.restarts, self.watch(proc))
                watch = watches[proc.id][1]
                node = proc.part
                assert isinstance(node, Node)
                atx = (node.atxs_published, node.last_error) if watch.wants_atx_status(now) else None
                error = watch.step(now, node.status(), atx)
                if error is not None:
                    done[proc.id] = _report(seq, proc, watch, error)
            await anyio.sleep(poll)
        return [r for r in done.values() if r is not None]

    def _dead(self, seq: int, proc: SimProcess) -> Report | None:
        """None for a miner that may die; a failed report for any other (the plan's
        `may_fail` spares miners only: it waits for every gateway's report)."""
        may_die = self.dead_at_end.get(proc.id) == "may_die"
        if may_die and proc.role == "miner":
            return None
        return _failed(seq, proc, f"a {proc.role} dead at the end: the plan waits for its "
                       "report (may_fail spares miners only)" if may_die else "dead at the "
                       "end, but nothing allowed it to die (a fault expected it to recover, "
                       "or it never came back)")  # fmt: skip


def _stuck(seq: int, proc: SimProcess) -> Report:
    """The failed report of a node paused for good: its instance never ends, and the real
    run fails it at the run's timeout (the simulation waited for it for ever)."""
    return _failed(seq, proc, "paused at the end and never resumed: its instance would "
                   "still run at the run's timeout")


def _failed(seq: int, proc: SimProcess, why: str) -> Report:
    """The report of a node the judge could not watch to the end: nothing verified."""
    node = proc.part
    assert isinstance(node, Node)
    return Report(seq, proc.id, proc.role, node.smesher_id, node.config.smeshing, 0, [], [],
                  node.last_error, why)  # fmt: skip


def _report(seq: int, proc: SimProcess, watch: Watch, error: str) -> Report:
    """What the plan's `_watch_own_node` publishes, from the node itself."""
    node = proc.part
    assert isinstance(node, Node)
    return Report(
        seq=seq,
        instance=proc.id,
        role=watch.role,
        smesher=node.smesher_id,
        is_smeshing=node.config.smeshing,
        verified_layer=node.status()["verified_layer"],
        hashes=[s.hash.hex() for s in node.layers()[: watch.target + 1]],
        statuses=[int(s.status) for s in node.layers()[: watch.target + 1]],
        atx_smeshers=sorted({a["smesher"] for a in node.mesh.atxs.values()}),
        smeshing_error=node.last_error,
        error=error,
    )


def takes_down_one_of(faults: Sequence[Fault], members: Sequence[Member],
                      roles: Sequence[str]) -> bool:  # fmt: skip
    """True when every kill, stop and restart in `faults` hits one instance, of `roles`."""
    for f in faults:
        if f.action in ("kill", "stop", "restart"):
            chosen = f.resolve(members).instances
            role = {m.id: m.role for m in members}
            if len(chosen) > 1 or any(role[i] not in roles for i in chosen):
                return False
    return True


def fault_lists(
    setup: Setup,
    *,
    actions: Sequence[str] = SEARCHED,
    heal: bool = True,
    max_faults: int = 2,
    one_down: Sequence[str] | None = None,
) -> Any:
    """The hypothesis strategy of fault lists a search draws: one to `max_faults` faults
    of `actions` between one epoch after genesis and the target layer, each undone one to
    three layers later (with `heal`, every fault that can be undone is); with `one_down`,
    every kill, stop and restart takes down one instance of those roles."""
    from harness.faults import fault_lists

    layer, off = setup.layer_duration, setup.genesis_offset
    epoch = setup.layers_per_epoch * layer
    lists = fault_lists(setup.members(), actions=actions,
                        at=(off + epoch, off + max(epoch, (setup.layers - 1) * layer)),
                        duration=(layer, 3 * layer), max_faults=max_faults, heal=heal)
    if one_down is not None:
        roles, everyone = tuple(one_down), setup.members()
        lists = lists.filter(lambda fs: takes_down_one_of(fs, everyone, roles))
    return lists


@dataclasses.dataclass
class Found:
    """A failing schedule, shrunk, with what the check said about it."""

    schedule: FaultSchedule | Faults
    problems: list[str]


def _brief(schedule: FaultSchedule | Faults, width: int = 100) -> str:
    """A schedule on one line, cut to `width` characters."""
    text = (schedule.to_json() if isinstance(schedule, FaultSchedule)
            else json.dumps([f.to_data() for f in schedule], separators=(",", ":")))
    return text if len(text) <= width else text[: width - 3] + "..."


def _search(strategy: Any, setup: Setup, examples: int, seed: int,
            progress: TextIO | None = None) -> Found | None:
    """Hypothesis over `strategy`; with `progress`, a line there for each schedule tried
    (a search of 30 takes minutes, and shrinking a failure as long again)."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Flaky

    found: dict[str, Found] = {}
    tried = failed_at = 0  # schedules tried; how many it took to find the first failure

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(strategy)
    def property_holds(schedule: FaultSchedule | Faults) -> None:
        nonlocal tried, failed_at
        tried += 1
        began = time.perf_counter()
        problems = simulate(setup, schedule)
        if progress is not None:
            step = (f"shrinking, try {tried - failed_at}" if failed_at
                    else f"schedule {tried} of {examples}")
            print(f"spacemesh-faults: {step}: {_brief(schedule)}: "
                  f"{'failed' if problems else 'survived'} "
                  f"({time.perf_counter() - began:.1f} s)", file=progress, flush=True)
        if problems and not failed_at:
            failed_at = tried
        if problems:
            found["last"] = Found(schedule, problems)  # hypothesis ends on the minimal one
        assert not problems, problems

    try:
        hypothesis.seed(seed)(property_holds)()
    except (AssertionError, Flaky):
        last = found.get("last")
        if last is None or isinstance(last.schedule, FaultSchedule):
            return last
        return without_each(last, setup, progress)
    return None


def without_each(found: Found, setup: Setup, progress: TextIO | None = None) -> Found:
    """`found` without each of its faults in turn (`harness.faults.without_each`): the
    shortest list that still fails, with what the check said of it."""
    assert not isinstance(found.schedule, FaultSchedule)

    def fails(fewer: Faults) -> bool:
        nonlocal found
        problems = simulate(setup, fewer)
        if progress is not None:
            left_out = next((i for i, (a, b) in enumerate(zip(fewer, found.schedule, strict=False))
                             if a != b), len(fewer))
            print(f"spacemesh-faults: without fault {left_out + 1}: {_brief(fewer)}: "
                  f"{'failed' if problems else 'survived'}", file=progress, flush=True)
        if problems:
            found = Found(fewer, problems)
        return bool(problems)

    leave_out_each(found.schedule, fails)
    return found


def search(
    setup: Setup,
    *,
    examples: int = 30,
    actions: Sequence[str] = SEARCHED,
    heal: bool = True,
    max_faults: int = 2,
    one_down: Sequence[str] | None = None,
    seed: int = 0,
    progress: TextIO | None = None,
) -> Found | None:
    """Look for a fault list the network does not survive; the shrunk one, or None
    (`fault_lists` says what is drawn). With `progress`, a line there per schedule tried."""
    bad = [a for a in actions if a not in MODELLED]
    if bad or not actions:
        raise FaultError(f"actions: the simulation models {', '.join(MODELLED)}, "
                         f"not {bad[0] if bad else 'none'!r}")  # fmt: skip
    strategy = fault_lists(setup, actions=actions, heal=heal, max_faults=max_faults,
                           one_down=one_down)  # fmt: skip
    return _search(strategy, setup, examples, seed, progress)


def search_cuts(
    setup: Setup,
    *,
    examples: int = 30,
    heal: bool = True,
    max_cuts: int = 2,
    seed: int = 0,
    progress: TextIO | None = None,
) -> Found | None:
    """Look for a schedule of cuts the network does not survive; the shrunk one, or None.
    With `progress`, a line there per schedule tried."""
    layer = setup.layer_duration
    epoch = setup.layers_per_epoch * layer
    strategy = schedules(
        setup.nodes,
        start=(epoch, max(epoch, (setup.layers - 1) * layer)),
        length=(layer, 3 * layer),
        max_cuts=max_cuts,
        heal=heal,
        # One way on TCP stalls both ways (the ACKs are lost too), which the in-memory
        # network does not model: cuts here are both ways.
        one_way=False,
    )
    return _search(strategy, setup, examples, seed, progress)


def main(argv: list[str] | None = None) -> int:
    """Search, print the minimal failing schedule and its replay command; exit 1 if found."""
    p = ArgumentParser(prog="spacemesh-faults", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # its commands
    d = Setup()
    p.add_argument("--miners", type=int, default=d.miners)
    p.add_argument("--gateways", type=int, default=d.gateways)
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--examples", type=int, default=30, help="schedules to try")
    p.add_argument("--actions", default=",".join(SEARCHED),
                   help=f"comma-separated, of: {', '.join(MODELLED)}")  # fmt: skip
    p.add_argument("--max-faults", type=int, default=2, help="faults per schedule, at most")
    p.add_argument("--no-heal", action="store_true", help="faults may last to the end")
    p.add_argument("--one-down", metavar="ROLES",
                   help="kill, stop and restart take down one instance at a time, of these "
                   "roles (comma-separated: poet, gateway, miner)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("outputs/spacemesh-faults"),
                   help="where the shrunk fault list is written")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--faults", type=Path, help="simulate this --faults file instead of searching")
    p.add_argument("--cuts", action="store_true", help="search schedules of cuts only (old form)")
    p.add_argument("--max-cuts", type=int, default=2, help="with --cuts")
    p.add_argument("--schedule", help="simulate this one schedule of cuts (JSON) instead")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="error")
    args = p.parse_args(argv)
    configure_logging(args.log_level)
    if min(args.miners, args.gateways, args.layers, args.examples, args.max_cuts,
           args.max_faults) < 1:  # fmt: skip
        p.error("--miners, --gateways, --layers, --examples, --max-faults and --max-cuts "
                "must be >= 1")  # fmt: skip
    if args.layers < d.layers_per_epoch:  # the plan's own rule, or the replay is refused
        p.error(f"--layers ({args.layers}) must reach past the first epoch "
                f"(layers_per_epoch={d.layers_per_epoch}): nothing to judge")
    if args.miners + args.gateways > MAX_NODES or args.layers > MAX_LAYERS:
        p.error(f"at most {MAX_NODES} nodes (--miners and --gateways together) and "
                f"{MAX_LAYERS} --layers")  # fmt: skip
    actions = tuple(a.strip() for a in args.actions.split(",") if a.strip())
    bad = [a for a in actions if a not in MODELLED]
    if bad or not actions:  # (an empty one read "not 'none'")
        p.error(f"--actions: the simulation models {', '.join(MODELLED)}, not {bad[0]!r}"
                if bad else f"--actions: name one or more of {', '.join(MODELLED)}")
    one_down = None
    if args.one_down is not None:
        one_down = tuple(r.strip() for r in args.one_down.split(",") if r.strip())
        wrong = [r for r in one_down if r not in ROLES]
        if wrong or not one_down:
            p.error(f"--one-down: roles are {', '.join(ROLES)}, not {wrong[0] if wrong else 'none'!r}")
    setup = Setup(miners=args.miners, gateways=args.gateways, layers=args.layers, seed=args.seed)
    wall = time.perf_counter()
    if args.schedule is not None or args.faults is not None:
        try:
            one: FaultSchedule | Faults = (FaultSchedule.from_json(args.schedule)
                                           if args.schedule is not None
                                           else load_faults(args.faults))  # fmt: skip
            problems = simulate(setup, one)
        except (FaultScheduleError, FaultError) as exc:
            p.error(str(exc))
        print("survived" if not problems else "failed: " + "; ".join(problems))
        return 1 if problems else 0
    if args.cuts:
        found = search_cuts(setup, examples=args.examples, heal=not args.no_heal,
                            max_cuts=args.max_cuts, seed=args.seed,
                            progress=sys.stderr)  # fmt: skip
    else:
        found = search(setup, examples=args.examples, actions=actions, heal=not args.no_heal,
                       max_faults=args.max_faults, one_down=one_down, seed=args.seed,
                       progress=sys.stderr)  # fmt: skip
    wall = time.perf_counter() - wall
    if found is None:
        print(f"no failing schedule in {args.examples} tries ({wall:.0f}s)")
        return 0
    print("the check said: " + "; ".join(found.problems[:3]))
    if isinstance(found.schedule, FaultSchedule):
        print(f"failing schedule after {wall:.0f}s, shrunk: {found.schedule.to_json()}")
        command = setup.replay_command(found.schedule)
    else:
        path = write_faults(found.schedule, args.out)
        print(f"failing schedule after {wall:.0f}s, shrunk, written to {path}:")
        print(faults_json(found.schedule), end="")
        command = setup.replay_command(found.schedule, path)
    print("replay it in network namespaces:")
    print("  " + command)
    return 1


def _leave(signum: int, _: object) -> None:
    """Ctrl-C or SIGTERM: remove the simulated nodes' data directories and exit at once
    (an interrupt unwound through the simulation's tasks would print their traceback)."""
    for data in list(_LIVE):
        shutil.rmtree(data, ignore_errors=True)
    os.write(2, b"spacemesh-faults: interrupted\n")
    os._exit(128 + signum)


def _cli() -> int:
    signal.signal(signal.SIGINT, _leave)
    signal.signal(signal.SIGTERM, _leave)
    return main()


if __name__ == "__main__":
    sys.exit(_cli())
