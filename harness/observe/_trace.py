"""Message tracing: propagation and per-hop delays from the nodes' trace.jsonl, compared
with the configured links, and the likely cause of each delay that is out of line."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import statistics
from array import array
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.observe._rundir import InstanceDir, instance_dirs
from harness.observe._runrecord import RunRecord, read_run
from harness.observe._shapes import ShapeTimeline
from harness.observe._stored import read_telemetry
from harness.observe._tracefile import TRACE_FILE, first_record, no_gc
from harness.observe._tracegather import Gathered
from harness.observe._tracehops import Hop, HopColumns

__all__ = ["TRACE_FILE", "Hop", "LinkDelay", "MessageDelay", "TopicStats", "TraceAnalysis",
           "analyse_loaded", "analyse_traces"]
MIN_RTO_MS = 200.0  # Linux's minimum TCP retransmission timeout
BUSY_CPU_SHARE = 0.25  # of the time some runnable task waited for a CPU: a busy host


@dataclasses.dataclass(frozen=True, slots=True)
class MessageDelay:
    """One published message: when each node first had it, in ms after publication."""

    msg_id: str
    topic: str
    origin: str
    published_mono: float
    delays_ms: dict[str, float]


@dataclasses.dataclass(frozen=True, slots=True)
class TopicStats:
    """Propagation delay (publish -> each node's first receipt) over a topic's messages."""

    topic: str
    messages: int
    samples_ms: list[float]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    coverage: float  # mean fraction of the other nodes each message reached


@dataclasses.dataclass(frozen=True, slots=True)
class LinkDelay:
    """The hops of one direction src -> dst, summarised."""

    src: str
    dst: str
    hops: int
    median_ms: float
    expected_ms: float
    median_excess_ms: float
    out_of_line: int


@dataclasses.dataclass(frozen=True)
class TraceAnalysis:
    """Everything derived from a run's traces. The hops are kept as columns (a 100-node
    run has close to a million): `hops` makes them objects on first use; the report reads
    `links`, `outliers` and `link_hop_ms` instead."""

    messages: list[MessageDelay]
    topics: list[TopicStats]
    links: list[LinkDelay]
    nodes: list[str]
    outliers: list[Hop]  # the out-of-line hops, worst first
    link_hop_ms: dict[tuple[str, str], array[float]]  # every hop's delay per link
    _hop_columns: HopColumns = dataclasses.field(repr=False, compare=False)

    @functools.cached_property
    def hops(self) -> list[Hop]:
        """Every hop, by the time it was sent (out-of-line ones with their cause)."""
        return self._hop_columns.hops(self.outliers)

    @property
    def slow_links(self) -> list[LinkDelay]:
        """Links whose typical (median) hop is out of line."""
        return [ln for ln in self.links if ln.out_of_line * 2 > ln.hops]


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


class _Telemetry:
    """Telemetry samples indexed for "did X change between t0 and t1" questions."""

    def __init__(self, records: list[dict[str, Any]], tl: ShapeTimeline) -> None:
        self.link: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.tcp: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.cpu: list[dict[str, Any]] = []
        for r in records:
            if r.get("kind") == "cpu" and isinstance(r.get("wait_us_total"), int | float):
                self.cpu.append(r)
            elif r.get("kind") == "link":
                self.link[(tl.name(r.get("src")), tl.name(r.get("dst")))].append(r)
            elif r.get("kind") == "tcp" and isinstance(r.get("peer"), str):
                peer_ip = r["peer"].rsplit(":", 1)[0].strip("[]")
                self.tcp[(str(r.get("instance")), tl.name(peer_ip))].append(r)
        self._monos: dict[int, list[float]] = {}  # by id() of a series: its samples' mono
        for series in (*self.link.values(), *self.tcp.values(), self.cpu):
            series.sort(key=lambda r: float(r["mono"]))
            self._monos[id(series)] = [float(r["mono"]) for r in series]
        self._memo: dict[tuple[Any, ...], Any] = {}

    def observed(self, key: tuple[str, str]) -> bool:
        """Whether the link or TCP connection src -> dst was sampled at all."""
        return bool(self.link.get(key) or self.tcp.get(key))

    def _around(self, what: tuple[str, ...], kind: str, key: tuple[str, str], t0: float,
                t1: float, compute: Callable[[list[dict[str, Any]]], Any]) -> Any:
        """`compute` of the samples of a series around [t0, t1] (from the last sample before
        t0 to the first after t1), once per series and window: the out-of-line hops of a
        link mostly fall between the same few samples."""
        if kind == "cpu":
            series = self.cpu
        else:
            series = (self.link if kind == "link" else self.tcp).get(key, [])
        monos = self._monos.get(id(series)) or [float(r["mono"]) for r in series]
        lo = max(0, bisect.bisect_right(monos, t0) - 1)
        hi = bisect.bisect_left(monos, t1) + 1
        memo = (*what, kind, key, lo, hi)
        if memo not in self._memo:
            self._memo[memo] = compute(series[lo:hi])
        return self._memo[memo]

    def cpu_wait(self, t0: float, t1: float) -> float | None:
        """The share of the time around [t0, t1] in which some runnable task of the host
        waited for a CPU (Linux PSI, /proc/pressure/cpu); None without samples."""
        return self._around(("cpu_wait",), "cpu", ("", ""), t0, t1, _cpu_wait)  # type: ignore[no-any-return]

    def increase(self, kind: str, key: tuple[str, str], field: str, t0: float, t1: float) -> float:
        """How much a counter rose around [t0, t1]."""
        return self._around(("increase", field), kind, key, t0, t1,  # type: ignore[no-any-return]
                            functools.partial(_increase, field))

    def peak(self, kind: str, key: tuple[str, str], field: str, t0: float, t1: float) -> float:
        """The highest value of a gauge around [t0, t1]."""
        return self._around(("peak", field), kind, key, t0, t1,  # type: ignore[no-any-return]
                            functools.partial(_peak, field))

    def hold_ms(self, key: tuple[str, str], t0: float, t1: float) -> float | None:
        """The highest mean time packets of a link were held between samples around
        [t0, t1]. `queue_delay_ms` is a mean since the link was first shaped (netem's
        userspace engine), so each interval's mean comes from the packet counts."""
        return self._around(("hold_ms",), "link", key, t0, t1, _hold_ms)  # type: ignore[no-any-return]


