"""A pod's egress layout: the run's netem policy narrowed to the pod as source, one slot per
peer pod fixed by its seq, drops as OUTPUT rules of that pod only."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

import trio

from harness.runners.k8s._actions import ClusterActions, fault_topic, life_topic
from harness.runners.k8s._podnet import CUT_CHAIN, DROP_CHAIN, drop_script, egress_specs
from harness.sync import SyncState
from netem._backends._tc_spec import FIRST_SLOT, DstFilter, NetemLeaf
from netem._policy import Policy, parse_request

ME, A, B = (IPv4Address(f"10.244.0.{n}") for n in (5, 9, 12))
HOSTS = {ME: 0, A: 1, B: 2}


def test_a_default_latency_shapes_every_peer_but_not_the_pod_itself() -> None:
    policy = Policy().with_request(ME, parse_request({"default": {"latency_ms": 40}}, ME, HOSTS))
    specs = egress_specs(ME, policy, HOSTS)
    leaves = {s.minor: s for s in specs if isinstance(s, NetemLeaf)}
    filters = {s.dst: s.minor for s in specs if isinstance(s, DstFilter)}
    assert filters == {A: FIRST_SLOT + 1, B: FIRST_SLOT + 2}
    assert {m: leaf.delay_us for m, leaf in leaves.items()} == {FIRST_SLOT + 1: 40_000,
                                                                FIRST_SLOT + 2: 40_000}


def test_another_pods_request_does_not_shape_this_one() -> None:
    policy = Policy().with_request(A, parse_request({"default": {"latency_ms": 40}}, A, HOSTS))
    assert not [s for s in egress_specs(ME, policy, HOSTS) if isinstance(s, NetemLeaf)]


def test_drops_become_output_rules_of_this_pod_only() -> None:
    mine = parse_request({"rules": [{"peers": [str(A)], "drop": True}]}, ME, HOSTS)
    theirs = parse_request({"rules": [{"peers": [str(ME)], "drop": True}]}, B, HOSTS)
    policy = Policy().with_request(ME, mine).with_request(B, theirs)
    script = drop_script(ME, policy, HOSTS)
    assert f"-d {A}/32 -j DROP" in script
    assert str(ME) + "/32" not in script and script.rstrip().endswith("COMMIT")


def test_a_faults_cut_drops_on_arrival_only_what_the_cut_sources_send() -> None:
    # in OUTPUT the sender's send would fail (EPERM); a cut must be a silent network
    script = drop_script(ME, Policy(), HOSTS, cut_from=[A])
    assert f"-A {CUT_CHAIN} -s {A}/32 -j DROP" in script
    assert f"-A {DROP_CHAIN}" not in script and str(B) not in script


def test_cluster_actions_send_each_cut_to_the_destinations_pod() -> None:
    state = SyncState(["g/0", "g/1", "g/2"])
    actions = ClusterActions(state, ["g/0", "g/1", "g/2"])
    trio.run(actions.cut, frozenset({("g/0", "g/1"), ("g/2", "g/1"), ("g/1", "g/0")}), True,
             "fault 0")
    assert state.last_item(fault_topic("g/1"))["cut_from"] == ["g/0", "g/2"]
    assert state.last_item(fault_topic("g/0"))["cut_from"] == ["g/1"]
    assert state.last_item(fault_topic("g/2")) is None
    # an instance a fault ended is not ended twice, and is started again only once
    assert trio.run(actions.end, "g/2", "killed", None, None, "may_die") is True
    assert trio.run(actions.end, "g/2", "killed", None, None, "may_die") is False
    assert trio.run(actions.start, "g/2", "undone") is True
    assert trio.run(actions.start, "g/2", "undone") is False


def test_cluster_actions_draw_from_the_instances_their_agents_say_run() -> None:
    state = SyncState(["a/0", "a/1", "a/2"])
    actions = ClusterActions(state, ["a/0", "a/1", "a/2"])
    assert actions.running() == {"a/0", "a/1", "a/2"}  # no agent has spoken: all started
    agents: dict[str, Callable[[bytes], None]] = {}
    for instance in ("a/0", "a/1", "a/2"):  # each agent listens for its faults, then says so
        agents[instance] = [].append  # its connection (the service replies through it)
        state.subscribe(fault_topic(instance), 1, agents[instance])
        state.publish(life_topic(instance), {"running": True})
    assert actions.running() == {"a/0", "a/1", "a/2"}
    state.publish(life_topic("a/1"), {"running": False, "code": 1})
    assert actions.running() == {"a/0", "a/2"}  # exited on its own: no fault picks it
    state.publish(life_topic("a/1"), {"running": True})
    assert actions.running() == {"a/0", "a/1", "a/2"}
    # a/2's pod went (evicted) and took its agent's connection along, with no last word
    state.drop_connection(agents["a/2"])
    assert actions.running() == {"a/0", "a/1"}


def test_cluster_actions_pause_and_resume_through_the_instances_pod() -> None:
    state = SyncState(["g/0", "g/1"])
    actions = ClusterActions(state, ["g/0", "g/1"])
    assert trio.run(actions.pause, "g/1", True) is True
    assert state.last_item(fault_topic("g/1")) == {"pause": True}
    assert trio.run(actions.pause, "g/1", True) is False  # already paused: nothing sent
    assert trio.run(actions.pause, "g/1", False) is True
    assert state.last_item(fault_topic("g/1")) == {"pause": False}
    assert trio.run(actions.pause, "g/1", False) is False
    # an instance a fault ended cannot be paused
    assert trio.run(actions.end, "g/0", "killed", None, None, "may_die") is True
    assert trio.run(actions.pause, "g/0", True) is False
