"""The harness's fault vocabulary (`harness.faults.Fault`) played on a simulated cluster.

The same list of faults that ``harness run spacemesh:faults --faults FILE`` plays on real
processes in network namespaces is played here in virtual time, on the instances the run
would have (`members`): ``single/0`` the PoET, then the gateways, then the miners, all in
group ``single``. `at` is seconds after the instances start (genesis comes
``genesis_offset`` later, as in the plan).

How each action is modelled (docs/spacemesh.md says where it differs from a real process):
partition and isolate cut the chosen directions; shape gives them latency, jitter and loss
(TCP-like: a loss delays by retransmission timeouts); heal undoes every network fault;
kill and stop end the process (a SIGTERM is no gentler here); restart, or a kill or stop
with a duration, starts it again with the same identity and data directory, if the
cluster gives its nodes one (`faults.simulate` does), and an empty memory; pause and
resume freeze and thaw it; skew sets its clock's offset and drift. Overlapping pauses and
skews stack as on real processes: an instance stays paused until the last pause holding
it ends (or a resume), and a skew that ends gives back the latest one still in force.
limit and hog (CPU, memory) have no meaning in virtual time and are refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from harness.faults import Fault, FaultError, Member, Resolved

from ._cluster import MemoryCluster
from ._memnet import MemoryLink

GROUP = "single"
UNMODELLED = ("limit", "hog")
_SHAPE_FIELDS = {"latency_ms", "jitter_ms", "loss_pct", "corrupt_pct", "duplicate_pct",
                 "reorder_pct"}  # fmt: skip
"""What the in-memory network can model: TCP hides duplicates and reordering (a little
delay, which is not modelled) and a corrupt packet is a lost one."""


def members(gateways: int, miners: int, poets: int = 1) -> list[Member]:
    """The instances of ``harness run spacemesh:faults -i N`` (one group, roles by
    sequence: PoETs, gateways, miners), as a selector sees them."""
    roles = ["poet"] * poets + ["gateway"] * gateways + ["miner"] * miners
    return [Member(f"{GROUP}/{seq}", GROUP, role) for seq, role in enumerate(roles)]


_NETWORK = ("shape", "partition", "isolate")


@dataclasses.dataclass(frozen=True)
class Plan:
    """A fault list checked against the members, with the times everything happens."""

    resolved: tuple[Resolved, ...]
    steps: tuple[tuple[float, int, bool], ...]
    """(seconds after the start, fault index, True to apply / False to undo), in order."""

    @classmethod
    def of(cls, faults: Sequence[Fault], members: Sequence[Member]) -> Plan:
        """Resolve `faults` (the selectors' seeded choices, a count on processes from the
        instances running when the fault fires, as a run's conductor draws it) and check
        that the simulation can play them; FaultError naming the first that it cannot."""
        for i, fault in enumerate(faults):
            where = f"faults[{i}] ({fault.action})"
            if not isinstance(fault.at, float | int):
                raise FaultError(f"{where}: the simulation plays only timed faults "
                                 f"(at = seconds), not a sync condition")  # fmt: skip
            if fault.action in UNMODELLED:
                raise FaultError(f"{where}: the simulation cannot model {fault.action} "
                                 f"(no CPU or memory in virtual time)")  # fmt: skip
            extra = set(fault.args.get("shape", {})) - _SHAPE_FIELDS
            if extra:
                raise FaultError(f"{where}: the simulation cannot model {sorted(extra)[0]}")
        steps = []
        for i, fault in enumerate(faults):
            at = float(fault.at)  # type: ignore[arg-type]
            steps.append((at, i, True))
            if fault.duration is not None:
                steps.append((at + fault.duration, i, False))
        # At the same moment: links healed first (a process restarted then boots before it
        # can dial: its first dials must not meet a cut that ends at that very moment),
        # then in list order, each undo before the next fault's apply.
        def order(step: tuple[float, int, bool]) -> tuple[float, bool, int, bool]:
            t, i, apply = step
            heals = faults[i].action == "heal" or (not apply and faults[i].action in _NETWORK)
            return t, not heals, i, apply

        steps.sort(key=order)
        resolved: dict[int, Resolved] = {}
        everyone = {m.id for m in members}
        down: set[str] = set()
        for _, i, apply in steps:
            if apply:
                resolved[i] = faults[i].resolve(members, f"faults[{i}]",
                                                running=everyone - down)
            action, hit = faults[i].action, resolved[i].instances
            if action in ("kill", "stop"):
                (down.update if apply else down.difference_update)(hit)
            elif action == "restart":
                down.difference_update(hit)
        return cls(tuple(resolved[i] for i in range(len(faults))), tuple(steps))

    def settled_at(self) -> float:
        """When the last fault happens or is undone (0 without faults): after it the
        network has nothing more done to it."""
        return max((t for t, _, _ in self.steps), default=0.0)

    def dead_at_end(self) -> dict[str, str]:
        """The instances that are dead once every step is played, each with what its
        fault expects of it ('may_die' or 'recover')."""
        dead: dict[str, str] = {}
        for _, i, apply in self.steps:
            r = self.resolved[i]
            expectation = r.fault.expectation() or "recover"
            for instance in r.instances:
                if r.fault.action in ("kill", "stop") and apply:
                    dead[instance] = expectation
                elif r.fault.action in ("kill", "stop", "restart"):
                    dead.pop(instance, None)
        return dead


class Player:
    """Plays a `Plan` on a cluster, at times counted from `t0` (true time)."""

    def __init__(self, cluster: MemoryCluster, plan: Plan, t0: float) -> None:
        self.cluster = cluster
        self.plan = plan
        self.t0 = t0
        self.finished = False
        """True once every step was played: who is dead then stays dead."""
        # Network faults in force per direction: fault index -> the link it imposes.
        self._links: dict[tuple[str, str], dict[int, MemoryLink]] = {}
        # Per instance, the pauses that hold it and the skews in force (fault index ->
        # offset, drift, true time applied), as the real conductor stacks them.
        self._pauses: dict[str, set[int]] = {}
        self._skews: dict[str, dict[int, tuple[float, float, float]]] = {}

    async def run(self) -> None:
        """Apply and undo every fault when due; returns after the last step."""
        for t, i, apply in self.plan.steps:
            await self.cluster.clock.sleep_until(self.t0 + t)
            await self.step(self.plan.resolved[i], i, apply)
        self.finished = True

    async def step(self, r: Resolved, index: int, apply: bool) -> None:
        """Apply (or undo) one resolved fault now."""
        c, action = self.cluster, r.fault.action
        if action in _NETWORK:
            self._network(r, index, apply)
        elif action == "heal":
            touched = list(self._links)
            self._links.clear()
            for src, dst in touched:
                self._apply_link(src, dst)
        for instance in r.instances:
            if (action == "restart" or (apply and action in ("kill", "stop"))) and (
                    self._pauses.pop(instance, None)):
                c.resume(instance)  # ends the pauses holding it, as the conductor's end does
            if action in ("kill", "stop"):
                if apply:
                    c.kill(instance)
                elif not c.processes[instance].alive:
                    await c.start(instance)
            elif action == "restart":
                await c.start(instance)
            elif action == "pause":
                holds = self._pauses.setdefault(instance, set())
                if apply:
                    holds.add(index)
                    c.pause(instance)
                else:
                    holds.discard(index)
                    if not holds:
                        c.resume(instance)
            elif action == "resume":
                self._pauses.pop(instance, None)
                c.resume(instance)
            elif action == "skew":
                self._skew(instance, index, r.fault.args if apply else None)

    def _skew(self, instance: str, index: int, args: Mapping[str, Any] | None) -> None:
        """Apply (args) or undo a skew: the latest in force on the instance wins, with its
        drift's offset gained since it was applied; none, the true clock."""
        now = self.cluster.clock.now()
        skews = self._skews.setdefault(instance, {})
        if args is not None:
            skews[index] = (args.get("offset", 0.0), args.get("drift", 0.0), now)
        elif index not in skews or index != list(skews)[-1]:
            skews.pop(index, None)  # a later skew is in force: nothing changes
            return
        else:
            del skews[index]
        offset, drift, at = list(skews.values())[-1] if skews else (0.0, 0.0, now)
        self.cluster.skew(instance, offset + drift * (now - at), drift)

    def _network(self, r: Resolved, index: int, apply: bool) -> None:
        link = MemoryLink(down=True)
        if r.fault.action == "shape":
            s = r.fault.args["shape"]
            loss = min(1.0, (s.get("loss_pct", 0) + s.get("corrupt_pct", 0)) / 100)
            link = MemoryLink(s.get("latency_ms", 0) / 1000, s.get("jitter_ms", 0) / 1000,
                              loss, retransmit=True)  # fmt: skip
        hosts = {p.id: p.host for p in self.cluster.processes.values()}
        for a, b in r.directions:
            src, dst = hosts[a], hosts[b]
            active = self._links.setdefault((src, dst), {})
            if apply:
                active[index] = link
            else:
                active.pop(index, None)
            self._apply_link(src, dst)

    def _apply_link(self, src: str, dst: str) -> None:
        active = self._links.get((src, dst), {})
        if not active:
            self._links.pop((src, dst), None)
            self.cluster.net.reset_link(src, dst)
            return
        # A cut wins over a shape; among shapes, the latest applied.
        down = [link for link in active.values() if link.down]
        link = down[0] if down else list(active.values())[-1]
        self.cluster.net.set_link(src, dst, link, both=False)
