"""The fault vocabulary: parsing, checking, selectors, partitions, the JSON round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.faults import (
    EVERYONE,
    Fault,
    FaultError,
    Member,
    Selector,
    When,
    fault_lists,
    faults,
    parse_faults,
    without_each,
)

MEMBERS = [Member("gw/0", "gw", "gateway")] + [
    Member(f"miners/{i}", "miners", "miner") for i in range(9)
]


def test_a_kill_of_sixty_percent_of_the_miners_chooses_them_with_its_seed() -> None:
    fault = Fault.from_data({"at": "20s", "action": "kill",
                             "targets": {"group": "miners", "percentage": 60, "seed": 4}})
    assert fault.at == 20.0 and fault.expectation() == "may_die"
    chosen = fault.resolve(MEMBERS).instances
    assert len(chosen) == 6 and all(c.startswith("miners/") for c in chosen)
    assert fault.resolve(MEMBERS).instances == chosen, "the same seed chose differently"
    other = Fault.from_data({**fault.to_data(), "targets": {"group": "miners",
                                                            "percentage": 60, "seed": 5}})
    assert other.resolve(MEMBERS).instances != chosen


def test_a_count_on_processes_is_drawn_from_the_running_instances() -> None:
    """Three of the miners have exited: 60 % is 4 of the 6 left, never a dead one; named
    instances, restart and network faults still take whom they select. A draw is never
    refused for whom it finds dead (a schedule valid before the run stays playable)."""
    dead = {"miners/0", "miners/3", "miners/7"}
    running = {m.id for m in MEMBERS} - dead
    for action in ("kill", "stop", "pause", "skew", "limit", "hog"):
        extra = {"skew": {"offset": "1s"}, "limit": {"cpu": 0.5}, "hog": {"cpu": 1}}
        fault = Fault.from_data({"at": 1, "action": action, **extra.get(action, {}),
                                 "targets": {"group": "miners", "percentage": 60}})
        chosen = fault.resolve(MEMBERS, running=running).instances
        assert len(chosen) == 4 and not dead & set(chosen), (action, chosen)
    for seed in range(20):  # whichever the seed draws
        one = Fault.from_data({"at": 1, "action": "kill",
                               "targets": {"group": "miners", "count": 6, "seed": seed}})
        assert set(one.resolve(MEMBERS, running=running).instances) == running - {"gw/0"}
    named = Fault.from_data({"at": 1, "action": "kill",
                             "targets": {"instances": ["miners/0", "miners/1"]}})
    assert named.resolve(MEMBERS, running=running).instances == ("miners/0", "miners/1")
    for action in ("restart", "partition", "isolate"):
        every = Fault.from_data({"at": 1, "action": action,
                                 "targets": {"group": "miners", "count": 9}})
        assert len(every.resolve(MEMBERS, running=running).instances) == 9, action
    # Too few running: all of them, and the rest drawn from the others (they are missed).
    seven = Fault.from_data({"at": 1, "action": "kill",
                             "targets": {"group": "miners", "count": 7}})
    chosen = set(seven.resolve(MEMBERS, running=running).instances)
    assert len(chosen) == 7 and chosen > running - {"gw/0"}
    assert len(seven.resolve(MEMBERS, running={"gw/0"}).instances) == 7
    # Everyone running: the very draw made before the run.
    assert seven.resolve(MEMBERS, running={m.id for m in MEMBERS}) == seven.resolve(MEMBERS)


def test_sync_conditions_durations_and_undo_expectations() -> None:
    fault = Fault.from_data({"at": {"state": "layer-5", "count": 10}, "action": "kill",
                             "duration": "500ms", "targets": {"role": "gateway"}})
    assert fault.at == When("layer-5", 10) and fault.duration == 0.5
    assert fault.expectation() == "recover"  # killed, then started again after 0.5 s
    assert fault.resolve(MEMBERS).instances == ("gw/0",)
    pause = Fault.from_data({"at": 1, "action": "pause", "targets": {"count": 1},
                             "expect": "may_die"})
    assert pause.expectation() == "may_die"
    assert Fault.from_data({"at": 1, "action": "heal"}).expectation() is None


def test_skew_limit_and_hog_arguments() -> None:
    skew = Fault.from_data({"at": 0, "action": "skew", "offset": "-300ms", "drift": 0.001,
                            "targets": {"instances": ["miners/1"]}})
    assert skew.args == {"offset": -0.3, "drift": 0.001}
    limit = Fault.from_data({"at": 0, "action": "limit", "memory": "64MiB", "cpu": 0.5,
                             "targets": {"group": "gw"}})
    assert limit.args == {"memory": 64 * 2**20, "cpu": 0.5}
    assert Fault.from_data({"at": 0, "action": "hog", "targets": {"count": 1}}).args == {
        "cpu": 1}


def _cut(data: dict[str, Any]) -> set[tuple[str, str]]:
    return set(Fault.from_data({"at": 0, **data}).resolve(MEMBERS).directions)


def test_partitions_by_kind() -> None:
    ids = [m.id for m in MEMBERS]
    sides = _cut({"action": "partition", "targets": {"group": "gw"}})
    assert sides == {(a, b) for a in ["gw/0"] for b in ids[1:]} | {
        (b, "gw/0") for b in ids[1:]}
    one_way = _cut({"action": "partition", "targets": {"group": "gw"}, "one_way": True})
    assert one_way == {("gw/0", b) for b in ids[1:]}
    halves = _cut({"action": "partition", "kind": "halves"})
    assert len(halves) == 2 * 5 * 5 and ("gw/0", "miners/3") not in halves
    assert ("gw/0", "miners/4") in halves
    majority = _cut({"action": "partition", "kind": "majority"})
    reach = {i: {b for b in ids if b != i and (i, b) not in majority} for i in ids}
    assert sorted(len(r) + 1 for r in reach.values()) == [4] * 4 + [6] * 6
    ring = _cut({"action": "partition", "kind": "ring"})
    assert all(len([b for b in ids if b != a and (a, b) not in ring]) == 2 for a in ids)
    bridge = _cut({"action": "partition", "kind": "bridge"})
    middle = ids[len(ids) // 2]
    assert not any(middle in pair for pair in bridge)
    assert ("gw/0", ids[-1]) in bridge and (ids[-1], "gw/0") in bridge
    isolate = _cut({"action": "isolate", "targets": {"instances": ["miners/3"]}})
    assert isolate == {("miners/3", b) for b in ids if b != "miners/3"} | {
        (b, "miners/3") for b in ids if b != "miners/3"}


@pytest.mark.parametrize("kind", ["halves", "majority", "bridge", "ring"])
def test_a_partition_of_any_size_it_accepts_cuts_something(kind: str) -> None:
    """A ring of 3 (all neighbours) or a majority of 2 (one side) was accepted, cut nothing,
    and the supervisor died of netem's "no direction given" in the middle of the run."""
    for n in range(1, len(MEMBERS) + 1):
        data = {"action": "partition", "kind": kind, "targets": {"count": n, "seed": 1}}
        try:
            cut = _cut(data)
        except FaultError as e:
            assert "needs at least" in str(e)
            assert n < 4, (kind, n)
        else:
            assert cut, (kind, n)