def _numbers(window: list[dict[str, Any]], field: str) -> list[float]:
    return [float(r[field]) for r in window if isinstance(r.get(field), int | float)]


def _increase(field: str, window: list[dict[str, Any]]) -> float:
    vals = _numbers(window, field)
    return max(vals) - min(vals) if len(vals) >= 2 else 0.0


def _peak(field: str, window: list[dict[str, Any]]) -> float:
    return max(_numbers(window, field), default=0.0)


def _cpu_wait(window: list[dict[str, Any]]) -> float | None:
    if len(window) < 2:
        return None
    a, b = window[0], window[-1]
    span_us = (float(b["mono"]) - float(a["mono"])) * 1e6
    waited = float(b["wait_us_total"]) - float(a["wait_us_total"])
    return max(0.0, min(1.0, waited / span_us)) if span_us > 0 else None


def _hold_ms(samples: list[dict[str, Any]]) -> float | None:
    window = [r for r in samples if isinstance(r.get("queue_delay_ms"), int | float)]
    best: float | None = None
    for a, b in itertools.pairwise(window):
        pa, pb = a.get("packets"), b.get("packets")
        if isinstance(pa, int) and isinstance(pb, int) and pb > pa:
            mean = (b["queue_delay_ms"] * pb - a["queue_delay_ms"] * pa) / (pb - pa)
            best = mean if best is None else max(best, mean)
    if best is None and window:
        best = max(float(r["queue_delay_ms"]) for r in window)
    return best


