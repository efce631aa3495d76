"""The conductor's `Actions` on a cluster: each fault becomes an item on a pod's
`fault/<instance>` topic, which that pod acts on (the shaper drops on arrival, or lets
through again, what the cut sources send; the agent ends, restarts or starts again the
instance's process, or stops and continues its process group). Faults the pods cannot play
yet are refused, which fails the run with the reason."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.faults import FaultError
from harness.sync import SyncState

FAULT_TOPIC = "fault/{instance}"


def fault_topic(instance: str) -> str:
    """Where an instance's pod hears the faults played on it."""
    return FAULT_TOPIC.format(instance=instance)


class ClusterActions:
    """`harness._conductor.Actions` through the sync service's topics."""

    def __init__(self, state: SyncState) -> None:
        self.state = state
        self.down: set[str] = set()  # instances a fault ended, until started again
        self.paused: set[str] = set()

    def running(self) -> None:
        """Not known here (a pod's process may have ended on its own): a count is drawn
        from every matching instance."""
        return None

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

    async def start(self, instance: str, why: str) -> bool:
        """The agent starts the instance again."""
        if instance not in self.down:
            return False
        self.down.discard(instance)
        self.state.publish(fault_topic(instance), {"start": why})
        return True

    async def pause(self, instance: str, on: bool) -> bool:
        """The agent stops (SIGSTOP) or continues (SIGCONT) the instance's process group."""
        if instance in self.down or (instance in self.paused) == on:
            return False
        (self.paused.add if on else self.paused.discard)(instance)
        self.state.publish(fault_topic(instance), {"pause": on})
        return True

    async def _refused(self, *_: Any) -> Any:
        raise FaultError("not played on cluster:k8s yet (partition, isolate, heal, kill, "
                         "stop, restart, pause and resume are)")

    override = skew = limit = hog = _refused
