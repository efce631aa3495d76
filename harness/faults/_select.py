"""Which instances a fault hits: a selector by group, role, ids, count or percentage."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from harness.faults._errors import FaultError
from harness.faults._values import int64, is_int
from harness.plans._checks import is_number


@dataclasses.dataclass(frozen=True)
class Member:
    """What a selector can see of one instance."""

    id: str
    group: str
    role: str = ""


_KEYS = {"group", "role", "instances", "topic", "count", "percentage", "seed"}


@dataclasses.dataclass(frozen=True)
class Selector:
    """Instances of `groups` (any, if empty) with `roles` (any, if empty) among `instances`
    (any, if empty) and among those the latest item published on sync `topic` names when the
    fault fires (an instance id or a list of them: who holds a role that moves, such as a
    leader); of those, `count` of them or `percentage` percent (rounded up, at least one),
    drawn at random with `seed`; all of them when neither is given."""

    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()
    topic: str | None = None
    count: int | None = None
    percentage: float | None = None
    seed: int = 0

    @classmethod
    def from_data(cls, data: Any, where: str) -> Selector:
        """Parse a selector's table (`group` and `role` may be one name or a list)."""
        if not isinstance(data, Mapping):
            raise FaultError(f"{where}: must be a table, e.g. {{group = \"miners\", count = 2}}")
        unknown = set(data) - _KEYS
        if unknown:
            raise FaultError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                             f"(known: {', '.join(sorted(_KEYS))})")
        count, percentage, seed = data.get("count"), data.get("percentage"), data.get("seed", 0)
        if count is not None and percentage is not None:
            raise FaultError(f"{where}: give count or percentage, not both")
        if count is not None:
            int64(count, f"{where}: count", least=1)
        if percentage is not None and not (
            is_number(percentage) and 0 < percentage <= 100
        ):
            raise FaultError(f"{where}: percentage must be a number in (0, 100], "
                             f"not {percentage!r}")
        if not is_int(seed):
            raise FaultError(f"{where}: seed must be a 64-bit whole number, not {seed!r}")
        topic = data.get("topic")
        if topic is not None and (not isinstance(topic, str) or not topic):
            raise FaultError(f"{where}: topic must be a sync topic's name, not {topic!r}")
        return cls(
            groups=_names(data, "group", where),
            roles=_names(data, "role", where),
            instances=_names(data, "instances", where),
            topic=topic,
            count=count,
            percentage=None if percentage is None else float(percentage),
            seed=seed,
        )

    def to_data(self) -> dict[str, Any]:
        """The table `from_data` reads (only what is set)."""
        out: dict[str, Any] = {}
        for key, value in (("group", self.groups), ("role", self.roles),
                           ("instances", self.instances)):  # fmt: skip
            if value:
                out[key] = list(value)
        if self.topic is not None:
            out["topic"] = self.topic
        if self.count is not None:
            out["count"] = self.count
        if self.percentage is not None:
            out["percentage"] = self.percentage
        if self.seed:
            out["seed"] = self.seed
        return out

    def candidates(self, members: Sequence[Member]) -> tuple[str, ...]:
        """The ids of `members` the selector may ever choose, in their order: those of its
        groups, roles and instances, whoever its topic names and whatever its count or
        percentage draws."""
        return tuple(
            m.id for m in members
            if (not self.groups or m.group in self.groups)
            and (not self.roles or m.role in self.roles)
            and (not self.instances or m.id in self.instances)
        )  # fmt: skip

    def resolve(
        self,
        members: Sequence[Member],
        where: str,
        named: Sequence[str] | None = None,
        running: Collection[str] | None = None,
    ) -> tuple[str, ...]:
        """The chosen instance ids, in the order of `members`; FaultError naming what does
        not exist or cannot be met. `named`: the ids the selector's topic names now (None
        before the run, when any instance may be named). `running`: the instances running
        now, for a fault that acts on processes; a `count` or `percentage` is then drawn
        from those of the matching ones (a dead one would only be missed), the others
        drawn only when too few run."""
        known_groups = {m.group for m in members}
        known_roles = {m.role for m in members if m.role}
        known_ids = {m.id for m in members}
        for kind, wanted, known in (("group", self.groups, known_groups),
                                    ("role", self.roles, known_roles),
                                    ("instance", self.instances, known_ids)):  # fmt: skip
            missing = [w for w in wanted if w not in known]
            if missing:
                listing = ", ".join(sorted(known)[:12]) or "none"
                raise FaultError(f"{where}: no {kind} {missing[0]!r} (there are: {listing})")
        if named is not None:
            unknown = [n for n in named if n not in known_ids]
            if unknown:
                raise FaultError(f"{where}: topic {self.topic!r} names {unknown[0]!r}, "
                                 f"which is no instance of the run")
        pool = [i for i in self.candidates(members) if named is None or i in named]
        if not pool:
            raise FaultError(f"{where}: selects no instance"
                             + (f" (topic {self.topic!r} names {list(named)})" if named else ""))
        # A fault on processes draws from the instances running, and from the others only
        # when too few run (those are then missed). With all running, the draw is the one
        # made without `running`.
        live = pool if running is None else [i for i in pool if i in running]
        want = len(pool)
        if self.count is not None:
            if self.count > len(pool):
                raise FaultError(f"{where}: count {self.count} but only {len(pool)} "
                                 f"instance(s) match")
            want = self.count
        elif self.percentage is not None:
            want = max(1, math.ceil(len(live or pool) * self.percentage / 100))
        if named is None and self.topic is not None:
            return tuple(pool)  # before the run: who the topic will name is not known yet
        if want == len(pool):
            return tuple(pool)
        rng = random.Random(self.seed)
        chosen = set(rng.sample(live, min(want, len(live))))
        if want > len(live):
            chosen |= set(rng.sample([i for i in pool if i not in chosen], want - len(live)))
        return tuple(i for i in pool if i in chosen)


EVERYONE = Selector()
"""Every instance of the run."""


def _names(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """The names under `key` (none when it is left out). An empty list is refused: the
    selector would then select by its other keys alone, every instance for `{group = []}`."""
    if key not in data:
        return ()
    value = data[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise FaultError(f"{where}: {key}: must be a name or a list of names, not {value!r}")
    if not value:
        raise FaultError(f"{where}: {key}: an empty list names nobody (leave {key} out to "
                         "select from every instance)")
    return tuple(value)