def _diagnose(
    src: str, dst: str, shape: Mapping[str, Any], t0: float, t1: float, excess: float,
    tol: float, handler_ms: float, tel: _Telemetry,
) -> tuple[str, str]:
    """The likely cause of the excess delay of a hop src -> dst sent at t0 and received at
    t1 over a link of `shape`, and the evidence."""
    key = (src, dst)
    if handler_ms > tol and handler_ms >= 0.5 * excess:
        return (
            "slow handler",
            f"{src} took {handler_ms:.1f} ms to validate before forwarding",
        )
    drops = tel.increase("link", key, "drops", t0, t1)
    retrans = tel.increase("tcp", key, "retrans_total", t0, t1)
    if drops > 0 or retrans > 0:
        parts = [
            f"{drops:.0f} link drops" if drops else "",
            f"{retrans:.0f} TCP retransmits" if retrans else "",
        ]
        return "loss and retransmit", " and ".join(
            p for p in parts if p
        ) + f" on {src}->{dst}"
    loss = float(shape.get("loss_pct") or 0)
    if loss > 0 and excess >= 0.75 * MIN_RTO_MS:
        return (
            "loss and retransmit",
            f"link loss {loss:g}% and an excess near a TCP RTO ({excess:.0f} ms)",
        )
    hold = tel.hold_ms(key, t0, t1)
    latency = float(shape.get("latency_ms") or 0)
    qwait = 0.0 if hold is None else hold - latency
    rtt = tel.peak("tcp", key, "rtt_ms", t0, t1)
    base_rtt = 2 * float(shape.get("latency_ms") or 0)
    if hold is not None and qwait > tol / 2:
        return "queueing", f"packets held {hold:.1f} ms on the link, {latency:g} ms configured"
    if rtt > base_rtt + tol:
        return "queueing", f"TCP RTT {rtt:.1f} ms against {base_rtt:.1f} ms configured"
    if shape.get("bandwidth_bps"):
        return "queueing", f"bandwidth cap {shape['bandwidth_bps']} bit/s (likely a backlog)"
    waited = tel.cpu_wait(t0, t1)
    if waited is not None and waited >= BUSY_CPU_SHARE:
        return (
            "busy CPU",
            f"runnable tasks waited for a CPU {waited:.0%} of the time around this hop",
        )
    if excess >= 0.75 * MIN_RTO_MS and not tel.observed(key):
        return (
            "loss and retransmit",
            f"excess {excess:.0f} ms is near a TCP RTO (this link was not sampled)",
        )
    if excess >= 0.75 * MIN_RTO_MS:
        return (
            "unexplained",
            f"excess {excess:.0f} ms is near a TCP RTO, yet no drop or retransmit was sampled",
        )
    return "unexplained", "no telemetry points to a cause"


def _learn_node_ids(tl: ShapeTimeline, dirs: list[InstanceDir]) -> None:
    """Nodes may name themselves and their peers by a node id of their own rather than by
    instance id or address: an instance's own id is the `to` of what it received and the
    `from` of what it published. Teach the timeline those names."""
    for inst in dirs:
        r = first_record(inst.path)  # one line tells
        if r is None:
            continue
        own = r.get("to") if r.get("kind") in ("receive", "deliver") else r.get("from")
        if own is not None and str(own) not in tl.names:
            tl.names[str(own)] = inst.id


def analyse_traces(
    run_dir: Path, *, abs_tol_ms: float = 5.0, rel_tol: float = 0.25
) -> TraceAnalysis:
    """Read every instance's trace.jsonl and compute per-topic propagation delays and
    per-hop delays; a hop is out of line when its delay exceeds the configured latency
    (+ serialisation) by more than `abs_tol_ms + rel_tol * latency + 2 * jitter`."""
    run = read_run(run_dir) or RunRecord(run_dir.name)
    return analyse_loaded(
        instance_dirs(run_dir, run),
        ShapeTimeline.from_run_dir(run_dir, run),
        read_telemetry(run_dir),
        abs_tol_ms=abs_tol_ms,
        rel_tol=rel_tol,
    )


def analyse_loaded(
    dirs: list[InstanceDir],
    shapes: ShapeTimeline,
    telemetry: list[dict[str, Any]],
    *,
    abs_tol_ms: float = 5.0,
    rel_tol: float = 0.25,
) -> TraceAnalysis:
    """`analyse_traces` of a run whose instances, shapes and telemetry are already read
    (`shapes` is left as it is: the node ids learnt from the traces go into a copy)."""
    # A 100-node run makes millions of objects, none in a reference cycle: the cyclic GC
    # would walk them over and over (a quarter of the time).
    with no_gc():
        return _analyse(dirs, shapes, telemetry, abs_tol_ms, rel_tol)


