"""Fault schedules: their JSON form, validation, what each instance drops when, and `play`."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.faults import Cut, FaultSchedule, FaultScheduleError, play, schedules

TWO_CUTS = FaultSchedule(
    (
        Cut(2.0, 6.0, (0, 1), (2, 3)),
        Cut(4.0, None, (3,), (1,), one_way=True),
    )
)


def test_json_round_trip_and_semantics() -> None:
    assert FaultSchedule.from_json(TWO_CUTS.to_json()) == TWO_CUTS
    assert [t for t, _ in TWO_CUTS.steps()] == [2.0, 4.0, 6.0]
    assert TWO_CUTS.steps()[-1][1] == {(3, 1)}  # after the heal only the one-way cut is left
    assert TWO_CUTS.cut_at(1.9) == set()
    assert TWO_CUTS.dropped(0, 2.0) == [2, 3] and TWO_CUTS.dropped(2, 2.0) == [0, 1]
    assert TWO_CUTS.dropped(3, 5.0) == [0, 1]  # both cuts: 3 -> 1 twice over
    assert TWO_CUTS.dropped(1, 5.0) == [2, 3]  # the one-way cut leaves 1 -> 3 to the first
    assert TWO_CUTS.dropped(1, 6.0) == [] and TWO_CUTS.dropped(3, 6.0) == [1]  # one-way left
    assert TWO_CUTS.healed_by() is None
    assert FaultSchedule((Cut(1, 3, (0,), (1,)),)).healed_by() == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "fault schedule is not JSON"),
        ("[]", 'must be an object {"cuts": [...]}'),
        ('{"cuts": [], "extra": 1}', 'must be an object {"cuts": [...]}'),
        ('{"cuts": [{"start_s": 1, "a": [0]}]}', "cut 0: b is missing"),
        ('{"cuts": [{"start_s": 1, "end_s": 2, "a": [0], "b": [1], "oneway": true}]}',
         "cut 0: unknown keys ['oneway']"),
        ('{"cuts": [{"start_s": "1", "end_s": 2, "a": [0], "b": [1]}]}', "must be numbers"),
        ('{"cuts": [{"start_s": 1, "end_s": 2, "a": [true], "b": [1]}]}', "lists of instance"),
        ('{"cuts": 5}', "cuts must be a list"),
        ('{"cuts": [{"start_s": 1, "a": [0], "b": [1], "one_way": "no"}]}', "true or false"),
    ],
)  # fmt: skip
def test_bad_json_is_one_line_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(FaultScheduleError, match=re.escape(message)) as e:
        FaultSchedule.from_json(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (Cut(1, 2, (), (1,)), "must not be empty"),
        (Cut(1, 2, (0, 1), (1,)), r"\[1\] on both sides"),
        (Cut(1, 2, (0,), (5,)), "no instance 5 \\(there are 4\\)"),
        (Cut(3, 2, (0,), (1,)), "needs 0 <= start_s < end_s"),
        (Cut(-1, 2, (0,), (1,)), "needs 0 <= start_s < end_s"),
    ],
)
def test_check_refuses_what_cannot_be_played(cut: Cut, message: str) -> None:
    with pytest.raises(FaultScheduleError, match=message):
        FaultSchedule((cut,)).check(4)


@settings(max_examples=50, deadline=None)
@given(st.data(), st.integers(2, 8), st.booleans())
def test_generated_schedules_are_playable(data: Any, count: int, heal: bool) -> None:
    schedule = data.draw(schedules(count, start=(5, 20), length=(1, 6), heal=heal))
    schedule.check(count)
    assert FaultSchedule.from_json(schedule.to_json()) == schedule
    if heal:
        assert schedule.healed_by() is not None
    for c in schedule.cuts:  # every cut holds while it lasts, and only it ends when it ends
        assert c.directions() <= schedule.cut_at(c.start_s)
        if c.end_s is not None:
            others = set().union(*(o.directions() for o in schedule.cuts if o.active(c.end_s)))
            assert schedule.cut_at(c.end_s) & c.directions() == others & c.directions()


class _Env:
    """Just what `play` touches: env.network.configure, recording (virtual time, call)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, Any, list[Any]]] = []
        self.network = self

    async def configure(self, default: Any = None, *, rules: Any = ()) -> None:
        self.calls.append((trio.current_time(), default, list(rules)))


def test_play_configures_at_each_change_of_its_own_part() -> None:
    env = _Env()
    ips = {0: "198.18.0.1", 1: "198.18.0.2", 2: "198.18.0.3", 3: "198.18.0.4"}
    base = [{"peers": ["198.18.0.9"], "drop": True}]

    async def main() -> None:
        await trio.sleep(99.0)
        await play(env, TWO_CUTS, 1, ips, t0=100.0, default="shape",  # type: ignore[arg-type]
                   rules=base, now=trio.current_time)  # fmt: skip

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # instance 1: cut from 2, 3 at t0+2; unchanged at t0+4 (3 -> 1 is 3's to drop); healed at 6
    assert env.calls == [
        (102.0, "shape", [*base, {"peers": ["198.18.0.3", "198.18.0.4"], "drop": True}]),
        (106.0, "shape", base),
    ]


def test_play_takes_the_cut_peers_out_of_the_instances_own_rules() -> None:
    """A rule shaping a peer the schedule cuts named it twice: the network refused the
    request ("peer ... is named by an earlier rule"), and the cut was never made."""
    env = _Env()
    ips = {0: "198.18.0.1", 1: "198.18.0.2", 2: "198.18.0.3", 3: "198.18.0.4"}
    own = [{"peers": ["198.18.0.3"], "shape": {"latency_ms": 20}},
           {"peers": ["198.18.0.4", "198.18.0.9"], "shape": {"latency_ms": 30}}]

    async def main() -> None:
        await trio.sleep(99.0)
        await play(env, TWO_CUTS, 1, ips, t0=100.0, rules=own,  # type: ignore[arg-type]
                   now=trio.current_time)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert env.calls == [
        (102.0, None, [{"peers": ["198.18.0.9"], "shape": {"latency_ms": 30}},
                       {"peers": ["198.18.0.3", "198.18.0.4"], "drop": True}]),
        (106.0, None, own),  # healed: its own rules whole again
    ]


def test_play_started_late_goes_straight_to_the_state_of_now() -> None:
    env = _Env()
    ips = {i: f"198.18.0.{i + 1}" for i in range(4)}

    async def main() -> None:
        await trio.sleep(107.0)  # t0 + 7: the first cut (2..6) is over, the one-way one holds
        await play(env, TWO_CUTS, 3, ips, t0=100.0, now=trio.current_time)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert env.calls == [(107.0, None, [{"peers": ["198.18.0.2"], "drop": True}])]


def test_strategy_refuses_bounds_it_cannot_meet() -> None:
    with pytest.raises(ValueError, match="max_cuts >= 1"):
        schedules(4, start=(1, 2), length=(1, 2), max_cuts=0)
    with pytest.raises(ValueError, match=r"0\.001 <= length"):
        schedules(4, start=(1, 2), length=(0, 2))
    with pytest.raises(ValueError, match="ends after heal_by"):
        schedules(4, start=(1, 5), length=(1, 2), heal_by=5.5)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_healed_cuts_end_by_heal_by(data: Any) -> None:
    schedule = data.draw(schedules(5, start=(2, 6), length=(1, 4), heal_by=7.0))
    assert all(c.end_s is not None and c.end_s <= 7.0 for c in schedule.cuts)
