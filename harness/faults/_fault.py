"""The fault vocabulary: what a fault does, to whom, and when, as plain data.

One form serves a composition's `[[faults]]` tables, `harness fault` on the command line,
`--faults FILE` and the run's record (`faults.jsonl`): a table per fault,

    at = "20s"                                  # or {state = "layer-5", count = 10}
    duration = "10s"                            # optional: then the fault is undone
    action = "kill"
    targets = {group = "miners", percentage = 60, seed = 1}

plus the action's own arguments (see ACTIONS). `Fault.from_data` checks everything that can
be checked without the run (names, types, ranges); `Fault.resolve` checks the rest against
the run's instances and draws the random choices, before anything starts.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness._errors import UsageError
from harness.faults._errors import FaultError
from harness.faults._select import EVERYONE, Member, Selector
from harness.faults._values import int64, is_int, seconds, size
from harness.plans._checks import is_number

NETWORK = ("shape", "partition", "isolate", "heal")
PROCESS = ("kill", "stop", "pause", "resume", "restart")
TIME = ("skew",)
RESOURCE = ("limit", "hog")

ACTIONS: dict[str, dict[str, str]] = {
    "shape": {"shape": "a link shape: latency_ms, jitter_ms, loss_pct, bandwidth_bps, ...",
              "to": "a selector: the directions from the targets to these (default: all)"},
    "partition": {"kind": "sides (default), halves, majority, ring or bridge",
                  "others": "with sides: the other side (default: every other instance)",
                  "one_way": "with sides: cut only what the targets send (default false)"},
    "isolate": {},
    "heal": {},
    "kill": {},
    "stop": {"grace": "how long after SIGTERM before SIGKILL (default 3s)"},
    "pause": {},
    "resume": {},
    "restart": {"grace": "how long after SIGTERM before SIGKILL (default 3s)"},
    "skew": {"offset": "the clock's offset, a signed duration (e.g. -300ms)",
             "drift": "extra seconds per second (e.g. 0.001: 1 ms a second fast)"},
    "limit": {"cpu": "CPUs' worth of time (e.g. 0.5)", "memory": "bytes, or e.g. \"64MiB\""},
    "hog": {"cpu": "busy loops beside the instance, in its cgroup (default 1)"},
}
"""Every action and its own arguments (beyond at, duration, action, targets, expect)."""

PARTITION_KINDS = ("sides", "halves", "majority", "ring", "bridge")
EXPECTATIONS = ("recover", "may_die")
_COMMON = {"at", "duration", "action", "targets", "expect"}
UNDOABLE = frozenset({"shape", "partition", "isolate", "kill", "stop", "pause", "skew", "limit",
                      "hog"})
"""The actions a fault's `duration` undoes."""
_NO_TARGETS = {"heal"}
_ON_RUNNING = {"kill", "stop", "pause", "skew", "limit", "hog"}
"""Actions that do something only to a running process: their `count` or `percentage` is
drawn from the instances running when they fire (restart also starts a dead one)."""
_ALL_BY_DEFAULT = {"shape", "partition"}


@dataclasses.dataclass(frozen=True)
class When:
    """A sync condition: once `count` instances signalled `state`."""

    state: str
    count: int


