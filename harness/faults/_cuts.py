"""Fault schedules: timed cuts between groups of instances, as plain data.

One schedule drives both worlds: a simulation applies it to its in-memory network, and in a
real run every instance plays its own part of it through ``env.network`` (`play`), so a
failure that a property-based search found (and shrank) in simulation can be replayed in
network namespaces to confirm it::

    schedule = FaultSchedule.from_json('{"cuts": [{"start_s": 6, "end_s": 10, "a": [0, 1], "b": [2, 3]}]}')
    schedule.dropped(me=0, t=7.0)  # -> [2, 3]: instance 0 sends nothing to 2 and 3 then

Instances are numbered 0..n-1 by the plan (e.g. its nodes in sequence order); times are
seconds from a moment the plan fixes (e.g. genesis). `schedules()` is the hypothesis
strategy that generates them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from harness.faults._errors import FaultError
from harness.plans._checks import is_number

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from harness.sdk import LinkShape, RunEnv


class FaultScheduleError(FaultError):
    """A schedule of cuts that cannot be played (one line, naming the problem)."""


@dataclasses.dataclass(frozen=True)
class Cut:
    """From `start_s` until `end_s` (None: to the end) no packet goes from a member of `a`
    to a member of `b`, nor back unless `one_way`."""

    start_s: float
    end_s: float | None
    a: tuple[int, ...]
    b: tuple[int, ...]
    one_way: bool = False

    def active(self, t: float) -> bool:
        """True while the cut holds at time `t`."""
        return self.start_s <= t and (self.end_s is None or t < self.end_s)

    def directions(self) -> set[tuple[int, int]]:
        """The (src, dst) directions it cuts."""
        out = {(x, y) for x in self.a for y in self.b}
        if not self.one_way:
            out |= {(y, x) for x, y in out}
        return out

    def to_dict(self) -> dict[str, Any]:
        """Its JSON form (`one_way` only when set)."""
        d: dict[str, Any] = {"start_s": self.start_s, "end_s": self.end_s, "a": list(self.a),
                             "b": list(self.b)}  # fmt: skip
        if self.one_way:
            d["one_way"] = True
        return d


@dataclasses.dataclass(frozen=True)
class FaultSchedule:
    """A set of cuts; they may overlap."""

    cuts: tuple[Cut, ...] = ()

    @classmethod
    def from_json(cls, text: str) -> FaultSchedule:
        """Parse `{"cuts": [{"start_s", "end_s", "a", "b", "one_way"?}, ...]}` (a missing or
        null `end_s`: the cut lasts to the end)."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FaultScheduleError(f"fault schedule is not JSON: {exc}") from None
        if not isinstance(raw, dict) or set(raw) - {"cuts"}:
            raise FaultScheduleError('fault schedule must be an object {"cuts": [...]}')
        if not isinstance(raw.get("cuts", []), list):
            raise FaultScheduleError("fault schedule: cuts must be a list")
        cuts = []
        for i, c in enumerate(raw.get("cuts", [])):
            where = f"fault schedule cut {i}"
            if not isinstance(c, dict):
                raise FaultScheduleError(f"{where}: must be an object")
            unknown = set(c) - {"start_s", "end_s", "a", "b", "one_way"}
            if unknown:
                raise FaultScheduleError(f"{where}: unknown keys {sorted(unknown)}")
            try:
                start, end = c["start_s"], c.get("end_s")
                a, b = c["a"], c["b"]
            except KeyError as exc:
                raise FaultScheduleError(f"{where}: {exc.args[0]} is missing") from None
            if not is_number(start) or not (end is None or is_number(end)):
                raise FaultScheduleError(
                    f"{where}: start_s and end_s must be numbers (end_s may be null)"
                )
            if not (_indices(a) and _indices(b)):
                raise FaultScheduleError(f"{where}: a and b must be lists of instance numbers")
            if not isinstance(c.get("one_way", False), bool):
                raise FaultScheduleError(f"{where}: one_way must be true or false")
            cuts.append(Cut(float(start), None if end is None else float(end), tuple(a),
                            tuple(b), bool(c.get("one_way", False))))  # fmt: skip
        return cls(tuple(cuts))

    def to_json(self) -> str:
        """The form `from_json` reads, on one line."""
        return json.dumps({"cuts": [c.to_dict() for c in self.cuts]}, separators=(",", ":"))

    def check(self, count: int) -> None:
        """Raise FaultScheduleError unless every cut fits `count` instances (0..count-1)."""
        for i, c in enumerate(self.cuts):
            where = f"fault schedule cut {i}"
            if not c.a or not c.b:
                raise FaultScheduleError(f"{where}: a and b must not be empty")
            if set(c.a) & set(c.b):
                raise FaultScheduleError(f"{where}: {sorted(set(c.a) & set(c.b))} on both sides")
            outside = [x for x in (*c.a, *c.b) if not 0 <= x < count]
            if outside:
                raise FaultScheduleError(f"{where}: no instance {outside[0]} (there are {count})")
            if c.start_s < 0 or (c.end_s is not None and c.end_s <= c.start_s):
                raise FaultScheduleError(f"{where}: needs 0 <= start_s < end_s")

    def steps(self) -> list[tuple[float, set[tuple[int, int]]]]:
        """(time, every direction cut from then on) at each start or end of a cut, in order."""
        times = {c.start_s for c in self.cuts} | {c.end_s for c in self.cuts if c.end_s is not None}
        return [(t, self.cut_at(t)) for t in sorted(times)]

    def cut_at(self, t: float) -> set[tuple[int, int]]:
        """Every (src, dst) direction cut at time `t`."""
        out: set[tuple[int, int]] = set()
        for c in self.cuts:
            if c.active(t):
                out |= c.directions()
        return out

    def dropped(self, me: int, t: float) -> list[int]:
        """The instances `me` cannot send to at time `t`."""
        return sorted(dst for src, dst in self.cut_at(t) if src == me)

    def healed_by(self) -> float | None:
        """When the last cut ends (0 with no cuts); None if one never ends."""
        if any(c.end_s is None for c in self.cuts):
            return None
        return max((c.end_s for c in self.cuts if c.end_s is not None), default=0.0)


