"""``python -m scenarios.spacemesh.faults``: search fault schedules in simulation, then replay.

hypothesis draws schedules of cuts between the network's nodes (`harness.faults`), each one
is played on the in-memory network of a whole simulated cluster in virtual time, and each
node is judged when and as the ``spacemesh:faults`` test case judges it through its gRPC
API (`plan.Watch`, `plan.compare_reports`). The first failing schedule is shrunk to a
minimal one and printed with the command that replays it in network namespaces::

    python -m scenarios.spacemesh.faults --miners 3 --examples 30 --no-heal
    harness run spacemesh:faults -i 5 -p schedule='{"cuts": [...]}' ...

Nodes are numbered as the plan numbers them: gateways first, then miners (the PoET is not
cut). Times are seconds from genesis.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time

import anyio
import trio.testing

from harness.faults import FaultSchedule, FaultScheduleError, schedules

from ._cli import LOG_LEVELS, ArgumentParser, configure_logging
from ._cluster import MemoryCluster, memory_cluster
from ._memnet import MemoryLink
from ._mesh import MeshParams
from ._node import Node
from .plan import POLL_S, Report, Watch, compare_reports


@dataclasses.dataclass(frozen=True)
class Setup:
    """The network a schedule is played on (the ``spacemesh:faults`` params it replays as)."""

    miners: int = 3
    gateways: int = 1
    layers: int = 8
    layer_duration: float = 2.0
    layers_per_epoch: int = 3
    latency: float = 0.05
    eligibility: float = 0.8
    pow_bits: int = 6
    target_peers: int = 6
    check_slack: float = 20.0
    chain_length: int = 1000
    seed: int = 0

    @property
    def nodes(self) -> int:
        """Gateways and miners: the instances a schedule numbers."""
        return self.gateways + self.miners

    def params(self) -> MeshParams:
        """The mesh parameters the plan derives from the same params."""
        return MeshParams(
            layers_per_epoch=self.layers_per_epoch,
            pow_bits=self.pow_bits,
            eligibility=self.eligibility,
        )

    def replay_command(self, schedule: FaultSchedule) -> str:
        """The `harness run` that plays `schedule` in namespaces on the same network."""
        words = ["harness", "run", "spacemesh:faults", "-i", str(self.nodes + 1)]
        for name, value in (
            ("gateways", self.gateways),
            ("layers", self.layers),
            ("layer_duration", f"{self.layer_duration:g}s"),
            ("layers_per_epoch", self.layers_per_epoch),
            ("latency", f"{self.latency * 1000:g}ms"),
            ("eligibility", self.eligibility),
            ("pow_bits", self.pow_bits),
            ("target_peers", self.target_peers),
            ("check_slack", f"{self.check_slack:g}s"),
            ("chain_length", self.chain_length),
            ("schedule", schedule.to_json()),
        ):
            words += ["-p", f"{name}={value}"]
        return shlex.join(words)


def simulate(setup: Setup, schedule: FaultSchedule) -> list[str]:
    """Play `schedule` on a simulated cluster; the problems the plan's check finds (none:
    the network survived it). Each node is watched as its instance watches it in a real run
    (`plan.Watch`, every `plan.POLL_S`), so its report is taken at the same moment."""
    schedule.check(setup.nodes)
    params = setup.params()
    reports: list[Report] = []

    async def run() -> None:
        async with (
            memory_cluster(
                miners=setup.miners,
                gateways=setup.gateways,
                seed=setup.seed,
                layer_duration=setup.layer_duration,
                params=params,
                link=MemoryLink(setup.latency),
                poet_chain_length=setup.chain_length,
                target_peers=setup.target_peers,
            ) as c,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_play, c, schedule)
            reports.extend(await _watch(c, setup, schedule))
            tg.cancel_scope.cancel()

    clock = trio.testing.MockClock(autojump_threshold=0)
    anyio.run(run, backend="trio", backend_options={"clock": clock})
    return compare_reports(reports, setup.layers)


async def _play(c: MemoryCluster, schedule: FaultSchedule) -> None:
    genesis = c.gateways[0].config.genesis
    hosts = [n.config.listen for n in c.nodes]
    cut: set[tuple[int, int]] = set()
    for t, now_cut in schedule.steps():
        await c.clock.sleep_until(genesis + t)
        for src, dst in cut - now_cut:
            c.net.reset_link(hosts[src], hosts[dst])
        for src, dst in now_cut - cut:
            c.net.set_link(hosts[src], hosts[dst], MemoryLink(down=True), both=False)
        cut = now_cut


async def _watch(c: MemoryCluster, setup: Setup, schedule: FaultSchedule) -> list[Report]:
    """Every node's report, each taken when the plan's `Watch` would stop polling it."""
    watches = [
        Watch.of(
            "miner" if n.config.smeshing else "gateway",
            target=setup.layers,
            genesis=c.gateways[0].config.genesis,
            layer_duration=setup.layer_duration,
            params=setup.params(),
            check_slack=setup.check_slack,
            healed_at=schedule.healed_by(),
        )
        for n in c.nodes
    ]
    done: dict[int, Report] = {}
    while len(done) < len(c.nodes):
        now = c.clock.now()
        for i, (node, watch) in enumerate(zip(c.nodes, watches, strict=True)):
            if i in done:
                continue
            atx = (node.atxs_published, node.last_error) if watch.wants_atx_status(now) else None
            error = watch.step(now, node.status(), atx)
            if error is not None:
                done[i] = _report(i, node, watch, error)
        await anyio.sleep(POLL_S)
    return [done[i] for i in sorted(done)]


def _report(index: int, node: Node, watch: Watch, error: str) -> Report:
    """What the plan's `_watch_own_node` publishes, from the node itself."""
    return Report(
        seq=index,
        instance=f"node/{index}",
        role=watch.role,
        smesher=node.smesher_id,
        is_smeshing=node.config.smeshing,
        verified_layer=node.status()["verified_layer"],
        hashes=[s.hash.hex() for s in node.layers()[: watch.target + 1]],
        atx_smeshers=sorted({a["smesher"] for a in node.mesh.atxs.values()}),
        smeshing_error=node.last_error,
        error=error,
    )