def _analyse(
    dirs: list[InstanceDir],
    shapes: ShapeTimeline,
    telemetry: list[dict[str, Any]],
    abs_tol_ms: float,
    rel_tol: float,
) -> TraceAnalysis:
    tl = shapes.copy()
    tel = _Telemetry(telemetry, tl)
    _learn_node_ids(tl, dirs)
    g = Gathered(tl)
    for inst in dirs:
        g.add_instance(inst)
    g.finish()
    names, nodes = g.names, g.nodes
    messages: list[MessageDelay] = []
    if nodes:
        node_ix = [g.ix(name) for name in nodes]
        had = g.had_at[:, node_ix]  # for nodes but the origin: the first receipt, else delivery
        for m, (mono, origin, _size) in sorted(g.publish.items(), key=lambda kv: kv[1][0]):
            delays = (had[m] - mono) * 1000
            keep = ~np.isnan(delays)
            keep[[j for j, i in enumerate(node_ix) if i == origin]] = False
            messages.append(MessageDelay(
                g.msgs[m], g.msg_topic[m], names[origin], mono,
                dict(zip(itertools.compress(nodes, keep.tolist()), delays[keep].tolist(),
                         strict=True))))

    cols = HopColumns(g, tl, abs_tol_ms, rel_tol)
    hop_col = cols.hop_ms()
    excess_col = hop_col - cols.expected
    rows = cols.out_of_line(excess_col)
    handler_ms = cols.handler_ms(rows)
    causes: list[str | None] = []
    evidence: list[str] = []
    for src, dst, shape, t0, t1, excess, tol, handler in zip(
        [names[s] for s in cols.src[rows].tolist()], [names[d] for d in cols.dst[rows].tolist()],
        [cols.shape_list[k] for k in cols.shape[rows].tolist()], cols.sent[rows].tolist(),
        cols.recv[rows].tolist(), excess_col[rows].tolist(), cols.tol[rows].tolist(),
        handler_ms.tolist(), strict=True,
    ):
        cause, why = _diagnose(src, dst, shape, t0, t1, excess, tol, handler, tel)
        causes.append(cause)
        evidence.append(why)
    outliers = cols.hops_at(rows, causes, evidence, handler_ms)
    outliers.sort(key=lambda h: -h.excess_ms)
    link_hop_ms: dict[tuple[str, str], array[float]] = {}
    links = []
    for a, b, link_rows in sorted(cols.by_link(), key=lambda x: (names[x[0]], names[x[1]])):
        hop_ms = hop_col[link_rows]
        link_hop_ms[(names[a], names[b])] = array("d", hop_ms.tobytes())
        excess = excess_col[link_rows]
        out_of_line = int(np.count_nonzero(excess > cols.tol[link_rows]))
        links.append(LinkDelay(names[a], names[b], len(link_rows),
                               float(np.median(hop_ms)),
                               float(np.median(cols.expected[link_rows])),
                               float(np.median(excess)), out_of_line))
    return TraceAnalysis(messages, _topic_stats(messages, len(nodes)), links, nodes, outliers,
                         link_hop_ms, cols)


def _topic_stats(messages: list[MessageDelay], n_nodes: int) -> list[TopicStats]:
    by_topic: dict[str, list[MessageDelay]] = defaultdict(list)
    for m in messages:
        by_topic[m.topic].append(m)
    out = []
    for topic, msgs in sorted(by_topic.items()):
        samples = sorted(d for m in msgs for d in m.delays_ms.values())
        others = max(1, n_nodes - 1)
        coverage = statistics.fmean(len(m.delays_ms) / others for m in msgs)
        out.append(
            TopicStats(
                topic,
                len(msgs),
                samples,
                _quantile(samples, 0.5),
                _quantile(samples, 0.9),
                _quantile(samples, 0.99),
                samples[-1] if samples else float("nan"),
                coverage,
            )
        )
    return out
