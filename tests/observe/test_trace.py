"""Trace-derived delays against the configured links, and the causes of outliers."""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from harness._cli import main
from harness.observe import RunRecord, ShapeTimeline, analyse_traces
from harness.observe._tracefile import TRACE_FILE, TRACE_GZ_FILE

# The fixture's hops take the configured latency plus 0.2-1.5 ms (+ the sender's 0.1-0.5 ms
# validation): a hop's measured delay must match its configured latency within this.
TOLERANCE_MS = 3.0


@pytest.mark.parametrize("latency_ms", [10.0, 50.0, 120.0])
def test_hop_delays_match_the_configured_latency(
    run_factory: Callable[..., Path], latency_ms: float
) -> None:
    run_dir = run_factory(latency_ms=latency_ms, changed_ms=2 * latency_ms, messages=8)
    a = analyse_traces(run_dir)
    assert a.hops and not a.outliers
    for hop in a.hops:
        assert hop.expected_ms in (latency_ms, 2 * latency_ms)
        assert 0 <= hop.hop_ms - hop.expected_ms <= TOLERANCE_MS, hop
    # single/1 -> single/2 was reconfigured at 6 s: hops after it expect the new latency
    late = [h for h in a.hops if (h.src, h.dst) == ("single/1", "single/2")]
    assert {h.expected_ms for h in late} == {latency_ms, 2 * latency_ms}
    for link in a.links:
        assert abs(link.median_excess_ms) <= TOLERANCE_MS