@dataclasses.dataclass(frozen=True)
class Fault:
    """One fault: `action` on `targets` at `at` (seconds after the instances start, or a
    sync condition), undone after `duration` when given."""

    action: str
    at: float | When
    targets: Selector = EVERYONE
    duration: float | None = None
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    expect: str | None = None  # None: the action's default (see `expectation`)

    @classmethod
    def from_data(cls, data: Any, where: str = "fault") -> Fault:
        """Parse and check one fault's table; FaultError names the first problem."""
        if not isinstance(data, Mapping):
            raise FaultError(f"{where}: must be a table")
        action = data.get("action")
        if not isinstance(action, str) or action not in ACTIONS:  # a list is not hashable
            raise FaultError(f"{where}: action must be one of {', '.join(ACTIONS)}, "
                             f"not {action!r}")
        where = f"{where} ({action})"
        unknown = set(data) - _COMMON - set(ACTIONS[action])
        if unknown:
            known = ", ".join(sorted(_COMMON | set(ACTIONS[action])))
            raise FaultError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {known})")
        if "at" not in data:
            raise FaultError(f"{where}: 'at' is missing (a duration such as \"20s\", or "
                             f"{{state = NAME, count = N}})")
        at = _trigger(data["at"], f"{where}: at")
        duration = None
        if data.get("duration") is not None:
            if action not in UNDOABLE:
                raise FaultError(f"{where}: has no duration ({action} is not undone)")
            duration = seconds(data["duration"], f"{where}: duration", positive=True)
        if action in _NO_TARGETS:
            if "targets" in data:
                raise FaultError(f"{where}: takes no targets")
            targets = EVERYONE
        elif "targets" in data:
            targets = Selector.from_data(data["targets"], f"{where}: targets")
        elif action in _ALL_BY_DEFAULT:
            targets = EVERYONE
        else:
            raise FaultError(f"{where}: 'targets' is missing, e.g. {{group = \"miners\", "
                             f"count = 1}}")
        expect = data.get("expect")
        if expect is not None and (action not in PROCESS or expect not in EXPECTATIONS):
            raise FaultError(f"{where}: expect must be one of {', '.join(EXPECTATIONS)}, "
                             f"and only process faults take it")
        args = _args(action, data, where)
        return cls(action, at, targets, duration, args, expect)

    def to_data(self) -> dict[str, Any]:
        """The table `from_data` reads (JSON- and TOML-ready)."""
        out: dict[str, Any] = {"action": self.action}
        out["at"] = (self.at if isinstance(self.at, float)
                     else {"state": self.at.state, "count": self.at.count})  # fmt: skip
        if self.duration is not None:
            out["duration"] = self.duration
        if self.action not in _NO_TARGETS and (
            self.targets != EVERYONE or self.action not in _ALL_BY_DEFAULT
        ):
            out["targets"] = self.targets.to_data()
        if self.expect is not None:
            out["expect"] = self.expect
        for key, value in self.args.items():
            out[key] = value.to_data() if isinstance(value, Selector) else value
        return out

    def expectation(self) -> str | None:
        """What a process fault expects of its targets: 'recover' (they must still pass:
        restarted, resumed, or stopped and started again after `duration`) or 'may_die'
        (killed or stopped for good: they do not fail the run for that alone)."""
        if self.action not in PROCESS:
            return None
        if self.expect is not None:
            return self.expect
        if self.action in ("kill", "stop") and self.duration is None:
            return "may_die"
        return "recover"

    def resolve(
        self,
        members: Sequence[Member],
        where: str = "fault",
        topics: Callable[[str], Any] | None = None,
        running: Collection[str] | None = None,
    ) -> Resolved:
        """Choose the instances (random choices drawn with the selectors' seeds) and, for a
        network cut, the directions it cuts; FaultError if the run cannot meet it.

        `topics(name)` gives the latest item of a sync topic (None if none yet), for
        selectors by topic; without it (before the run) they may name any instance.
        `running`: the instances running now (None: unknown, as before the run); a kill,
        stop, pause, skew, limit or hog draws its count or percentage from them."""
        where = f"{where} ({self.action})"
        if isinstance(self.at, When) and self.at.count > len(members):
            raise FaultError(f"{where}: at: waits for {self.at.count} signals of "
                             f"{self.at.state!r} but the run has {len(members)} instances")
        chosen = () if self.action in _NO_TARGETS else self.targets.resolve(
            members, f"{where}: targets", _named(self.targets, topics, f"{where}: targets"),
            running if self.action in _ON_RUNNING else None)
        ids = [m.id for m in members]
        cut: frozenset[tuple[str, str]] = frozenset()
        others = [v for v in self.args.values() if isinstance(v, Selector)]
        if topics is None and any(sel.topic for sel in [self.targets, *others]):
            for sel in others:  # who a topic will name is known only when the fault fires
                sel.resolve(members, f"{where}: {'to' if self.action == 'shape' else 'others'}")
            return Resolved(self, chosen, cut)
        if self.action == "isolate":
            cut = frozenset((a, b) for a in chosen for b in ids if a != b)
            cut |= {(b, a) for a, b in cut}
        elif self.action == "partition":
            cut = _partition(self, chosen, members, where, topics)
        elif self.action == "shape":
            to = self.args.get("to", EVERYONE)
            dests = to.resolve(members, f"{where}: to", _named(to, topics, f"{where}: to"))
            cut = frozenset((a, b) for a in chosen for b in dests if a != b)
            if not cut:
                raise FaultError(f"{where}: shapes no direction (targets and 'to' are "
                                 f"the same single instance)")
        return Resolved(self, chosen, cut)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A fault with its choices made: the instances, and for shape, partition and isolate
    the (source, destination) directions it acts on."""

    fault: Fault
    instances: tuple[str, ...]
    directions: frozenset[tuple[str, str]] = frozenset()

    def to_data(self) -> dict[str, Any]:
        """The fault plus what was chosen, for the run's record."""
        out = self.fault.to_data()
        out["chosen"] = list(self.instances)
        if self.directions:
            out["directions"] = sorted([a, b] for a, b in self.directions)
        return out


