"""Message tracing: propagation and per-hop delays from the nodes' trace.jsonl, compared
with the configured links, and the likely cause of each delay that is out of line."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import statistics
from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.observe._rundir import InstanceDir, instance_dirs
from harness.observe._runrecord import RunRecord, read_run
from harness.observe._shapes import ShapeTimeline
from harness.observe._stored import read_telemetry
from harness.observe._tracediagnose import (
    Diagnosis,
    OutlierGroup,
    Telemetry,
    diagnose,
    groups,
)
from harness.observe._tracefile import TRACE_FILE, first_record, no_gc
from harness.observe._tracegather import Floats, Gathered
from harness.observe._tracehops import Hop, HopColumns

__all__ = ["TRACE_FILE", "Hop", "LinkDelay", "MessageDelay", "OutlierGroup", "TopicStats",
           "TraceAnalysis", "analyse_loaded", "analyse_traces"]
OUTLIERS_KEPT = 1000
"""Out-of-line hops kept as objects, the worst ones (`TraceAnalysis.outliers`): a run on a
starved machine has hundreds of thousands; `outlier_groups` sums up every one of them."""


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
    outliers: list[Hop]  # the worst out-of-line hops (OUTLIERS_KEPT at most), worst first
    out_of_line: int  # how many hops were out of line
    outlier_groups: list[OutlierGroup]  # every out-of-line hop, by link and likely cause
    link_hop_ms: dict[tuple[str, str], array[float]]  # every hop's delay per link
    cut: list[str]  # instances whose trace was longer than a reader takes (MAX_TRACE_BYTES)
    damaged: dict[str, str]  # instances whose trace was left out (all or part), and why
    _hop_columns: HopColumns = dataclasses.field(repr=False, compare=False)
    _diagnosis: Diagnosis = dataclasses.field(repr=False, compare=False)
    too_fast: int = 0
    """Hops faster than their configured link allows (beyond the tolerance; links that
    reorder, whose packets may skip the delay, and hops during a network change aside): the
    link was not shaped as recorded, or the traces misplace a message."""
    fastest: str = ""
    """The fastest of those, in words ("single/2 → single/4: 0.6 ms over a 50 ms link")."""

    @functools.cached_property
    def hops(self) -> list[Hop]:
        """Every hop, by the time it was sent (out-of-line ones with their cause)."""
        return self._hop_columns.hops(_diagnosed(self._hop_columns, self._diagnosis, None))

    @property
    def causes(self) -> dict[str, int]:
        """How many out-of-line hops each likely cause accounts for, the most first."""
        counts: Counter[str] = Counter()
        for g in self.outlier_groups:
            counts[g.cause] += g.hops
        return dict(counts.most_common())

    @property
    def slow_links(self) -> list[LinkDelay]:
        """Links whose typical (median) hop is out of line."""
        return [ln for ln in self.links if ln.out_of_line * 2 > ln.hops]


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


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
    tel = Telemetry(telemetry, tl)
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
    too_fast, fastest = _too_fast(cols, hop_col, excess_col)
    links, link_hop_ms = _links(cols, hop_col, excess_col)
    del hop_col  # the diagnosis is the analysis's peak: whole columns are freed before it
    rows = cols.out_of_line(excess_col)
    excess = excess_col[rows]
    del excess_col
    worst_first = np.argsort(-excess, kind="stable")
    rows, excess = rows[worst_first], excess[worst_first]
    del worst_first
    diagnosis = diagnose(rows, excess, cols, tel)
    # Every instance that traced counts, those whose trace is empty or damaged too: left
    # out, a node that lost its trace would raise the coverage of every topic.
    return TraceAnalysis(messages, _topic_stats(messages, len(g.traced)), links, nodes,
                         _diagnosed(cols, diagnosis, OUTLIERS_KEPT), len(rows),
                         groups(diagnosis), link_hop_ms, g.cut, g.damaged, cols, diagnosis,
                         too_fast, fastest)


def _too_fast(cols: HopColumns, hop_col: Floats, excess_col: Floats) -> tuple[int, str]:
    """How many hops beat their link by more than the tolerance, and the fastest in words."""
    reorders = np.array([bool(s.get("reorder_pct")) for s in cols.shape_list], bool)
    fast = np.flatnonzero((excess_col < -cols.tol) & ~reorders[cols.shape] & cols.steady)
    if not len(fast):
        return 0, ""
    i = int(fast[np.argmin(excess_col[fast])])
    src, dst = cols.names[cols.src[i]], cols.names[cols.dst[i]]
    return len(fast), (f"{src} → {dst}: {hop_col[i]:.1f} ms over a {cols.expected[i]:g} ms "
                       "link")


def _diagnosed(cols: HopColumns, d: Diagnosis, most: int | None) -> list[Hop]:
    """The first `most` (all: None) diagnosed hops as objects, with cause and evidence."""
    n = len(d.rows) if most is None else min(most, len(d.rows))
    return cols.hops_at(d.rows[:n], d.causes(n), [d.evidence(i) for i in range(n)],
                        d.handler[:n])


def _links(cols: HopColumns, hop_col: Floats, excess_col: Floats
           ) -> tuple[list[LinkDelay], dict[tuple[str, str], array[float]]]:
    """Each link's hops summarised, and every hop's delay by link."""
    names = cols.names
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
    return links, link_hop_ms


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
