"""The conductor's `Actions` on a cluster: each fault becomes an item on a pod's
`fault/<instance>` topic, which that pod acts on (the shaper drops on arrival, or lets
through again, what the cut sources send; the agent ends, restarts or starts again the
instance's process, or stops and continues its process group). Faults the pods cannot play
yet are refused, which fails the run with the reason."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from harness.faults import FaultError
from harness.sync import SyncState

FAULT_TOPIC = "fault/{instance}"
LIFE_TOPIC = "life/{instance}"


def fault_topic(instance: str) -> str:
    """Where an instance's pod hears the faults played on it."""
    return FAULT_TOPIC.format(instance=instance)


def life_topic(instance: str) -> str:
    """Where an instance's agent says when its process starts (``{"running": true}``) and
    when it exits (``{"running": false, "code": N}``, and ``"by"``: the fault that ended
    it, with ``"comeback"``: whether it starts again, "now", "later" or null); the sync
    service tells its state (`SyncState.instance_ended`)."""
    return LIFE_TOPIC.format(instance=instance)


class ClusterActions:
    """`harness._conductor.Actions` through the sync service's topics."""

    def __init__(self, state: SyncState, instances: Iterable[str]) -> None:
        self.state = state
        self.instances = list(instances)
        self.down: set[str] = set()  # instances a fault ended, until started again
        self.paused: set[str] = set()

    def running(self) -> set[str]:
        """The instances whose process runs now (a paused one too), as their agents last
        said on `life_topic`; one whose agent has said nothing yet counts as running (the
        faults begin once every instance has started). An agent holds its subscription to
        `fault_topic` for as long as it lives: one that said its process runs and no longer
        holds it went with its pod (evicted, out of memory) without saying so."""
        out = set()
        for instance in self.instances:
            life = self.state.last_item(life_topic(instance))
            if not isinstance(life, dict) or (
                life.get("running", True) and self.state.subscribers(fault_topic(instance))
            ):
                out.add(instance)
        return out

    async def cut(self, pairs: frozenset[tuple[str, str]], on: bool, by: str) -> None:
        """Each destination's pod drops (or lets through again) what its cut sources send
        it: silent for the sender, as a cut in the hub is."""
        by_dst: dict[str, list[str]] = defaultdict(list)
        for src, dst in pairs:
            by_dst[dst].append(src)
        for dst, srcs in sorted(by_dst.items()):
            self.state.publish(fault_topic(dst), {"cut_from": sorted(srcs), "on": on,
                                                  "by": by})

    async def end(self, instance: str, why: str, grace: float | None, comeback: str | None,
                  expect: str) -> bool:
        """The agent signals the instance's process (SIGKILL, or SIGTERM then SIGKILL after
        `grace`), then starts it again at once ("now"), when told ("later"), or never."""
        if instance in self.down:
            return False
        if comeback != "now":
            self.down.add(instance)
        self.paused.discard(instance)  # a kill or stop ends a pause (the agent continues it)
        self.state.publish(fault_topic(instance), {"end": why, "grace": grace,
                                                   "comeback": comeback, "expect": expect})
        return True

    async def gone(self, instances: Sequence[str]) -> None:
        """Not waited for: the agent in the pod signals the process, out of sight here (a
        timed end's duration counts from when it was told)."""

    async def start(self, instance: str, why: str) -> bool:
        """The agent starts the instance again."""
        if instance not in self.down:
            return False
        self.down.discard(instance)
        self.state.publish(fault_topic(instance), {"start": why})
        return True

    async def pause(self, instance: str, on: bool, expect: str = "recover") -> bool:
        """The agent stops (SIGSTOP) or continues (SIGCONT) the instance's process group
        (what a pause expects is not judged on a cluster: `fault_outcome`)."""
        if instance in self.down or (instance in self.paused) == on:
            return False
        (self.paused.add if on else self.paused.discard)(instance)
        self.state.publish(fault_topic(instance), {"pause": on})
        return True

    async def _refused(self, *_: Any, **__: Any) -> Any:
        # A guard: a planned one is refused before the run (NOT_PLAYED), a live one by the
        # sync service.
        raise FaultError("not played on cluster:k8s yet (partition, isolate, heal, kill, "
                         "stop, restart, pause and resume are)")

    override = skew = limit = hog = _refused
