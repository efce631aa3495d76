"""The report's view of the configured shapes follows netem's own record exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

import netem
from harness.observe import RunRecord, ShapeTimeline
from harness.observe._jsonl import read_jsonl


def test_timeline_replays_netems_record(tmp_path: Path) -> None:
    record = tmp_path / "network.jsonl"
    with netem.Network(backend="none", record=record, dry_run=True) as net:
        a, b, c = net.build(3)
        net.apply_request(a, {"default": {"latency_ms": 20},
                              "rules": [{"peers": [str(c.ip)], "shape": {"latency_ms": 5}}]}, "i/0")
        net.set_default(b, netem.LinkShape(latency_ms=30, loss_pct=1))
        middle = net.matrix()
        net.partition([a], [b])
        final_matrix, final_drops = net.matrix(), net.drops()
    names = {str(h.ip): f"i/{h.number - 1}" for h in (a, b, c)}
    run = {"network": {"hosts": {v: k for k, v in names.items()}},
           "instances": [{"id": i, "ip": ip} for ip, i in names.items()]}
    timeline = ShapeTimeline(RunRecord.from_json(run), list(read_jsonl(record)))
    expected = {(names[str(s)], names[str(d)]): sh.to_dict() for (s, d), sh in final_matrix.items()}
    for s, d in final_drops:
        expected[(names[str(s)], names[str(d)])] = {"drop": True}
    assert timeline.matrix() == expected
    assert timeline.at("i/0", "i/2")["latency_ms"] == 5  # the rule beats the default
    # and at the time of the second change, before the partition
    mono = timeline.changes[1]["mono"]
    assert timeline.matrix(mono) == {
        (names[str(s)], names[str(d)]): sh.to_dict() for (s, d), sh in middle.items()
    }


class _DyingWithANote(netem.NullBackend):
    gone = False

    def failure(self) -> netem.BackendFailure | None:
        return netem.BackendFailure("x", "its engine", 7, -9, "links pass") if self.gone else None

    def notes(self) -> tuple[str, ...]:
        return ("a slower engine",)


def test_what_the_backend_did_or_said_on_its_own_is_no_change_of_the_links(
    tmp_path: Path,
) -> None:
    record = tmp_path / "network.jsonl"
    backend = _DyingWithANote()
    with netem.Network(backend=backend, record=record, dry_run=True) as net:
        a, b = net.build(2)
        net.backend_notes()
        net.partition([a], [b])  # a change among the backend's lines: its own replay path
        backend.gone = True
        net.backend_failure()
    lines = list(read_jsonl(record))
    assert {"backend-note", "backend-failed", "partition"} <= {line["op"] for line in lines}
    names = {str(h.ip): f"i/{h.number - 1}" for h in (a, b)}
    run = {"network": {"hosts": {v: k for k, v in names.items()}},
           "instances": [{"id": i, "ip": ip} for ip, i in names.items()]}
    timeline = ShapeTimeline(RunRecord.from_json(run), lines)
    assert [c["op"] for c in timeline.changes] == ["partition"]


def test_traces_that_name_nodes_by_their_own_ids_are_mapped_to_instances(tmp_path: Path) -> None:
    """The Spacemesh nodes trace peers by node id; hops must still meet their links."""
    import time

    import orjson

    from harness.observe import analyse_traces

    run_dir = tmp_path / "run"
    record = run_dir / "network.jsonl"
    run_dir.mkdir()
    with netem.Network(backend="none", record=record, dry_run=True) as net:
        a, b = net.build(2)
        for h in (a, b):
            net.apply_request(h, {"default": {"latency_ms": 40}}, f"g/{h.number - 1}")
    t0 = time.monotonic()  # the hops come after the network changes above
    instances = [{"id": f"g/{i}", "group": "g", "group_seq": i, "ip": str(h.ip), "dir": f"g/{i}"}
                 for i, h in enumerate((a, b))]
    (run_dir / "run.json").write_bytes(orjson.dumps({
        "run_id": "r", "instances": instances,
        "network": {"hosts": {i["id"]: i["ip"] for i in instances}}}))
    lines = {
        "g/0": [{"kind": "publish", "msg_id": "m1", "topic": "atx", "from": "node-aa",
                 "to": "node-aa", "mono": t0 + 10, "size": 100}],
        "g/1": [{"kind": "receive", "msg_id": "m1", "topic": "atx", "from": "node-aa",
                 "to": "node-bb", "mono": t0 + 10.041, "size": 100}],
    }
    for iid, recs in lines.items():
        (run_dir / iid).mkdir(parents=True)
        (run_dir / iid / "trace.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    analysis = analyse_traces(run_dir)
    (hop,) = analysis.hops
    assert (hop.src, hop.dst) == ("g/0", "g/1")
    assert hop.expected_ms == 40 and abs(hop.hop_ms - 41) < 0.01
    (atx,) = analysis.topics
    assert (atx.topic, atx.coverage) == ("atx", 1.0)


def test_directions_counts_and_others_match_every_direction_visited() -> None:
    """`directions` counts classes from the entries (no hosts^2 walk): it must agree with
    `matrix`, which visits every direction, for entries of every kind."""
    import random
    from collections import Counter

    from harness.observe import RunRecord, ShapeTimeline

    rng = random.Random(7)
    hosts = [f"h{i}" for i in range(9)]
    shapes = [{"latency_ms": 10.0}, {"latency_ms": 50.0}, {"drop": True}, {"latency_ms": 0.0}]
    for _ in range(30):
        tl = ShapeTimeline(RunRecord("r"), [])
        tl.hosts = hosts
        state: dict[tuple[str, str], dict[str, object]] = {}
        if rng.random() < 0.8:
            state[("*", "*")] = rng.choice(shapes)
        for _ in range(rng.randrange(4)):
            state[(rng.choice(hosts), "*")] = rng.choice(shapes)
        for _ in range(rng.randrange(4)):
            state[("*", rng.choice(hosts))] = rng.choice(shapes)
        for _ in range(rng.randrange(8)):
            state[(rng.choice(hosts), rng.choice(hosts))] = rng.choice(shapes)
        tl._states = [state]
        matrix = tl.matrix()
        d = tl.directions(str)
        assert d.counts == dict(Counter(str(s) for s in matrix.values()))
        for common in [None, *d.counts]:
            want = [(a, b, s) for (a, b), s in matrix.items() if str(s) != common]
            assert d.others(common, 5) == want[:5]
            assert d.others(common, 1000) == want


def _traced_run(run_dir: Path, traces: dict[str, list[tuple[str, str, str, float]]]) -> None:
    """A finished run of g/0, g/1 and g/2 over 40 ms links whose traces of one message
    are `traces`: (kind, from, to, seconds after the message's first publication) each."""
    import time

    import orjson

    run_dir.mkdir()
    with netem.Network(backend="none", record=run_dir / "network.jsonl", dry_run=True) as net:
        hosts = net.build(3)
        for h in hosts:
            net.apply_request(h, {"default": {"latency_ms": 40}}, f"g/{h.number - 1}")
    t0 = time.monotonic() + 10  # after the network's changes
    instances = [{"id": f"g/{i}", "group": "g", "group_seq": i, "ip": str(h.ip), "dir": f"g/{i}"}
                 for i, h in enumerate(hosts)]
    (run_dir / "run.json").write_bytes(orjson.dumps({
        "run_id": "r", "instances": instances, "started": time.time() - 1, "ended": time.time(),
        "network": {"hosts": {i["id"]: i["ip"] for i in instances}}}))
    for iid, recs in traces.items():
        (run_dir / iid).mkdir(parents=True)
        (run_dir / iid / "trace.jsonl").write_bytes(b"".join(
            orjson.dumps({"kind": kind, "msg_id": "m", "topic": "t", "from": frm, "to": to,
                          "mono": t0 + at, "size": 100}) + b"\n"
            for kind, frm, to, at in recs))


def test_a_message_two_nodes_make_counts_from_each_one_s_own_publication(
    tmp_path: Path,
) -> None:
    """Two nodes made the same certificate (the same votes): the second publisher was taken
    to have it only once a copy reached it, so its own copy's hop to a peer read 10 ms over
    a 40 ms link, faster than the link."""
    from harness.observe import analyse_traces

    _traced_run(tmp_path / "run", {
        "g/0": [("publish", "g/0", "g/1", 0.0)],  # the first to make it
        "g/1": [("publish", "g/1", "g/2", 0.010), ("receive", "g/0", "g/1", 0.040)],
        "g/2": [("receive", "g/1", "g/2", 0.050)],
    })
    hops = {(h.src, h.dst): h.hop_ms for h in analyse_traces(tmp_path / "run").hops}
    assert hops[("g/1", "g/2")] == pytest.approx(40.0, abs=0.01)  # from g/1's own at 10 ms
    assert hops[("g/0", "g/1")] == pytest.approx(40.0, abs=0.01)


def test_hops_faster_than_their_link_are_counted_and_warned_about(tmp_path: Path) -> None:
    """A hop of 1 ms over a 40 ms link cannot be: only slow hops were flagged, so a link
    left unshaped, or a trace that misplaced a message, went by without a word."""
    from harness.observe import analyse_traces
    from harness.observe._report import summary

    run_dir = tmp_path / "run"
    _traced_run(run_dir, {
        "g/0": [("publish", "g/0", "g/1", 0.0), ("publish", "g/0", "g/2", 0.0)],
        "g/1": [("receive", "g/0", "g/1", 0.041)],  # as the link says
        "g/2": [("receive", "g/0", "g/2", 0.001)],  # 1 ms: no such link was there
    })
    analysis = analyse_traces(run_dir)
    assert (analysis.too_fast, analysis.fastest) == (1, "g/0 → g/2: 1.0 ms over a 40 ms link")
    assert any(w.startswith("1 message hop was faster than the configured link allows (the "
                            "fastest: g/0 → g/2: 1.0 ms over a 40 ms link)")
               for w in summary(run_dir)["warnings"])
