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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.observe._rundir import InstanceDir, instance_dirs
from harness.observe._runrecord import RunRecord, read_run
from harness.observe._shapes import Shape, ShapeTimeline, expected_delay_ms
from harness.observe._telemetry import read_telemetry
from harness.observe._tracefile import TRACE_FILE, first_record, read_trace

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
class Hop:
    """One transfer src -> dst of a message, against what the configured link explains."""

    msg_id: str
    topic: str
    src: str
    dst: str
    sent_mono: float  # when src had the message (published or first received)
    recv_mono: float
    size: int | None
    hop_ms: float
    expected_ms: float  # configured latency + serialisation at the configured bandwidth
    handler_ms: float  # src's time from receipt to delivery (validation) before forwarding
    tolerance_ms: float
    cause: str | None = None  # for out-of-line hops: "queueing", "loss and retransmit", ...
    evidence: str = ""

    @property
    def excess_ms(self) -> float:
        """Delay the configured link does not explain."""
        return self.hop_ms - self.expected_ms

    @property
    def out_of_line(self) -> bool:
        """Whether the excess is beyond the tolerance."""
        return self.excess_ms > self.tolerance_ms


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
    _hop_columns: _HopColumns = dataclasses.field(repr=False, compare=False)

    @functools.cached_property
    def hops(self) -> list[Hop]:
        """Every hop, by the time it was sent (out-of-line ones with their cause)."""
        return self._hop_columns.hops(self.outliers)

    @property
    def slow_links(self) -> list[LinkDelay]:
        """Links whose typical (median) hop is out of line."""
        return [ln for ln in self.links if ln.out_of_line * 2 > ln.hops]


class _HopColumns:
    """Every hop as columns of numbers (names and messages by index)."""

    def __init__(self, msgs: list[str], topics: list[str], names: list[str]) -> None:
        self.msgs, self.topics, self.names = msgs, topics, names
        self.msg = array("l")
        self.src = array("l")
        self.dst = array("l")
        self.sent = array("d")
        self.recv = array("d")
        self.size = array("q")  # -1: unknown
        self.expected = array("d")
        self.handler = array("d")
        self.tol = array("d")

    def add(self, msg: int, src: int, dst: int, sent: float, recv: float, size: int | None,
            expected: float, handler: float, tol: float) -> int:
        self.msg.append(msg)
        self.src.append(src)
        self.dst.append(dst)
        self.sent.append(sent)
        self.recv.append(recv)
        self.size.append(-1 if size is None else size)
        self.expected.append(expected)
        self.handler.append(handler)
        self.tol.append(tol)
        return len(self.msg) - 1

    def hop(self, i: int) -> Hop:
        size = self.size[i]
        return Hop(self.msgs[self.msg[i]], self.topics[self.msg[i]], self.names[self.src[i]],
                   self.names[self.dst[i]], self.sent[i], self.recv[i],
                   None if size < 0 else size, (self.recv[i] - self.sent[i]) * 1000,
                   self.expected[i], self.handler[i], self.tol[i])

    def hops(self, outliers: list[Hop]) -> list[Hop]:
        diagnosed = {(h.msg_id, h.src, h.dst): h for h in outliers}
        out = []
        for i in range(len(self.msg)):
            h = self.hop(i)
            out.append(diagnosed.get((h.msg_id, h.src, h.dst), h))
        out.sort(key=lambda h: (h.sent_mono, h.src, h.dst))
        return out


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
        for series in (*self.link.values(), *self.tcp.values(), self.cpu):
            series.sort(key=lambda r: float(r["mono"]))

    def observed(self, key: tuple[str, str]) -> bool:
        """Whether the link or TCP connection src -> dst was sampled at all."""
        return bool(self.link.get(key) or self.tcp.get(key))

    def cpu_wait(self, t0: float, t1: float) -> float | None:
        """The share of the time around [t0, t1] in which some runnable task of the host
        waited for a CPU (Linux PSI, /proc/pressure/cpu); None without samples."""
        window = self._window(self.cpu, t0, t1)
        if len(window) < 2:
            return None
        a, b = window[0], window[-1]
        span_us = (float(b["mono"]) - float(a["mono"])) * 1e6
        waited = float(b["wait_us_total"]) - float(a["wait_us_total"])
        return max(0.0, min(1.0, waited / span_us)) if span_us > 0 else None

    @staticmethod
    def _window(series: list[dict[str, Any]], t0: float, t1: float) -> list[dict[str, Any]]:
        monos = [float(r["mono"]) for r in series]
        lo = max(0, bisect.bisect_right(monos, t0) - 1)  # the last sample before t0
        hi = bisect.bisect_left(monos, t1) + 1  # the first sample after t1
        return series[lo:hi]

    def _values(
        self, kind: str, key: tuple[str, str], field: str, t0: float, t1: float
    ) -> list[float]:
        series = (self.link if kind == "link" else self.tcp).get(key, [])
        return [
            float(r[field])
            for r in self._window(series, t0, t1)
            if isinstance(r.get(field), int | float)
        ]

    def increase(self, kind: str, key: tuple[str, str], field: str, t0: float, t1: float) -> float:
        vals = self._values(kind, key, field, t0, t1)
        return max(vals) - min(vals) if len(vals) >= 2 else 0.0

    def peak(self, kind: str, key: tuple[str, str], field: str, t0: float, t1: float) -> float:
        return max(self._values(kind, key, field, t0, t1), default=0.0)

    def hold_ms(self, key: tuple[str, str], t0: float, t1: float) -> float | None:
        """The highest mean time packets of a link were held between samples around
        [t0, t1]. `queue_delay_ms` is a mean since the link was first shaped (netem's
        userspace engine), so each interval's mean comes from the packet counts."""
        window = [
            r
            for r in self._window(self.link.get(key, []), t0, t1)
            if isinstance(r.get("queue_delay_ms"), int | float)
        ]
        best: float | None = None
        for a, b in itertools.pairwise(window):
            pa, pb = a.get("packets"), b.get("packets")
            if isinstance(pa, int) and isinstance(pb, int) and pb > pa:
                mean = (b["queue_delay_ms"] * pb - a["queue_delay_ms"] * pa) / (pb - pa)
                best = mean if best is None else max(best, mean)
        if best is None and window:
            best = max(float(r["queue_delay_ms"]) for r in window)
        return best


