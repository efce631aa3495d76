"""Hypothesis strategies over the fault vocabulary, for searches and for tests.

Earlier draws shrink first, so what matters most to a failure comes first: the action, then
when it happens, then whom it hits, then how long it lasts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from harness.faults._fault import ACTIONS, FEWEST_CUT, PARTITION_KINDS, UNDOABLE, Fault
from harness.faults._select import Member, Selector

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

_DURATION = (0.5, 30.0)  # how long a fault lasts, unless told


def faults(
    members: Sequence[Member],
    *,
    actions: Sequence[str] = tuple(ACTIONS),
    at: tuple[float, float] = (0.0, 60.0),
    duration: tuple[float, float] = _DURATION,
    states: Sequence[str] = (),
) -> SearchStrategy[Fault]:
    """Faults that `Fault.resolve` accepts for `members`: one of `actions`, at a time in
    `at` (or, with `states`, sometimes once some instances signalled one of them), undone
    after a time in `duration` where the action can be undone (or not)."""
    from hypothesis import strategies as st

    if len(members) < 2:
        raise ValueError("faults() needs at least 2 members (a partition cuts between two)")
    _check_span("at", at, least=0.0)
    _check_span("duration", duration, least=0.001)  # (a fault lasts at least 1 ms)
    if not actions or any(a not in ACTIONS for a in actions):
        raise ValueError(f"actions must be some of {', '.join(ACTIONS)}, not {list(actions)}")
    # Only the partitions this many cut anything with (a ring of 3 is all neighbours).
    kinds = [k for k in PARTITION_KINDS if len(members) >= FEWEST_CUT.get(k, 2)]
    groups = sorted({m.group for m in members})
    ids = [m.id for m in members]

    def selector(draw: Callable[..., Any], limit: int) -> Selector:
        # Shrinks toward the first: one instance, which is the simplest schedule to read.
        # hypothesis takes fewer draws for simpler: "all" draws as many as one instance
        # does, or a failure shrank to every instance, though one alone failed as well.
        how = draw(st.sampled_from(["one", "count", "instances", "group", "percentage", "all"]))
        if how == "one":
            return Selector(instances=(draw(st.sampled_from(ids)),))
        if how == "group":
            return Selector(groups=(draw(st.sampled_from(groups)),))
        if how == "count":
            return Selector(count=draw(st.integers(1, limit)), seed=draw(st.integers(0, 9)))
        if how == "percentage":
            return Selector(percentage=draw(st.integers(1, 100)), seed=draw(st.integers(0, 9)))
        if how == "instances":
            some = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=limit, unique=True))
            return Selector(instances=tuple(some))
        draw(st.sampled_from(ids))  # (see above)
        return Selector()

    @st.composite
    def fault(draw: Callable[..., Any]) -> Fault:
        action = draw(st.sampled_from(list(actions)))
        when: Any = _ms(draw, at)  # (earliest and shortest are simplest: ms, not floats)
        if states and draw(st.booleans()):
            when = {"state": draw(st.sampled_from(list(states))),
                    "count": draw(st.integers(1, len(members)))}  # fmt: skip
        data: dict[str, Any] = {"action": action, "at": when}
        if action != "heal":
            kind = draw(st.sampled_from(kinds)) if action == "partition" else None
            if kind == "sides":  # leave someone on the other side
                data["targets"] = Selector(count=draw(st.integers(1, len(members) - 1)),
                                           seed=draw(st.integers(0, 9))).to_data()
            elif kind is not None:
                data["targets"] = {}  # every instance takes part
                data["kind"] = kind
            else:
                data["targets"] = selector(draw, len(members)).to_data()
        if action in UNDOABLE and draw(st.booleans()):
            data["duration"] = _ms(draw, duration)
        data.update(draw(_arguments(action)))
        if action == "shape" and len(members) > 1:
            data["to"] = Selector(count=len(members)).to_data()
        return Fault.from_data(data)

    return fault()


def _check_span(name: str, span: tuple[float, float], least: float) -> None:
    """`span` is (low, high) seconds, finite, with `least` <= low <= high."""
    low, high = span
    if not (math.isfinite(low) and math.isfinite(high) and least <= low <= high):
        raise ValueError(f"{name} must be (low, high) seconds with {least:g} <= low <= high, "
                         f"not {span}")


def _ms(draw: Callable[..., Any], span: tuple[float, float]) -> float:
    """A time in `span`, to the millisecond; it shrinks toward the start of `span` (a float
    draw shrank toward round numbers: a failure at 0.3 s "shrank" to 0.5 s)."""
    from hypothesis import strategies as st

    low, high = math.ceil(span[0] * 1000), math.floor(span[1] * 1000)
    ms: int = draw(st.integers(low, max(low, high)))
    return ms / 1000


def fault_lists(
    members: Sequence[Member],
    *,
    max_faults: int = 2,
    heal: bool = True,
    held: Collection[str] = (),
    **kw: Any,
) -> SearchStrategy[tuple[Fault, ...]]:
    """Lists of one to `max_faults` faults (`faults(members, **kw)`): with `heal`, every
    fault that can be undone is, and else those of the actions `held` still are; where
    the draw left one without a duration, it lasts the shortest of `duration`."""
    from hypothesis import strategies as st

    undone = UNDOABLE if heal else UNDOABLE & set(held)
    short = kw.get("duration", _DURATION)[0]
    one = faults(members, **kw).map(
        lambda f: f if f.duration is not None or f.action not in undone
        else dataclasses.replace(f, duration=short))  # fmt: skip
    return st.lists(one, min_size=1, max_size=max_faults).map(tuple)


def _arguments(action: str) -> SearchStrategy[dict[str, Any]]:
    from hypothesis import strategies as st

    if action == "shape":
        return st.fixed_dictionaries({"shape": st.fixed_dictionaries(
            {"latency_ms": st.integers(0, 500)},
            optional={"loss_pct": st.integers(0, 100), "jitter_ms": st.integers(0, 50)})})
    if action in ("stop", "restart"):
        return st.fixed_dictionaries({}, optional={"grace": st.sampled_from([0, 1, "500ms"])})
    if action == "skew":
        return st.fixed_dictionaries({"offset": st.integers(-5000, 5000).filter(bool).map(
                                          lambda ms: f"{ms}ms")},
                                     optional={"drift": st.sampled_from([-0.01, 0.0, 0.001])})
    if action == "limit":
        return st.one_of(
            st.fixed_dictionaries({"cpu": st.sampled_from([0.1, 0.5, 1.0])}),
            st.fixed_dictionaries({"memory": st.sampled_from(["16MiB", 2**26])}),
        )
    if action == "hog":
        return st.fixed_dictionaries({"cpu": st.integers(1, 4)})
    return st.just({})