def parse_faults(data: Any, where: str = "faults") -> tuple[Fault, ...]:
    """A list of fault tables (a composition's `[[faults]]`, a --faults file's `faults`)."""
    if not isinstance(data, list):
        raise FaultError(f"{where}: must be a list of tables ([[faults]])")
    return tuple(Fault.from_data(f, f"{where}[{i}]") for i, f in enumerate(data))


def load_faults(path: Path) -> tuple[Fault, ...]:
    """The faults of a file: TOML (`[[faults]]` tables) or JSON (`{"faults": [...]}`, as
    a search prints it and the run's record keeps it): JSON if its name ends in .json, or,
    unless it ends in .toml, if it starts with "{" (a pipe: `<(harness replay ...)`)."""
    import json
    import tomllib

    from harness.plans._checks import read_input

    try:
        text = read_input(path, "faults file")
    except UsageError as e:
        raise FaultError(str(e)) from None
    # by its name, else by its first character (`--faults <(harness replay --print-faults)`)
    is_json = path.suffix == ".json" or (path.suffix != ".toml" and text.lstrip()[:1] == "{")
    try:
        data = json.loads(text) if is_json else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise FaultError(f"faults file {path}: not {'JSON' if is_json else 'TOML'} ({e})"
                         ) from None
    except RecursionError:
        raise FaultError(f"faults file {path}: nested too deeply to read") from None
    if not isinstance(data, dict) or set(data) != {"faults"}:
        raise FaultError(f"faults file {path}: must hold exactly one key, faults (a list)")
    return parse_faults(data["faults"], f"faults file {path}: faults")


def _named(selector: Selector, topics: Callable[[str], Any] | None,
           where: str) -> tuple[str, ...] | None:
    """The instance ids the selector's topic names now (None: no topic, or before the run)."""
    if selector.topic is None or topics is None:
        return None
    item = topics(selector.topic)
    if item is None:
        raise FaultError(f"{where}: nothing was published on topic {selector.topic!r} yet")
    ids = [item] if isinstance(item, str) else item
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise FaultError(f"{where}: topic {selector.topic!r} must name an instance id or a "
                         f"list of them, not {item!r}")
    return tuple(ids)


FEWEST_CUT = {"halves": 2, "majority": 3, "bridge": 3, "ring": 4}
"""The fewest instances a partition of each kind cuts at least one direction between."""


def _partition(fault: Fault, chosen: tuple[str, ...], members: Sequence[Member], where: str,
               topics: Callable[[str], Any] | None) -> frozenset[tuple[str, str]]:
    kind = fault.args.get("kind", "sides")
    if kind == "sides":
        others = fault.args.get("others")
        rest = (others.resolve(members, f"{where}: others", _named(others, topics, where))
                if others is not None
                else tuple(m.id for m in members if m.id not in chosen))  # fmt: skip
        both = set(chosen) & set(rest)
        if both:
            raise FaultError(f"{where}: {sorted(both)[0]} is on both sides")
        if not rest:
            raise FaultError(f"{where}: the other side is empty (the targets are everyone)")
        cut = frozenset((a, b) for a in chosen for b in rest)
        return cut if fault.args.get("one_way") else cut | {(b, a) for a, b in cut}
    if len(chosen) < FEWEST_CUT[kind]:  # fewer cut nothing: a ring of 3 is all neighbours
        raise FaultError(f"{where}: a {kind} partition needs at least {FEWEST_CUT[kind]} "
                         f"instances, not {len(chosen)}")
    nodes = list(chosen)
    if kind == "majority":
        random.Random(fault.targets.seed).shuffle(nodes)
    if kind in ("halves", "majority"):
        half = len(nodes) // 2 + (1 if kind == "majority" else 0)
        sides = [(nodes[:half], nodes[half:])]
    elif kind == "bridge":  # two halves that reach each other only through the middle one
        mid = len(nodes) // 2
        sides = [(nodes[:mid], nodes[mid + 1:])]
    else:  # ring: each talks to its two neighbours only
        n = len(nodes)
        near = {(nodes[i], nodes[(i + d) % n]) for i in range(n) for d in (1, -1)}
        return frozenset((a, b) for a in nodes for b in nodes
                         if a != b and (a, b) not in near)  # fmt: skip
    cut = frozenset((a, b) for left, right in sides for a in left for b in right)
    return cut | {(b, a) for a, b in cut}