@dataclasses.dataclass
class Found:
    """A failing schedule, shrunk, with what the check said about it."""

    schedule: FaultSchedule
    problems: list[str]


def search(
    setup: Setup,
    *,
    examples: int = 30,
    heal: bool = True,
    max_cuts: int = 2,
    seed: int = 0,
) -> Found | None:
    """Look for a schedule the network does not survive; the shrunk one, or None."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Flaky

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
    found: dict[str, Found] = {}

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
    def property_holds(schedule: FaultSchedule) -> None:
        problems = simulate(setup, schedule)
        if problems:
            found["last"] = Found(schedule, problems)  # hypothesis ends on the minimal one
        assert not problems, problems

    try:
        hypothesis.seed(seed)(property_holds)()
    except (AssertionError, Flaky):
        return found.get("last")
    return None


def main(argv: list[str] | None = None) -> int:
    """Search, print the minimal failing schedule and its replay command; exit 1 if found."""
    p = ArgumentParser(prog="spacemesh-faults", description=__doc__)
    d = Setup()
    p.add_argument("--miners", type=int, default=d.miners)
    p.add_argument("--gateways", type=int, default=d.gateways)
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--examples", type=int, default=30, help="schedules to try")
    p.add_argument("--max-cuts", type=int, default=2)
    p.add_argument("--no-heal", action="store_true", help="cuts may last to the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule", help="simulate this one schedule (JSON) instead of searching")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="error")
    args = p.parse_args(argv)
    configure_logging(args.log_level)
    if min(args.miners, args.gateways, args.layers, args.examples, args.max_cuts) < 1:
        p.error("--miners, --gateways, --layers, --examples and --max-cuts must be >= 1")
    setup = Setup(miners=args.miners, gateways=args.gateways, layers=args.layers, seed=args.seed)
    wall = time.perf_counter()
    if args.schedule is not None:
        try:
            schedule = FaultSchedule.from_json(args.schedule)
            problems = simulate(setup, schedule)
        except FaultScheduleError as exc:
            p.error(str(exc))
        print("survived" if not problems else "failed: " + "; ".join(problems))
        return 1 if problems else 0
    found = search(setup, examples=args.examples, heal=not args.no_heal,
                   max_cuts=args.max_cuts, seed=args.seed)  # fmt: skip
    wall = time.perf_counter() - wall
    if found is None:
        print(f"no failing schedule in {args.examples} tries ({wall:.0f}s)")
        return 0
    print(f"failing schedule after {wall:.0f}s, shrunk: {found.schedule.to_json()}")
    print("the check said: " + "; ".join(found.problems[:3]))
    print("replay it in network namespaces:")
    print("  " + setup.replay_command(found.schedule))
    return 1


if __name__ == "__main__":
    sys.exit(main())
