"""The Network's policy logic, without namespaces (dry_run) and with a recording backend."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

import netem
from netem import IDENTITY, LinkShape, Network, RequestError

SLOW = LinkShape(latency_ms=50)
LOSSY = LinkShape(loss_pct=10)


def ip(n: int) -> IPv4Address:
    return IPv4Address("198.18.0.0") + n


@pytest.fixture
def net(recording: Any, tmp_path: Path) -> Network:
    network = Network(backend=recording, record=tmp_path / "network.jsonl", dry_run=True)
    network.build(4)
    return network


def test_build_names_addresses_and_attach(recording: Any) -> None:
    with Network(prefix="tq1", backend=recording, dry_run=True) as net:
        hosts = net.build(3)
        assert [h.name for h in hosts] == ["h1", "h2", "h3"]
        assert [h.ip for h in hosts] == [ip(1), ip(2), ip(3)]
        assert hosts[1].netns == "tq1-h2" and hosts[1].netns_path == "/run/netns/tq1-h2"
        assert hosts[1].ifname == "tq1-h2" and hosts[1].hub_ifname == "tq1-p2"
        op, (hub, infos) = recording.calls[0]
        assert op == "attach" and hub == "tq1-hub"
        assert infos == [h.info() for h in hosts]
        assert recording.calls[1] == ("apply", {})
    assert recording.calls[-1] == ("close", None)


def test_generated_prefix_and_names_fit() -> None:
    net = Network(backend="none", dry_run=True)
    assert net.prefix.startswith("ht") and len(net.prefix) == 8
    hosts = net.build(500)
    assert all(len(h.ifname) <= 15 and len(h.hub_ifname) <= 15 for h in hosts)
    assert all(h.netns.startswith(net.prefix + "-") for h in hosts)


def test_default_then_rule_overrides(net: Network, recording: Any) -> None:
    net.set_default("h1", SLOW)
    m = net.matrix()
    assert m == {(ip(1), ip(2)): SLOW, (ip(1), ip(3)): SLOW, (ip(1), ip(4)): SLOW}
    net.set_rule("h1", "198.18.0.3", LOSSY)
    net.set_rule(ip(2), "h1", LOSSY)
    m = net.matrix()
    assert m[(ip(1), ip(3))] == LOSSY
    assert m[(ip(1), ip(2))] == SLOW
    assert m[(ip(2), ip(1))] == LOSSY
    assert (ip(2), ip(3)) not in m
    assert recording.last_matrix == m
    net.set_rule("h1", "h2", IDENTITY)  # a rule may say "unshaped" despite the default
    assert (ip(1), ip(2)) not in net.matrix()
    net.set_rule("h1", "h2", None)  # removing the rule brings the default back
    assert net.matrix()[(ip(1), ip(2))] == SLOW
    net.set_default("h1", None)
    assert set(net.matrix()) == {(ip(1), ip(3)), (ip(2), ip(1))}


def test_partition_both_ways_oneway_and_heal(net: Network) -> None:
    h1, h2, h3, _ = net.hosts
    net.partition({h1, h2}, {h3})
    both = {(ip(1), ip(3)), (ip(2), ip(3)), (ip(3), ip(1)), (ip(3), ip(2))}
    assert net.drops() == both
    net.partition(["h4"], ["h1"], oneway=True)
    assert net.drops() == both | {(ip(4), ip(1))}
    net.heal(["h1"], ["h3"])
    assert net.drops() == {(ip(2), ip(3)), (ip(3), ip(2)), (ip(4), ip(1))}
    net.heal(["h4"])
    assert net.drops() == {(ip(2), ip(3)), (ip(3), ip(2))}
    net.heal()
    assert net.drops() == frozenset()


def test_request_sets_default_rules_and_drops(net: Network) -> None:
    config = {
        "default": {"latency_ms": 50},
        "rules": [
            {"peers": ["198.18.0.3"], "shape": {"loss_pct": 10}},
            {"peers": ["198.18.0.4"], "drop": True},
        ],
        "enabled": True,
        "callback_state": "network-configured",
        "callback_target": 4,
    }
    request = net.apply_request("h1", config, asked_by="single/0")
    assert request.default == SLOW and request.drops == {ip(4)}
    assert net.matrix() == {(ip(1), ip(2)): SLOW, (ip(1), ip(3)): LOSSY, (ip(1), ip(4)): SLOW}
    assert net.drops() == {(ip(1), ip(4))}
    # A new request replaces the host's earlier one entirely.
    net.apply_request("h1", {"default": None}, asked_by="single/0")
    assert net.matrix() == {} and net.drops() == frozenset()


def test_request_disabled_cuts_host_both_ways(net: Network) -> None:
    net.apply_request("h2", {"enabled": False}, asked_by="single/1")
    others = [ip(1), ip(3), ip(4)]
    assert net.drops() == {(ip(2), o) for o in others} | {(o, ip(2)) for o in others}
    net.heal()  # heal is for partitions; a host's own request stays
    assert len(net.drops()) == 6
    net.apply_request("h2", {"enabled": True}, asked_by="single/1")
    assert net.drops() == frozenset()


BAD_REQUESTS: list[tuple[Any, str]] = [
    ([], "must be an object"),
    ({"colour": "red"}, "unknown network config key(s) colour"),
    # accepted, with an "ok" reply, and no state signalled: a barrier on it would hang
    ({"callback_state": 5}, "callback_state must be a state's name, not 5"),
    ({"callback_state": ""}, "callback_state must be a state's name, not ''"),
    ({"callback_target": -3}, "callback_target must be a whole number >= 0, not -3"),
    ({"callback_target": "lots"}, "callback_target must be a whole number >= 0, not 'lots'"),
    ({"default": {"latency_ms": -1}}, "default: latency_ms -1 is out of range: 0 to 250000"),
    ({"default": {"latency": 5}}, "default: unknown link shape field(s) latency"),
    ({"default": [1]}, "default: a link shape is an object"),
    ({"enabled": "yes"}, "enabled must be true or false"),
    ({"rules": {}}, "rules must be a list"),
    ({"rules": [{"peers": ["198.18.0.2"]}]}, "rules[0] needs exactly one of shape or drop"),
    (
        {"rules": [{"peers": ["198.18.0.2"], "drop": True, "shape": {}}]},
        "rules[0] needs exactly one of shape or drop",
    ),
    ({"rules": [{"peers": [], "drop": True}]}, "rules[0].peers must be a non-empty list"),
    ({"rules": [{"peers": ["10.0.0.1"], "drop": True}]}, "no host has address 10.0.0.1"),
    ({"rules": [{"peers": ["nonsense"], "drop": True}]}, "'nonsense' is not an IPv4 address"),
    ({"rules": [{"peers": ["198.18.0.1"], "drop": True}]}, "is the asking host itself"),
    (
        {
            "rules": [
                {"peers": ["198.18.0.2"], "drop": True},
                {"peers": ["198.18.0.2"], "drop": True},
            ]
        },
        "rules[1]: peer 198.18.0.2 is named by an earlier rule",
    ),
    (
        {
            "default": {"latency_ms": 5},
            "rules": [{"peers": ["198.18.0.2"], "shape": {"loss_pct": 200}}],
        },
        "rules[0].shape: loss_pct 200 is out of range: 0 to 100",
    ),
    ({"rules": [{"peers": ["198.18.0.2"], "drop": 1}]}, "rules[0].drop must be true or false"),
]


@pytest.mark.parametrize(("config", "message"), BAD_REQUESTS)
def test_bad_request_changes_nothing(
    net: Network, recording: Any, tmp_path: Path, config: Any, message: str
) -> None:
    net.apply_request("h1", {"default": {"latency_ms": 7}}, asked_by="x")
    net.partition(["h3"], ["h4"])
    before = (net.matrix(), net.drops(), len(recording.calls))
    record_before = (tmp_path / "network.jsonl").read_text()
    with pytest.raises(RequestError) as info:
        net.apply_request("h1", config, asked_by="x")
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert (net.matrix(), net.drops(), len(recording.calls)) == before
    assert (tmp_path / "network.jsonl").read_text() == record_before


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda n: n.set_default("h9", SLOW), "no host named 'h9'"),
        (lambda n: n.set_default("10.1.1.1", SLOW), "no host has address 10.1.1.1"),
        (lambda n: n.set_default("h1", {"latency_ms": 5}), "a shape is a LinkShape or None"),
        (lambda n: n.set_rule("h1", "h1", SLOW), "two different hosts"),
        (lambda n: n.partition(["h1"], ["h1", "h2"]), "host h1 is on both sides"),
        (lambda n: n.partition([], ["h2"]), "side a of a partition is empty"),
        (lambda n: n.partition("h1", ["h2"]), "side a is a collection of hosts"),
        (lambda n: n.build(2), "built already"),
    ],
)
def test_bad_calls_change_nothing(net: Network, recording: Any, call: Any, message: str) -> None:
    net.set_default("h2", LOSSY)
    before = (net.matrix(), net.drops(), len(recording.calls))
    with pytest.raises(RequestError, match=message.replace("(", r"\(")):
        call(net)
    assert (net.matrix(), net.drops(), len(recording.calls)) == before


def test_backend_failure_keeps_previous_policy(net: Network, recording: Any) -> None:
    net.set_default("h1", SLOW)
    recording.fail_next_apply = True
    with pytest.raises(RuntimeError, match="backend refused"):
        net.set_default("h1", LOSSY)
    assert net.matrix()[(ip(1), ip(2))] == SLOW


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": "Bad"}, "bad prefix 'Bad'"),
        ({"prefix": "waytoolongprefix"}, "bad prefix"),
        ({"subnet": "198.18.0.0/33"}, "bad subnet"),
        ({"subnet": "198.18.0.1/15"}, "bad subnet"),
        ({"subnet": "10.0.0.0/31"}, "too small"),
        ({"backend": "magic"}, "unknown backend 'magic'"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        Network(dry_run=True, **kwargs)


@pytest.mark.parametrize("count", [0, -1, True, 2.0, "3"])
def test_bad_count(count: Any) -> None:
    with pytest.raises(RequestError, match="host count"):
        Network(backend="none", dry_run=True).build(count)


def test_subnet_too_small_for_count() -> None:
    with pytest.raises(RequestError, match="room for 6 hosts, not 7"):
        Network(backend="none", subnet="10.9.0.0/29", dry_run=True).build(7)


def test_changes_before_build_and_after_close() -> None:
    net = Network(backend="none", dry_run=True)
    with pytest.raises(RequestError, match="no host named 'h1'"):
        net.set_default("h1", SLOW)
    net.build(2)
    net.close()
    net.close()  # twice is fine
    with pytest.raises(RequestError, match="is closed"):
        net.set_default("h1", SLOW)


def test_record_lines(net: Network, tmp_path: Path) -> None:
    net.set_default("h1", SLOW, asked_by="conductor")
    net.partition(["h1"], ["h2"], oneway=True)
    net.close()
    lines = [json.loads(t) for t in (tmp_path / "network.jsonl").read_text().splitlines()]
    assert [ln["op"] for ln in lines] == ["build", "default", "partition", "close"]
    for line in lines:
        assert isinstance(line["ts"], float) and isinstance(line["mono"], float)
    assert lines[0]["applied"]["hosts"][1] == {"name": "h2", "ip": "198.18.0.2"}
    assert lines[1]["asked_by"] == "conductor"
    assert lines[1]["asked"] == {"host": "198.18.0.1", "shape": SLOW.to_dict()}
    assert lines[2]["applied"]["cut"] == {"198.18.0.1": ["198.18.0.2"]}


def test_replay_rebuilds_same_state(net: Network, tmp_path: Path) -> None:
    net.set_default("h1", SLOW)
    net.set_rule("h2", "h3", LOSSY)
    net.partition(["h1", "h2"], ["h4"])
    net.apply_request("h3", {"rules": [{"peers": ["198.18.0.1"], "drop": True}]}, asked_by="a/2")
    net.heal(["h2"])
    expected = (net.matrix(), net.drops(), [(h.name, h.ip) for h in net.hosts])
    net.close()
    again = netem.replay(tmp_path / "network.jsonl", dry_run=True)
    assert (again.matrix(), again.drops(), [(h.name, h.ip) for h in again.hosts]) == expected
    assert again.prefix != net.prefix


def test_replay_rejects_broken_record(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"op": "build"}\nnot json\n')
    with pytest.raises(RequestError, match=r"r.jsonl:2: not JSON"):
        netem.replay(path, dry_run=True)
    path.write_text('{"op": "default", "asked": {}}\n')
    with pytest.raises(RequestError, match="no build line"):
        netem.replay(path, dry_run=True)


def test_replay_rejects_malformed_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    build = {"op": "build", "asked": {"count": 2}, "applied": {"subnet": "198.18.0.0/15"}}
    path.write_text(json.dumps(build) + '\n{"op": "default", "asked": {"host": "h1"}}\n')
    with pytest.raises(RequestError, match=r"r.jsonl:2: malformed default line"):
        netem.replay(path, dry_run=True)


def test_backend_close_failure_still_tears_down(recording: Any) -> None:
    net = Network(backend=recording, dry_run=True)
    net.build(2)

    def broken() -> None:
        raise RuntimeError("engine hung")

    recording.close = broken
    with pytest.raises(netem.NetworkError, match=r"removing network .* failed: engine hung"):
        net.close()
    net.close()  # closed anyway; a second close does nothing
    with pytest.raises(RequestError, match="is closed"):
        net.heal()


def test_cut_and_uncut_any_set_of_directions_in_one_change(
    net: Network, recording: Any, tmp_path: Path
) -> None:
    ring_gaps = [("h1", "h3"), ("h3", "h1"), ("h2", "h4"), ("h4", "h2")]
    calls = len(recording.calls)
    net.cut(ring_gaps, asked_by="fault 0")
    assert len(recording.calls) == calls + 1, "one change for every direction"
    assert net.drops() == {(ip(1), ip(3)), (ip(3), ip(1)), (ip(2), ip(4)), (ip(4), ip(2))}
    net.uncut([("h1", "h3")], asked_by="fault 0")
    assert net.drops() == {(ip(3), ip(1)), (ip(2), ip(4)), (ip(4), ip(2))}
    replayed = netem.replay(tmp_path / "network.jsonl", dry_run=True)
    assert replayed.drops() == net.drops()
    replayed.close()
    with pytest.raises(RequestError, match="two different hosts"):
        net.cut([("h1", "h1")])


def test_an_override_shapes_over_the_hosts_own_and_its_removal_restores_them(
    net: Network, tmp_path: Path
) -> None:
    h1, h2, _, _ = net.hosts
    net.set_default(h1, SLOW)
    net.apply_request(h2, {"rules": [{"peers": [str(ip(3))], "shape": {"loss_pct": 10}}]}, "h2")
    before = net.matrix()
    net.override({("h1", "h2"): LOSSY, ("h2", "h3"): SLOW}, asked_by="fault 1")
    assert net.matrix()[(ip(1), ip(2))] == LOSSY and net.matrix()[(ip(2), ip(3))] == SLOW
    assert net.matrix()[(ip(1), ip(3))] == SLOW, "an override touches only its directions"
    # A host changing its own shape meanwhile does not undo the fault's override.
    net.apply_request(h2, {"default": {"latency_ms": 5}}, "h2")
    assert net.matrix()[(ip(2), ip(3))] == SLOW
    net.override({("h1", "h2"): None, ("h2", "h3"): None}, asked_by="fault 1")
    assert net.matrix()[(ip(1), ip(2))] == before[(ip(1), ip(2))]
    assert net.matrix()[(ip(2), ip(3))] == LinkShape(latency_ms=5)
    replayed = netem.replay(tmp_path / "network.jsonl", dry_run=True)
    assert replayed.matrix() == net.matrix()
    replayed.close()