def test_shape_takes_the_directions_from_its_targets_to_its_destinations() -> None:
    cut = _cut({"action": "shape", "shape": {"latency_ms": 100},
                "targets": {"group": "gw"}, "to": {"instances": ["miners/0", "miners/1"]}})
    assert cut == {("gw/0", "miners/0"), ("gw/0", "miners/1")}


BAD: list[tuple[Any, str]] = [
    ({"at": 1, "action": "explode", "targets": {}}, "action must be one of"),
    ({"action": "kill", "targets": {}}, "'at' is missing"),
    ({"at": 1, "action": "kill"}, "'targets' is missing"),
    ({"at": 1, "action": "kill", "targets": {}, "grace": 1}, "unknown key 'grace'"),
    ({"at": 1, "action": "kill", "targets": {"count": 2, "percentage": 5}}, "not both"),
    ({"at": 1, "action": "kill", "targets": {"count": 2.5}}, "count must be a whole number"),
    ({"at": 1, "action": "kill", "targets": {"count": True}}, "count must be a whole number"),
    ({"at": 1, "action": "kill", "targets": {"percentage": 0}}, "percentage must be"),
    ({"at": 1, "action": "kill", "targets": {"colour": "red"}}, "unknown key 'colour'"),
    ({"at": 1, "action": "kill", "targets": {"group": 3}}, "must be a name or a list"),
    # an empty list (a script's) selected every instance: a targeted kill killed them all
    ({"at": 1, "action": "kill", "targets": {"group": []}}, "group: an empty list names nobody"),
    ({"at": 1, "action": "kill", "targets": {"role": [], "count": 1}}, "role: an empty list"),
    ({"at": 1, "action": "pause", "targets": {"instances": []}}, "instances: an empty list"),
    ({"at": 1, "action": "partition", "targets": {"group": "gw"},
      "others": {"instances": []}}, "others: instances: an empty list"),
    ({"at": True, "action": "heal"}, "must be a duration"),
    ({"at": "soon", "action": "heal"}, "is not a duration"),
    ({"at": -1, "action": "heal"}, "must not be negative"),
    ({"at": {"state": "x"}, "action": "heal"}, "a sync condition is"),
    ({"at": {"state": "x", "count": 0}, "action": "heal"}, "count must be a whole number"),
    ({"at": 1, "action": "heal", "targets": {}}, "takes no targets"),
    ({"at": 1, "action": "heal", "duration": 2}, "has no duration"),
    ({"at": 1, "action": "restart", "targets": {}, "duration": 2}, "has no duration"),
    ({"at": 1, "action": "kill", "targets": {}, "duration": 0}, "longer than 0"),
    ({"at": 1, "action": "kill", "targets": {}, "duration": "9999h"}, "longer than a week"),
    ({"at": 1, "action": "kill", "targets": {}, "expect": "maybe"}, "expect must be"),
    ({"at": 1, "action": "skew", "targets": {}, "expect": "recover", "offset": 1},
     "only process faults"),
    ({"at": 1, "action": "shape", "shape": {"latency_ms": -5}}, "latency_ms -5 is out of range"),
    ({"at": 1, "action": "shape", "shape": {"latncy_ms": 5}}, "unknown field 'latncy_ms'"),
    ({"at": 1, "action": "shape"}, "must be a table of link shape fields"),
    ({"at": 1, "action": "partition", "kind": "star"}, "kind must be one of"),
    ({"at": 1, "action": "partition", "kind": "ring", "one_way": True}, "only with kind"),
    ({"at": 1, "action": "partition", "one_way": "yes"}, "one_way must be true or false"),
    ({"at": 1, "action": "partition", "one_way": 1}, "one_way must be true or false"),
    ({"at": 1, "action": "partition", "one_way": 0}, "one_way must be true or false"),
    ({"at": 1, "action": "skew", "targets": {}}, "give offset, drift or both"),
    ({"at": 1, "action": "skew", "targets": {}, "drift": 2}, "drift must be a number"),
    ({"at": 1, "action": "limit", "targets": {}}, "give cpu, memory or both"),
    ({"at": 1, "action": "limit", "targets": {}, "cpu": 0}, "cpu must be a number of CPUs"),
    ({"at": 1, "action": "limit", "targets": {}, "memory": "12 apples"}, "is not a size"),
    ({"at": 1, "action": "limit", "targets": {}, "memory": 1000}, "at least 1MiB"),
    # "must be at least 1MiB" for one too large
    ({"at": 1, "action": "limit", "targets": {}, "memory": 10**23}, "at most 2**63 - 1 bytes"),
    ({"at": 1, "action": "hog", "targets": {}, "cpu": 0.5}, "busy loops"),
    ("kill", "must be a table"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_faults_are_one_line_errors_naming_the_problem(data: Any, message: str) -> None:
    with pytest.raises(FaultError) as caught:
        parse_faults([data])
    text = str(caught.value)
    assert message in text and "\n" not in text and text.startswith("faults[0]")


RESOLVE_BAD: list[tuple[dict[str, Any], str]] = [
    ({"action": "kill", "targets": {"group": "minerz"}}, "no group 'minerz'"),
    ({"action": "kill", "targets": {"role": "poet"}}, "no role 'poet'"),
    ({"action": "kill", "targets": {"instances": ["miners/99"]}}, "no instance 'miners/99'"),
    ({"action": "kill", "targets": {"group": "gw", "count": 2}}, "only 1 instance(s) match"),
    ({"action": "kill", "targets": {"group": "gw", "role": "miner"}}, "selects no instance"),
    ({"action": "partition", "targets": {}}, "the other side is empty"),
    ({"action": "partition", "targets": {"group": "gw"}, "others": {"role": "gateway"}},
     "on both sides"),
    ({"action": "partition", "kind": "ring", "targets": {"count": 2}},
     "a ring partition needs at least 4 instances, not 2"),
    ({"action": "shape", "shape": {"latency_ms": 1}, "targets": {"group": "gw"},
      "to": {"group": "gw"}}, "shapes no direction"),
]


@pytest.mark.parametrize(("data", "message"), RESOLVE_BAD)
def test_faults_the_run_cannot_meet_are_refused_before_it_starts(
    data: dict[str, Any], message: str
) -> None:
    fault = Fault.from_data({"at": 0, **data})
    with pytest.raises(FaultError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fault.resolve(MEMBERS)
    when = Fault.from_data({"at": {"state": "s", "count": 11}, "action": "heal"})
    with pytest.raises(FaultError, match="the run has 10 instances"):
        when.resolve(MEMBERS)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, len(MEMBERS)).flatmap(
    lambda n: st.tuples(st.just(MEMBERS[:n]), faults(MEMBERS[:n], states=("ready", "layer-5")))))
def test_any_fault_round_trips_through_json_and_resolves(
    drawn: tuple[list[Member], Fault],
) -> None:
    """Over any run of 2 or more instances (a ring partition of 3 was drawn, and refused:
    it cuts nothing)."""
    members, fault = drawn
    text = json.dumps(fault.to_data())
    again = Fault.from_data(json.loads(text))
    assert again == fault
    resolved = fault.resolve(members)
    assert set(resolved.instances) <= {m.id for m in members}
    json.loads(json.dumps(resolved.to_data()))  # the record's form is JSON too
    if fault.action in ("partition", "isolate", "shape"):
        assert resolved.directions, f"{fault.action} cut nothing"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_drawn_lists_keep_to_any_spans_given_and_round_trip(data: st.DataObject) -> None:
    """A span starting at 0 drew faults lasting 0 s, which Fault.from_data refuses."""
    low = data.draw(st.integers(0, 3000)) / 1000
    span = (low, low + data.draw(st.integers(0, 3000)) / 1000)
    drawn = data.draw(fault_lists(MEMBERS, at=span, duration=span if low else (0.001, 1.0),
                                  actions=["pause", "kill", "shape"], max_faults=3))
    for fault in drawn:
        assert Fault.from_data(json.loads(json.dumps(fault.to_data()))) == fault
        assert span[0] <= fault.at <= span[1]  # type: ignore[operator]


@pytest.mark.parametrize(("kw", "message"), [
    ({"duration": (0, 2)}, r"duration must be \(low, high\) seconds with 0.001 <= low"),
    ({"duration": (-2, -1)}, "duration must be"),
    ({"at": (5, 1)}, r"at must be \(low, high\) seconds with 0 <= low <= high, not \(5, 1\)"),
    ({"at": (0, float("inf"))}, "at must be"),
    ({"actions": ["explode"]}, "actions must be some of shape, partition, "),
    ({"actions": []}, "actions must be some of"),
])
def test_spans_and_actions_a_draw_cannot_keep_to_are_refused(kw: dict[str, Any],
                                                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fault_lists(MEMBERS, **kw)


@settings(max_examples=300, deadline=None)
@given(faults(MEMBERS), st.sets(st.sampled_from([m.id for m in MEMBERS])),
       st.lists(st.sampled_from([m.id for m in MEMBERS]), min_size=1, unique=True))
def test_a_selector_s_candidates_hold_whatever_it_may_choose(
    fault: Fault, running: set[str], named: list[str]
) -> None:
    """Who a fault hits, whoever runs and whoever its topic names, is among its targets'
    candidates (a run preloads libfaketime into those of its skews, and only those)."""
    try:
        chosen = fault.resolve(MEMBERS, topics=lambda _: named, running=running).instances
    except FaultError:
        return  # the topic names no one the selector may choose, say
    assert set(chosen) <= set(fault.targets.candidates(MEMBERS))


def test_selector_defaults_and_its_table() -> None:
    assert EVERYONE.resolve(MEMBERS, "x") == tuple(m.id for m in MEMBERS)
    sel = Selector.from_data({"group": ["gw", "miners"], "count": 3, "seed": 2}, "x")
    assert Selector.from_data(sel.to_data(), "x") == sel
    assert len(sel.resolve(MEMBERS, "x")) == 3
    assert sel.candidates(MEMBERS) == tuple(m.id for m in MEMBERS)  # whatever the count
    picky = Selector.from_data({"role": "miner", "instances": ["gw/0", "miners/2"]}, "x")
    assert picky.candidates(MEMBERS) == ("miners/2",)


def test_a_topic_names_who_is_hit_when_the_fault_fires() -> None:
    fault = Fault.from_data({"at": 5, "action": "kill", "targets": {"topic": "leader"}})
    assert fault.resolve(MEMBERS).instances == tuple(m.id for m in MEMBERS), (
        "before the run, a topic may name anyone")
    latest = {"leader": "miners/4"}
    assert fault.resolve(MEMBERS, topics=latest.get).instances == ("miners/4",)
    latest["leader"] = ["miners/1", "gw/0"]
    assert fault.resolve(MEMBERS, topics=latest.get).instances == ("gw/0", "miners/1")
    for item, message in ((None, "nothing was published"), (5, "must name an instance id"),
                          ("miners/77", "no instance of the run")):
        with pytest.raises(FaultError, match=message):
            fault.resolve(MEMBERS, topics={"leader": item}.get)
    away = Fault.from_data({"at": 5, "action": "partition", "targets": {"topic": "leader"}})
    assert away.resolve(MEMBERS, topics={"leader": "gw/0"}.get).directions == frozenset(
        {("gw/0", m.id) for m in MEMBERS[1:]} | {(m.id, "gw/0") for m in MEMBERS[1:]})


def test_sides_named_by_topics_are_checked_when_the_fault_fires() -> None:
    fault = Fault.from_data({"at": 1, "action": "partition", "targets": {"topic": "leader"},
                             "others": {"topic": "followers"}})
    assert fault.resolve(MEMBERS).directions == frozenset(), "nothing is known before the run"
    latest = {"leader": "gw/0", "followers": ["miners/0", "miners/1"]}
    assert fault.resolve(MEMBERS, topics=latest.get).directions == frozenset(
        {("gw/0", "miners/0"), ("gw/0", "miners/1"), ("miners/0", "gw/0"), ("miners/1", "gw/0")})
    latest["followers"] = ["gw/0"]
    with pytest.raises(FaultError, match="on both sides"):
        fault.resolve(MEMBERS, topics=latest.get)


def test_without_each_leaves_out_what_the_failure_does_not_need_and_stops_when_told() -> None:
    pause, kill, shape = (Fault.from_data(t) for t in (
        {"action": "pause", "at": 0, "duration": 1, "targets": {"instances": ["g/0"]}},
        {"action": "kill", "at": 3, "targets": {"instances": ["g/1"]}},
        {"action": "shape", "at": 1, "duration": 1, "shape": {"latency_ms": 5}}))
    tried: list[tuple[Fault, ...]] = []

    def kills(fs: tuple[Fault, ...]) -> bool:
        tried.append(fs)
        return any(f.action == "kill" for f in fs)

    assert without_each((pause, kill, shape), kills) == (kill,)
    assert tried == [(kill, shape), (shape,), (kill,)]
    assert without_each((kill,), kills) == (kill,) and len(tried) == 3  # nothing to leave out
    # None: stop (a budget spent), with the shortest failing list so far
    budget = iter([True, None])
    assert without_each((pause, kill, shape), lambda fs: next(budget)) == (kill, shape)