async def play(
    env: RunEnv,
    schedule: FaultSchedule,
    me: int,
    addresses: Mapping[int, str],
    *,
    t0: float,
    default: LinkShape | None = None,
    rules: Sequence[Mapping[str, Any]] = (),
    now: Callable[[], float] = time.time,
) -> None:
    """Play instance `me`'s part of `schedule` through `env.network`: at each change, from
    `t0` (a `now()` time) on, drop what `me` sends to the instances cut off from it
    (`addresses` maps instance numbers to data addresses), keeping `default` and `rules`
    otherwise (a peer cut off is taken out of `rules` while it is). Returns after the last
    change; cancel it to stop early."""
    applied: list[int] = []
    steps = [(t, sorted(d for s, d in cut if s == me)) for t, cut in schedule.steps()]
    # Started late, it goes straight to the state of now, not through every change missed.
    while len(steps) > 1 and steps[1][0] <= now() - t0:
        steps.pop(0)
    for t, peers in steps:
        if peers == applied:
            continue  # a change between others
        delay = t0 + t - now()
        if delay > 0:
            await anyio.sleep(delay)
        gone = [addresses[p] for p in peers]
        cut = [{"peers": gone, "drop": True}] if peers else []
        await env.network.configure(default, rules=[*_without(rules, set(gone)), *cut])
        applied = peers


def _without(rules: Sequence[Mapping[str, Any]], gone: set[str]) -> list[Mapping[str, Any]]:
    """`rules` without the peers in `gone` (a peer may be named by one rule only: the cut's
    drop rule names those); a rule left with no peer is left out."""
    out: list[Mapping[str, Any]] = []
    for rule in rules:
        peers = [p for p in rule.get("peers", ()) if str(p) not in gone]
        if peers:
            out.append({**rule, "peers": peers})
    return out


def schedules(
    count: int,
    *,
    start: tuple[float, float],
    length: tuple[float, float],
    max_cuts: int = 3,
    heal: bool = True,
    heal_by: float | None = None,
    one_way: bool = True,
) -> SearchStrategy[FaultSchedule]:
    """A hypothesis strategy of schedules over `count` instances: up to `max_cuts` cuts,
    each starting within `start` (seconds) and lasting within `length` but ending by
    `heal_by` when given, or (some of them) for ever when not `heal`. Failures shrink
    toward fewer, earlier, shorter cuts between fewer instances."""
    from hypothesis import strategies as st

    if count < 2:
        raise ValueError("a cut needs at least 2 instances")
    if not 0 <= start[0] <= start[1] or not 0.001 <= length[0] <= length[1] or max_cuts < 1:
        raise ValueError(
            "schedules() needs 0 <= start, 0.001 <= length (low <= high), max_cuts >= 1"
        )
    if heal_by is not None and start[1] + length[0] > heal_by:
        raise ValueError("schedules(): a cut starting last and lasting least ends after heal_by")

    @st.composite
    def cut(draw: Callable[..., Any]) -> Cut:
        members = draw(st.permutations(range(count)))
        split = draw(st.integers(1, count - 1))
        a = tuple(sorted(members[:split]))
        rest = members[split:]
        b = tuple(sorted(rest[: draw(st.integers(1, len(rest)))]))
        begin = draw(st.floats(*start, allow_nan=False))
        longest = length[1] if heal_by is None else min(length[1], heal_by - begin)
        lasts = draw(st.floats(length[0], longest, allow_nan=False))
        ends = begin + lasts if heal or draw(st.booleans()) else None
        return Cut(round(begin, 3), None if ends is None else round(ends, 3), a, b,
                   draw(st.booleans()) if one_way else False)  # fmt: skip

    return st.lists(cut(), min_size=1, max_size=max_cuts).map(
        lambda cuts: FaultSchedule(tuple(cuts))
    )


def _indices(x: object) -> bool:
    return isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in x)