def test_propagation_per_topic(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(instances=6, messages=12, latency_ms=20.0, change_at=None)
    a = analyse_traces(run_dir)
    assert [t.topic for t in a.topics] == ["atxs", "blocks"]
    for t in a.topics:
        assert t.messages == 6 and t.coverage == 1.0
        assert len(t.samples_ms) == 6 * 5
        # in the fixture's graph a node is ceil(position / 2) hops from the origin
        assert t.p50_ms == pytest.approx(2 * 20.0, abs=2 * TOLERANCE_MS)
        assert t.max_ms == pytest.approx(3 * 20.0, abs=3 * TOLERANCE_MS)
    m = a.messages[0]
    assert m.origin == "single/0" and set(m.delays_ms) == {f"single/{i}" for i in range(1, 6)}
    assert min(m.delays_ms.values()) == pytest.approx(20.0, abs=TOLERANCE_MS)


def test_unreached_nodes_lower_the_coverage(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(instances=4, messages=2, change_at=None)
    trace = run_dir / "single" / "3" / "trace.jsonl"
    kept = [ln for ln in trace.read_text().splitlines() if '"m000"' not in ln]
    trace.write_text("\n".join(kept) + "\n")
    t = {t.topic: t for t in analyse_traces(run_dir).topics}["blocks"]
    assert t.coverage == pytest.approx(2 / 3)


def test_outliers_and_their_causes(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(
        instances=5, messages=10, lossy=(0, 1), slow_handler=3, queued=(2, 3), change_at=None
    )
    a = analyse_traces(run_dir)
    causes = {(h.src, h.dst): h.cause for h in a.outliers}
    assert causes[("single/0", "single/1")] == "loss and retransmit"
    assert causes[("single/2", "single/3")] == "queueing"
    assert {c for (s, _), c in causes.items() if s == "single/3"} == {"slow handler"}
    assert {(s, d) for s, d in causes if s != "single/3"} == {
        ("single/0", "single/1"),
        ("single/2", "single/3"),
    }
    lossy = [h for h in a.outliers if (h.src, h.dst) == ("single/0", "single/1")]
    assert statistics.median(h.excess_ms for h in lossy) == pytest.approx(204, abs=TOLERANCE_MS)
    assert "retransmit" in lossy[0].evidence
    slow = {(ln.src, ln.dst) for ln in a.slow_links}
    assert ("single/0", "single/1") in slow and ("single/2", "single/3") in slow
    assert a.outliers == sorted(a.outliers, key=lambda h: -h.excess_ms)


def test_only_the_worst_outliers_are_objects_and_the_groups_count_every_one(
    run_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run on a starved machine has hundreds of thousands of late hops: the analysis
    keeps the worst as `Hop`s and sums every one up by link and cause, the same as
    grouping them all would (`hops` still diagnoses each)."""
    from harness.observe import _trace

    run_dir = run_factory(
        instances=5, messages=10, lossy=(0, 1), slow_handler=3, queued=(2, 3), change_at=None
    )
    monkeypatch.setattr(_trace, "OUTLIERS_KEPT", 5)
    a = analyse_traces(run_dir)
    every = sorted((h for h in a.hops if h.out_of_line), key=lambda h: -h.excess_ms)
    assert len(every) > 5 and a.out_of_line == len(every)
    assert a.outliers == every[:5]
    assert all(h.cause and h.evidence for h in every)
    by_link: dict[tuple[str, str, str | None], list[float]] = {}
    worst: dict[tuple[str, str, str | None], str] = {}
    for h in every:
        by_link.setdefault((h.src, h.dst, h.cause), []).append(h.excess_ms)
        worst.setdefault((h.src, h.dst, h.cause), h.evidence)
    assert len(by_link) >= 3
    assert {(g.src, g.dst, g.cause): (g.hops, g.max_excess_ms, g.evidence)
            for g in a.outlier_groups} == {
        k: (len(v), max(v), worst[k]) for k, v in by_link.items()}
    assert [g.hops for g in a.outlier_groups] == sorted(
        (g.hops for g in a.outlier_groups), reverse=True)


def test_loss_without_telemetry_is_recognised_by_the_rto(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(lossy=(0, 1), change_at=None)
    (run_dir / "telemetry.jsonl").unlink()
    a = analyse_traces(run_dir)
    assert {h.cause for h in a.outliers} == {"loss and retransmit"}
    assert "near a TCP RTO" in a.outliers[0].evidence


def test_a_busy_cpu_explains_slow_hops_nothing_else_explains(
    run_factory: Callable[..., Path],
) -> None:
    run_dir = run_factory(stalled=(1, 2), cpu_busy=True, change_at=None)
    causes = {h.cause for h in analyse_traces(run_dir).outliers if (h.src, h.dst) == (
        "single/1", "single/2")}  # fmt: skip
    assert causes == {"busy CPU"}


def test_a_link_queue_that_explains_little_of_a_hops_delay_is_not_its_cause(
    run_factory: Callable[..., Path],
) -> None:
    """Packets held 40 ms longer on the link do not explain a hop 2 s late: on a busy host
    the CPU does. The 40 ms alone still read as queueing."""
    late = run_factory(queued=(1, 2), stalled=(1, 2), stall_ms=2000.0, cpu_busy=True,
                       change_at=None)
    hops = [h for h in analyse_traces(late).outliers if (h.src, h.dst) == ("single/1", "single/2")]
    assert hops and {h.cause for h in hops} == {"busy CPU"}
    queued = run_factory(queued=(1, 2), cpu_busy=True, change_at=None, run_id="queued")
    hops = [h for h in analyse_traces(queued).outliers
            if (h.src, h.dst) == ("single/1", "single/2")]  # fmt: skip
    assert hops and {h.cause for h in hops} == {"queueing"}


def test_a_retransmit_does_not_explain_a_hop_seconds_late(
    run_factory: Callable[..., Path],
) -> None:
    """A few timeouts and retransmits explain a second or so, not 10 s: on a busy host
    the CPU does. The timeout alone still reads as loss."""
    late = run_factory(lossy=(1, 2), stalled=(1, 2), stall_ms=10_000.0, cpu_busy=True,
                       messages=2, change_at=None)
    hops = [h for h in analyse_traces(late).outliers if (h.src, h.dst) == ("single/1", "single/2")]
    assert hops and {h.cause for h in hops} == {"busy CPU"}
    lossy = run_factory(lossy=(1, 2), cpu_busy=True, messages=2, change_at=None,
                        run_id="lossy")
    hops = [h for h in analyse_traces(lossy).outliers if (h.src, h.dst) == ("single/1", "single/2")]
    assert hops and {h.cause for h in hops} == {"loss and retransmit"}


def test_a_lossy_links_loss_does_not_explain_a_hop_seconds_late(
    run_factory: Callable[..., Path],
) -> None:
    """Every link loses 1 %, nothing was sampled dropping: a hop 300 ms late may have paid a
    timeout; one 20 s late on a busy host did not pay a hundred of them in a row."""
    near = run_factory(loss_pct=1.0, stalled=(1, 2), stall_ms=300.0, messages=2,
                       change_at=None)  # fmt: skip
    hops = [h for h in analyse_traces(near).outliers if (h.src, h.dst) == ("single/1", "single/2")]
    assert hops and {h.cause for h in hops} == {"loss and retransmit"}
    assert "link loss 1% and an excess near a TCP RTO" in hops[0].evidence
    late = run_factory(loss_pct=1.0, stalled=(1, 2), stall_ms=20_000.0, cpu_busy=True,
                       messages=2, change_at=None, run_id="late")  # fmt: skip
    hops = [h for h in analyse_traces(late).outliers if (h.src, h.dst) == ("single/1", "single/2")]
    assert hops and {h.cause for h in hops} == {"busy CPU"}


def test_an_rto_sized_delay_is_not_called_loss_when_the_link_showed_none(
    run_factory: Callable[..., Path],
) -> None:
    """Telemetry sampled the link and saw no drop or retransmit, and the CPU was idle."""
    run_dir = run_factory(stalled=(1, 2), stall_ms=200.0, change_at=None)
    stalled = [h for h in analyse_traces(run_dir).outliers if (h.src, h.dst) == (
        "single/1", "single/2")]  # fmt: skip
    assert stalled and {h.cause for h in stalled} == {"unexplained"}
    assert "no drop or retransmit was sampled" in stalled[0].evidence


def test_shape_timeline_reads_requests() -> None:
    run = {
        "instances": [{"id": f"g/{i}", "ip": f"198.18.0.{i + 2}"} for i in range(3)],
        "network": {"default_shape": {"latency_ms": 5}},
    }
    changes = [
        {
            "mono": 10,
            "asked_by": "g/0",
            "request": {
                "default": {"latency_ms": 50},
                "rules": [
                    {"peers": ["198.18.0.3"], "shape": {"latency_ms": 80}},
                    {"peers": ["198.18.0.4"], "drop": True},
                ],
            },
        },
        {"mono": 20, "asked_by": "g/1", "request": {"enabled": False}},
        {"mono": 30, "asked_by": "supervisor", "request": {"default": {"latency_ms": 1}}},
        {
            "mono": 40,
            "asked_by": "supervisor",
            "applied": {"links": [{"src": "g/2", "dst": "198.18.0.2", "shape": {"latency_ms": 9}}]},
        },
        {"mono": 50, "asked_by": "g/2", "request": {"nonsense": 1}},
    ]
    tl = ShapeTimeline(RunRecord.from_json(run), changes)
    assert tl.at("g/0", "g/1", 5) == {"latency_ms": 5}
    assert tl.at("g/0", "g/1", 10) == {"latency_ms": 80}
    assert tl.at("198.18.0.2", "g/2", 15) == {"drop": True}
    assert tl.at("g/1", "g/0", 15) == {"latency_ms": 5}
    assert tl.at("g/1", "g/0", 25) == {"drop": True}
    assert tl.at("g/0", "g/1", 35) == {"latency_ms": 1}
    assert tl.at("g/2", "g/0", 45) == {"latency_ms": 9}
    assert len(tl.changes) == 4  # the malformed request is ignored
    assert tl.matrix()[("g/2", "g/0")] == {"latency_ms": 9}


def test_a_receipt_from_a_node_that_never_had_the_message_or_not_yet_or_again_is_no_hop(
    run_factory: Callable[..., Path],
) -> None:
    run_dir = run_factory(instances=4, messages=2, change_at=None)
    before = {(h.msg_id, h.src, h.dst) for h in analyse_traces(run_dir).hops}
    trace = run_dir / "single" / "3" / "trace.jsonl"
    recs = [json.loads(line) for line in trace.read_text().splitlines()]
    got = next(r for r in recs if r["kind"] == "receive" and r["msg_id"] == "m000")
    published = next(json.loads(line) for line in
                     (run_dir / "single" / "0" / "trace.jsonl").read_text().splitlines()
                     if '"publish"' in line)
    extra = [
        {**got, "from": "ghost"},  # a sender with no trace: it never had m000
        {**got, "from": published["from"], "mono": published["mono"] - 0.5,
         "ts": published["ts"] - 0.5},  # from m000's origin, before it published it
        {**got, "mono": got["mono"] + 0.5, "ts": got["ts"] + 0.5},  # again: not a hop again
    ]
    trace.write_text(trace.read_text() + "".join(json.dumps(r) + "\n" for r in extra))
    a = analyse_traces(run_dir)
    assert ("m000", "single/0", "single/3") not in before
    assert sorted((h.msg_id, h.src, h.dst) for h in a.hops) == sorted(before)
    assert got["mono"] in {h.recv_mono for h in a.hops if h.msg_id == "m000"}  # the first kept
    assert "ghost" not in {ln.src for ln in a.links}


def test_each_links_statistics_are_those_of_its_hops(run_factory: Callable[..., Path]) -> None:
    # the hops are put per link in one pass (HopColumns.by_link): each link's figures must
    # be those of exactly its hops, in the order of the links' names
    run_dir = run_factory(instances=6, messages=5, queued=(1, 2), slow_handler=3)
    a = analyse_traces(run_dir)
    hops: dict[tuple[str, str], list] = {}  # type: ignore[type-arg]
    for h in a.hops:
        hops.setdefault((h.src, h.dst), []).append(h)
    assert len(hops) > 10 and [(ln.src, ln.dst) for ln in a.links] == sorted(hops)
    assert any(ln.out_of_line for ln in a.links)
    for ln in a.links:
        hs = hops[(ln.src, ln.dst)]
        assert ln.hops == len(hs)
        assert ln.median_ms == statistics.median(h.hop_ms for h in hs)
        assert ln.expected_ms == statistics.median(h.expected_ms for h in hs)
        assert ln.median_excess_ms == statistics.median(h.excess_ms for h in hs)
        assert ln.out_of_line == sum(h.out_of_line for h in hs)
        assert sorted(a.link_hop_ms[(ln.src, ln.dst)]) == sorted(h.hop_ms for h in hs)
    # the link's hop delays are in the order the hops were gathered (by receiver, then time)
    by_recv = sorted(hops[("single/1", "single/2")], key=lambda h: h.recv_mono)
    assert list(a.link_hop_ms[("single/1", "single/2")]) == [h.hop_ms for h in by_recv]


def test_hops_are_grouped_by_link_without_a_list_for_every_pair_of_nodes() -> None:
    """A run with many nodes and few links used: `by_link` gives each used link its hops
    in order, sorted by (src, dst), in memory that follows the hops, not nodes squared
    (2,000 nodes: 4 million empty lists, over 200 MB, the way it was)."""
    import tracemalloc
    from types import SimpleNamespace

    from harness.observe._tracehops import HopColumns

    cols = SimpleNamespace(names=[f"n{i}" for i in range(2000)],
                           src=[5, 1999, 5, 0, 1999], dst=[7, 0, 7, 1999, 0])
    tracemalloc.start()
    try:
        links = HopColumns.by_link(cols)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(s, d, rows.tolist()) for s, d, rows in links] == [
        (0, 1999, [3]), (5, 7, [0, 2]), (1999, 0, [1, 4])]
    assert peak < 1_000_000, f"{peak} bytes"


def test_the_diagnosis_is_the_same_whether_windows_are_tabulated_or_sorted(
    run_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Telemetry` finds each hop's window of samples by a table when the series is short
    (every series, in practice) and by np.unique otherwise: the same hops, causes and
    evidence either way."""
    from harness.observe import _tracediagnose

    run_dir = run_factory(
        instances=5, messages=10, lossy=(0, 1), slow_handler=3, queued=(2, 3), change_at=None
    )
    tabulated = analyse_traces(run_dir)
    monkeypatch.setattr(_tracediagnose, "_DENSE", 0)
    sorted_ = analyse_traces(run_dir)
    assert {h.cause for h in tabulated.outliers} >= {"loss and retransmit", "queueing"}
    assert tabulated.outliers == sorted_.outliers
    assert tabulated.outlier_groups == sorted_.outlier_groups


def test_the_diagnosis_is_the_same_in_chunks_of_any_size(
    run_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Late hops are diagnosed `CHUNK` at a time, by link: the causes, evidence and groups
    do not depend on where the chunks fall (here down to a hop per chunk)."""
    from harness.observe import _tracediagnose

    run_dir = run_factory(
        instances=5, messages=10, lossy=(0, 1), slow_handler=3, queued=(2, 3), change_at=None
    )
    whole = analyse_traces(run_dir)
    causes = {h.cause for h in whole.outliers}
    assert causes >= {"loss and retransmit", "queueing", "slow handler"}, causes
    for chunk in (1, 3, 7):
        monkeypatch.setattr(_tracediagnose, "CHUNK", chunk)
        chunked = analyse_traces(run_dir)
        assert chunked.outliers == whole.outliers, chunk
        assert chunked.outlier_groups == whole.outlier_groups, chunk
        assert chunked.hops == whole.hops, chunk


def test_telemetry_read_with_fields_keeps_only_those(tmp_path: Path) -> None:
    from harness.observe import read_telemetry

    lines = [{"ts": 1.0, "mono": 2.0, "kind": "tcp", "rtt_ms": 3.0, "cwnd": 10},
             {"ts": 1.5, "kind": "link"},  # no mono: not a sample
             {"ts": 2.0, "mono": 3.0, "kind": "link", "drops": 1}]
    (tmp_path / "telemetry.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert read_telemetry(tmp_path) == [lines[0], lines[2]]
    assert read_telemetry(tmp_path, {"mono", "kind", "rtt_ms"}) == [
        {"mono": 2.0, "kind": "tcp", "rtt_ms": 3.0}, {"mono": 3.0, "kind": "link"}]


def test_a_trace_that_cannot_be_decoded_is_a_warning_and_its_node_counts_as_not_reached(
    run_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Random bytes in a node's trace.jsonl.gz left it out of the analysis without a word,
    and out of the coverage's count of nodes: every topic still read "reached 100%"."""
    run_dir = run_factory(instances=4, messages=2, change_at=None)
    assert all(t.coverage == 1.0 for t in analyse_traces(run_dir).topics)
    (run_dir / "single" / "3" / TRACE_FILE).unlink()
    (run_dir / "single" / "3" / TRACE_GZ_FILE).write_bytes(random.Random(3).randbytes(5000))
    a = analyse_traces(run_dir)
    assert a.damaged == {"single/3": "could not be decoded past byte 0 of 5,000 (what came "
                                     "before is read)"}
    assert {t.topic: t.coverage for t in a.topics} == {"atxs": 2 / 3, "blocks": 2 / 3}
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert ("warning: the message trace of single/3 could not be decoded past byte 0 of 5,000 "
            "(what came before is read): its receipts that were not read are unknown, and "
            "count as not reached in the propagation figures.") in out
    assert "reached 67%" in out and "reached 100%" not in out
