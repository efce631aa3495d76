"""The report's view of the configured shapes follows netem's own record exactly."""

from __future__ import annotations

from pathlib import Path

import netem
from harness.observe import ShapeTimeline
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
    timeline = ShapeTimeline(run, list(read_jsonl(record)))
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