def _args(action: str, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if action == "shape":
        args["shape"] = _shape(data.get("shape"), f"{where}: shape")
        if "to" in data:
            args["to"] = Selector.from_data(data["to"], f"{where}: to")
    elif action == "partition":
        kind = data.get("kind", "sides")
        if kind not in PARTITION_KINDS:
            raise FaultError(f"{where}: kind must be one of {', '.join(PARTITION_KINDS)}, "
                             f"not {kind!r}")
        if kind != "sides" and ("others" in data or "one_way" in data):
            raise FaultError(f"{where}: others and one_way go only with kind = \"sides\"")
        if kind != "sides":
            args["kind"] = kind
        if "others" in data:
            args["others"] = Selector.from_data(data["others"], f"{where}: others")
        if not isinstance(data.get("one_way"), bool | None):  # (1 == True: not `in`)
            raise FaultError(f"{where}: one_way must be true or false")
        if data.get("one_way"):
            args["one_way"] = True
    elif action in ("stop", "restart") and "grace" in data:
        args["grace"] = seconds(data["grace"], f"{where}: grace", positive=False)
    elif action == "skew":
        if "offset" not in data and "drift" not in data:
            raise FaultError(f"{where}: give offset, drift or both")
        if "offset" in data:
            args["offset"] = seconds(data["offset"], f"{where}: offset", signed=True)
        if "drift" in data:
            drift = data["drift"]
            if not is_number(drift) or not -0.5 <= drift <= 0.5:
                raise FaultError(f"{where}: drift must be a number in [-0.5, 0.5] "
                                 f"(seconds gained per second), not {drift!r}")
            args["drift"] = float(drift)
    elif action == "limit":
        if "cpu" not in data and "memory" not in data:
            raise FaultError(f"{where}: give cpu, memory or both")
        if "cpu" in data:
            cpu = data["cpu"]
            if not is_number(cpu) or not 0.01 <= cpu <= 1024:
                raise FaultError(f"{where}: cpu must be a number of CPUs in [0.01, 1024], "
                                 f"not {cpu!r}")
            args["cpu"] = float(cpu)
        if "memory" in data:
            args["memory"] = size(data["memory"], f"{where}: memory")
    elif action == "hog":
        cpu = data.get("cpu", 1)
        if not is_int(cpu) or not 1 <= cpu <= 64:
            raise FaultError(f"{where}: cpu must be a whole number of busy loops in [1, 64], "
                             f"not {cpu!r}")
        args["cpu"] = cpu
    return args


def _shape(data: Any, where: str) -> dict[str, Any]:
    from netem import LinkShape, ShapeError  # only faults that shape pay for netem

    if not isinstance(data, Mapping) or not data:
        raise FaultError(f"{where}: must be a table of link shape fields, e.g. "
                         f"{{latency_ms = 100, loss_pct = 5}}")
    fields = {f.name for f in dataclasses.fields(LinkShape)}
    unknown = set(data) - fields
    if unknown:
        raise FaultError(f"{where}: unknown field {sorted(unknown)[0]!r} "
                         f"(fields: {', '.join(sorted(fields))})")
    try:
        LinkShape(**data)
    except ShapeError as e:
        raise FaultError(f"{where}: {e}") from None
    return dict(data)


def _trigger(value: Any, where: str) -> float | When:
    if isinstance(value, Mapping):
        if set(value) != {"state", "count"}:
            raise FaultError(f"{where}: a sync condition is {{state = NAME, count = N}}")
        state, count = value["state"], value["count"]
        if not isinstance(state, str) or not state:
            raise FaultError(f"{where}: state must be a name, not {state!r}")
        return When(state, int64(count, f"{where}: count", least=1))
    return seconds(value, where, positive=False)