def _diagnose(hop: Hop, shape: Mapping[str, Any], tel: _Telemetry) -> tuple[str, str]:
    excess, tol = hop.excess_ms, hop.tolerance_ms
    t0, t1, key = hop.sent_mono, hop.recv_mono, (hop.src, hop.dst)
    if hop.handler_ms > tol and hop.handler_ms >= 0.5 * excess:
        return (
            "slow handler",
            f"{hop.src} took {hop.handler_ms:.1f} ms to validate before forwarding",
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
        ) + f" on {hop.src}->{hop.dst}"
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
    tl = shapes.copy()
    tel = _Telemetry(telemetry, tl)
    _learn_node_ids(tl, dirs)
    # Names and messages become indexes, and keys ints: a 100-node run has ~1M records.
    names: list[str] = []
    name_ix: dict[Any, int] = {}  # a record's from/to as written -> index of its name
    by_name: dict[str, int] = {}

    def ix(host: Any) -> int:
        i = name_ix.get(host)
        if i is None:
            name = tl.name(host)
            i = by_name.get(name)
            if i is None:
                i = by_name[name] = len(names)
                names.append(name)
            name_ix[host] = i
        return i

    msgs: list[str] = []
    msg_ix: dict[str, int] = {}
    msg_topic: list[str] = []
    publish: dict[int, tuple[float, int, int | None]] = {}  # msg -> mono, origin, size
    first_recv: dict[int, float] = {}  # msg << 20 | node -> mono
    first_deliver: dict[int, float] = {}
    # receipts: (msg, src, dst, mono, size) as columns, the first of each (msg, src, dst)
    r_msg, r_src, r_dst, r_mono, r_size = (array("l"), array("l"), array("l"), array("d"),
                                           array("q"))
    nodes: list[str] = []
    for inst in dirs:
        records = read_trace(inst.path)
        first = next(records, None)
        if first is None:
            continue
        nodes.append(inst.id)
        own = ix(inst.id)
        seen: dict[int, int] = {}  # this file's (msg, src, dst) -> its receipt's row
        for r in itertools.chain((first,), records):
            msg_id, mono = r.get("msg_id"), r.get("mono")
            if msg_id is None or not isinstance(mono, int | float):
                continue
            if not isinstance(msg_id, str):
                msg_id = str(msg_id)
            kind = r.get("kind")
            m = msg_ix.get(msg_id)
            if m is None:
                m = msg_ix[msg_id] = len(msgs)
                msgs.append(str(msg_id))
                msg_topic.append(str(r.get("topic") or ""))
            size = r.get("size")
            if not isinstance(size, int):
                size = None
            if kind == "publish":
                frm = r.get("from")
                origin = own if frm is None else ix(frm)
                pub = publish.get(m)
                if pub is None or mono < pub[0]:
                    publish[m] = (float(mono), origin, size)
            elif kind == "receive" or kind == "deliver":
                to = r.get("to")
                node = own if to is None else ix(to)
                key = m << 20 | node
                table = first_recv if kind == "receive" else first_deliver
                t = table.get(key)
                if t is None or mono < t:
                    table[key] = float(mono)
                frm = r.get("from")
                if kind == "receive" and frm is not None:
                    src = ix(frm)
                    rkey = (m << 20 | src) << 20 | node
                    row = seen.get(rkey)
                    if row is None:
                        seen[rkey] = len(r_msg)
                        r_msg.append(m)
                        r_src.append(src)
                        r_dst.append(node)
                        r_mono.append(float(mono))
                        r_size.append(-1 if size is None else size)
                    elif mono < r_mono[row]:
                        r_mono[row] = float(mono)
                        r_size[row] = -1 if size is None else size

    def had_at(m: int, node: int) -> float | None:
        pub = publish.get(m)
        if pub is not None and pub[1] == node:
            return pub[0]
        key = m << 20 | node
        t = first_recv.get(key)
        return first_deliver.get(key) if t is None else t

    node_ix = [ix(n) for n in nodes]
    messages: list[MessageDelay] = []
    for m, (mono, origin, _size) in sorted(publish.items(), key=lambda kv: kv[1][0]):
        delays: dict[str, float] = {}
        for node_name, i in zip(nodes, node_ix, strict=True):
            if i == origin:
                continue
            key = m << 20 | i
            t = first_recv.get(key)
            if t is None:
                t = first_deliver.get(key)
            if t is not None:
                delays[node_name] = (t - mono) * 1000
        messages.append(MessageDelay(msgs[m], msg_topic[m], names[origin], mono, delays))

    cols = _HopColumns(msgs, msg_topic, names)
    shape_at: dict[tuple[int, int, int], tuple[Shape, float]] = {}  # (state, src, dst)
    monos = tl.state_monos
    link_rows: dict[tuple[int, int], list[int]] = defaultdict(list)
    out_rows: list[int] = []
    shapes_of_out: list[Shape] = []
    for row in range(len(r_msg)):
        m, src, dst, recv = r_msg[row], r_src[row], r_dst[row], r_mono[row]
        sent = had_at(m, src)
        if sent is None or recv < sent:
            continue
        state = bisect.bisect_right(monos, sent) - 1
        cached = shape_at.get((state, src, dst))
        if cached is None:
            shape = tl.at(names[src], names[dst], sent)
            latency = float(shape.get("latency_ms") or 0)
            tol = abs_tol_ms + rel_tol * latency + 2 * float(shape.get("jitter_ms") or 0)
            cached = shape_at[(state, src, dst)] = (shape, tol)
        shape, tol = cached
        if shape.get("drop"):
            continue
        handler = 0.0
        pub = publish.get(m)
        skey = m << 20 | src
        if not (pub and pub[1] == src) and skey in first_deliver and skey in first_recv:
            delivered = first_deliver[skey]
            handler = max(0.0, (delivered - first_recv[skey]) * 1000) if delivered <= recv else 0.0
        hop_size: int | None = r_size[row]
        if hop_size is None or hop_size < 0:
            hop_size = pub[2] if pub else None
        expected = expected_delay_ms(shape, hop_size)
        i = cols.add(m, src, dst, sent, recv, hop_size, expected, handler, tol)
        link_rows[(src, dst)].append(i)
        if (recv - sent) * 1000 - expected > tol:
            out_rows.append(i)
            shapes_of_out.append(shape)

    outliers = []
    for i, shape in zip(out_rows, shapes_of_out, strict=True):
        hop = cols.hop(i)
        cause, evidence = _diagnose(hop, shape, tel)
        outliers.append(dataclasses.replace(hop, cause=cause, evidence=evidence))
    outliers.sort(key=lambda h: -h.excess_ms)
    link_hop_ms: dict[tuple[str, str], array[float]] = {}
    links = []
    for (src, dst), rows in sorted(link_rows.items(), key=lambda kv: (names[kv[0][0]],
                                                                      names[kv[0][1]])):
        hop_ms = array("d", ((cols.recv[i] - cols.sent[i]) * 1000 for i in rows))
        configured = [cols.expected[i] for i in rows]
        excess = [h - e for h, e in zip(hop_ms, configured, strict=True)]
        out_of_line = sum(1 for i, x in zip(rows, excess, strict=True) if x > cols.tol[i])
        link_hop_ms[(names[src], names[dst])] = hop_ms
        links.append(LinkDelay(names[src], names[dst], len(rows), statistics.median(hop_ms),
                               statistics.median(configured), statistics.median(excess),
                               out_of_line))
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
