"""The likely cause of each out-of-line hop, from the telemetry sampled around it.

A run on a starved machine has hundreds of thousands of late hops. They are diagnosed over
numpy columns: what telemetry saw is computed once per link and window of samples (most
late hops of a link fall between the same few samples), the causes are one vectorised
choice, and the evidence (a sentence with the hop's own figures) is written only for the
hops someone reads.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from harness.observe._cpuload import wait_share
from harness.observe._shapes import ShapeTimeline
from harness.observe._tracegather import Floats, Index, Ints

if TYPE_CHECKING:
    from harness.observe._tracehops import HopColumns

MIN_RTO_MS = 200.0  # Linux's minimum TCP retransmission timeout
BUSY_CPU_SHARE = 0.25  # of the time some runnable task waited for a CPU: a busy host
EXPLAINS_SHARE = 0.25
"""A link's queueing is a hop's likely cause only when what it held the link's packets
beyond the configured latency is at least this share of the hop's excess: 19 ms more on
the link does not explain a hop 20 s late."""
RTO_SLACK = 4
"""Drops or retransmits are a hop's likely cause only when its excess is within this many
times what as many timeouts in a row would take, each twice the last from `MIN_RTO_MS`
(a connection's timeout grows with its RTT and their spread): one retransmit does not
explain a hop 20 s late."""
RARE = 1e-6
"""A link's configured loss explains a hop near a TCP timeout only up to as many timeouts
in a row (each twice the last, `RTO_SLACK` times over) as losses in a row are likelier
than this: at 1 % loss, three (5.6 s); at 10 %, six (50 s). A hop 20 s late on a 1 % link
is something else."""

_CAUSES = (
    "slow handler",
    "loss and retransmit",  # drops or retransmits sampled
    "loss and retransmit",  # a lossy link and an excess near an RTO
    "queueing",  # packets held on the link
    "queueing",  # TCP RTT
    "queueing",  # a bandwidth cap
    "busy CPU",
    "loss and retransmit",  # near an RTO on a link never sampled
    "unexplained",  # near an RTO, nothing sampled
    "unexplained",
)
"""The cause each branch of the diagnosis names (`diagnose`), in the order tried."""


def _increase(field: str, window: list[dict[str, Any]]) -> float:
    vals = _numbers(window, field)
    return max(vals) - min(vals) if len(vals) >= 2 else 0.0


def _peak(field: str, window: list[dict[str, Any]]) -> float:
    return max(_numbers(window, field), default=0.0)


def _numbers(window: list[dict[str, Any]], field: str) -> list[float]:
    return [float(r[field]) for r in window if isinstance(r.get(field), int | float)]


def _cpu_wait(window: list[dict[str, Any]]) -> float:
    if len(window) < 2:
        return np.nan
    a, b = window[0], window[-1]
    return wait_share(float(a["mono"]), float(a["wait_us_total"]),
                      float(b["mono"]), float(b["wait_us_total"]))


def _hold_ms(samples: list[dict[str, Any]]) -> float:
    """The highest mean time packets of a link were held between samples.
    `queue_delay_ms` is a mean since the link was first shaped (netem's userspace
    engine), so each interval's mean comes from the packet counts."""
    window = [r for r in samples if isinstance(r.get("queue_delay_ms"), int | float)]
    best: float | None = None
    for a, b in itertools.pairwise(window):
        pa, pb = a.get("packets"), b.get("packets")
        if isinstance(pa, int) and isinstance(pb, int) and pb > pa:
            mean = (b["queue_delay_ms"] * pb - a["queue_delay_ms"] * pa) / (pb - pa)
            best = mean if best is None else max(best, mean)
    if best is None and window:
        best = max(float(r["queue_delay_ms"]) for r in window)
    return np.nan if best is None else best


@dataclasses.dataclass(frozen=True)
class Seen:
    """What telemetry saw around each hop, from the last sample before it was sent to the
    first after it arrived, as columns (NaN: nothing to tell)."""

    drops: Floats  # the link's drops rose by this much
    retrans: Floats  # the TCP connection's retransmits
    hold_ms: Floats  # the most the link's packets were held on average between samples
    rtt_ms: Floats  # the TCP connection's highest RTT
    cpu_wait: Floats  # the share of the time some runnable task waited for a CPU
    observed: np.ndarray  # bool: the link or connection was sampled at all


_DENSE = 1 << 20
"""The most windows (samples + 2, squared) `Telemetry._per_window` tabulates."""


class Telemetry:
    """A run's telemetry samples, indexed by link and time."""

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
        self._monos: dict[int, Floats] = {}  # by id() of a series: its samples' mono
        for series in (*self.link.values(), *self.tcp.values(), self.cpu):
            series.sort(key=lambda r: float(r["mono"]))
            self._monos[id(series)] = np.array([float(r["mono"]) for r in series])

    def seen(self, src: Index, dst: Index, names: Sequence[str], t0: Floats, t1: Floats
             ) -> Seen:
        """What was seen around each hop (from names[src[i]] to names[dst[i]], sent at
        `t0[i]`, received at `t1[i]`)."""
        n = len(src)
        drops, retrans, rtt = np.zeros(n), np.zeros(n), np.zeros(n)
        hold, observed = np.full(n, np.nan), np.zeros(n, bool)
        for at in _by_link(src, dst, len(names)):
            key = (names[int(src[at[0]])], names[int(dst[at[0]])])
            link, tcp = self.link.get(key, []), self.tcp.get(key, [])
            if link:
                drops[at], hold[at] = self._per_window(
                    link, t0[at], t1[at], functools.partial(_increase, "drops"), _hold_ms)
            if tcp:
                retrans[at], rtt[at] = self._per_window(
                    tcp, t0[at], t1[at], functools.partial(_increase, "retrans_total"),
                    functools.partial(_peak, "rtt_ms"))
            observed[at] = bool(link or tcp)
        (cpu,) = self._per_window(self.cpu, t0, t1, _cpu_wait)
        return Seen(drops, retrans, hold, rtt, cpu, observed)

    def _per_window(self, series: list[dict[str, Any]], t0: Floats, t1: Floats,
                    *fns: Callable[[list[dict[str, Any]]], float]) -> list[Floats]:
        """For each [t0, t1], each of `fns` of the samples of `series` around it (from the
        last one before t0 to the first after t1), computed once per distinct window."""
        monos = self._monos.get(id(series), np.empty(0))
        span = len(monos) + 2
        lo = np.maximum(0, np.searchsorted(monos, t0, "right") - 1)
        hi = np.searchsorted(monos, t1, "left") + 1
        code = lo * span + hi
        del lo, hi
        if span * span <= _DENSE:
            # Few samples (a series has one every few seconds): a table of every window
            # finds the distinct ones without sorting the hops (np.unique's sort took 44 MB
            # for the CPU's windows of a 100-node run's 500,000 hops).
            present = np.zeros(span * span, bool)
            present[code] = True
            windows = np.flatnonzero(present)
            slot = np.zeros(span * span, np.intp)
            slot[windows] = np.arange(len(windows))
            inverse = slot[code]
        else:
            windows, inverse = np.unique(code, return_inverse=True)
        slices = [series[w // span:w % span] for w in windows.tolist()]
        return [np.array([fn(s) for s in slices], float)[inverse.ravel()] for fn in fns]


def _link_codes(src: Index, dst: Index, n: int) -> Ints:
    """Each hop's link (src, dst) as one number, for `n` names."""
    return np.asarray(src, np.int64) * n + np.asarray(dst, np.int64)


def _by_link(src: Index, dst: Index, n: int) -> list[Ints]:
    """The indexes of the hops of each link (src, dst), a group per link."""
    code = _link_codes(src, dst, n)
    order = np.argsort(code, kind="stable")
    starts = np.flatnonzero(np.r_[True, code[order][1:] != code[order][:-1]])
    return np.split(order, starts[1:]) if len(order) else []


CHUNK = 1 << 16
"""Hops diagnosed at a time: what telemetry saw around each and the tests on it are
columns this long (a starved 100-node run has 700,000 late hops: whole columns of them
were 60 MB of its report's peak)."""


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """The out-of-line hops (`rows` of `hops`, worst first), each hop's branch of the
    diagnosis and the figures its evidence quotes."""

    rows: Ints
    branch: npt.NDArray[np.int8]
    excess: Floats
    handler: Floats
    figure: Floats  # from telemetry: drops, held ms, RTT ms or CPU wait share
    retrans: npt.NDArray[np.float32]  # beside the drops, the TCP retransmits (a count)
    hops: HopColumns

    def causes(self, most: int | None = None) -> list[str | None]:
        """The likely cause of each hop (of the first `most`)."""
        return [_CAUSES[b] for b in self.branch[:most].tolist()]

    def link(self, i: int) -> tuple[str, str]:
        """Hop `i`'s sender and receiver."""
        row, h = int(self.rows[i]), self.hops
        return h.names[int(h.src[row])], h.names[int(h.dst[row])]

    def evidence(self, i: int) -> str:
        """Why hop `i` (of `rows`) got its cause, in its own figures."""
        src, dst = self.link(i)
        shape = self.hops.shape_list[int(self.hops.shape[int(self.rows[i])])]
        excess, branch, figure = float(self.excess[i]), int(self.branch[i]), float(self.figure[i])
        latency = float(shape.get("latency_ms") or 0)
        if branch == 0:
            return f"{src} took {float(self.handler[i]):.1f} ms to validate before forwarding"
        if branch == 1:
            retrans = float(self.retrans[i])
            parts = [f"{figure:.0f} link drops" if figure else "",
                     f"{retrans:.0f} TCP retransmits" if retrans else ""]
            return " and ".join(p for p in parts if p) + f" on {src}->{dst}"
        if branch == 2:
            loss = float(shape.get("loss_pct") or 0)
            return f"link loss {loss:g}% and an excess near a TCP RTO ({excess:.0f} ms)"
        if branch == 3:
            return f"packets held {figure:.1f} ms on the link, {latency:g} ms configured"
        if branch == 4:
            return f"TCP RTT {figure:.1f} ms against {2 * latency:.1f} ms configured"
        if branch == 5:
            return f"bandwidth cap {shape['bandwidth_bps']} bit/s (likely a backlog)"
        if branch == 6:
            return f"runnable tasks waited for a CPU {figure:.0%} of the time around this hop"
        if branch == 7:
            return f"excess {excess:.0f} ms is near a TCP RTO (this link was not sampled)"
        if branch == 8:
            return (f"excess {excess:.0f} ms is near a TCP RTO, yet no drop or retransmit was "
                    "sampled")
        return "no telemetry points to a cause"


def diagnose(rows: Ints, excess: Floats, hops: HopColumns, tel: Telemetry) -> Diagnosis:
    """Diagnose the hops `rows` of `hops` (worst first), `excess[i]` ms beyond what their
    link explains, from what `tel` saw around each, `CHUNK` hops at a time."""
    n = len(rows)
    branch = np.empty(n, np.int8)
    handler = np.empty(n)
    figure = np.empty(n)
    retrans = np.empty(n, np.float32)
    per_shape = {name: np.array([float(s.get(name) or 0) for s in hops.shape_list] or [0.0])
                 for name in ("latency_ms", "loss_pct", "bandwidth_bps")}
    # a link's hops in as few chunks as can be: what telemetry saw is looked up per link
    by_link = np.argsort(_link_codes(hops.src[rows], hops.dst[rows], len(hops.names)),
                         kind="stable")
    for start in range(0, n, CHUNK):
        part = by_link[start:start + CHUNK]
        handler[part] = hops.handler_ms(rows[part])
        branch[part], figure[part], retrans[part] = _branches(
            rows[part], excess[part], handler[part], hops, per_shape, tel)
    return Diagnosis(rows, branch, excess, handler, figure, retrans, hops)


def _branches(rows: Ints, excess: Floats, handler: Floats, hops: HopColumns,
              per_shape: dict[str, Floats], tel: Telemetry
              ) -> tuple[Ints, Floats, Floats]:
    """Each hop's branch of the diagnosis (an index into `_CAUSES`), the telemetry figure
    it quotes and the retransmits beside a loss's drops."""
    src, dst, shape_of, tol = hops.src[rows], hops.dst[rows], hops.shape[rows], hops.tol[rows]
    seen = tel.seen(src, dst, hops.names, hops.sent[rows], hops.recv[rows])
    latency = per_shape["latency_ms"][shape_of]
    near_rto = excess >= 0.75 * MIN_RTO_MS
    explains = EXPLAINS_SHARE * excess
    lost = ((seen.drops > 0) | (seen.retrans > 0)) & (
        excess <= _timeouts_ms(np.maximum(seen.drops, seen.retrans)))
    lossy = _lossy_link_explains(per_shape["loss_pct"][shape_of], excess) & near_rto
    with np.errstate(invalid="ignore"):  # NaN compares false: no evidence from it
        held = seen.hold_ms - latency  # beyond the configured latency
        rtt = seen.rtt_ms - 2 * latency
        tests = [
            (handler > tol) & (handler >= 0.5 * excess),
            lost,
            lossy,
            (held > tol / 2) & (held >= explains),
            (rtt > tol) & (rtt >= explains),
            per_shape["bandwidth_bps"][shape_of] > 0,
            seen.cpu_wait >= BUSY_CPU_SHARE,
            near_rto & ~seen.observed,
            near_rto,
        ]
    branch = np.select(tests, np.arange(len(tests)), default=len(tests))
    figure = np.select([branch == 1, branch == 3, branch == 4, branch == 6],
                       [seen.drops, seen.hold_ms, seen.rtt_ms, seen.cpu_wait], np.nan)
    return branch, figure, np.where(branch == 1, seen.retrans, 0.0)


def _timeouts_ms(in_a_row: Floats) -> Floats:
    """Per hop, `RTO_SLACK` times what `in_a_row` TCP timeouts in a row take (each twice
    the last from `MIN_RTO_MS`, at most 16 counted), computed in place of `in_a_row`
    (columns of a starved run's 600,000 hops: each temporary is 5 MB of the peak)."""
    np.minimum(in_a_row, 16, out=in_a_row)
    np.exp2(in_a_row, out=in_a_row)
    in_a_row -= 1
    in_a_row *= RTO_SLACK * MIN_RTO_MS
    return in_a_row


def _lossy_link_explains(loss_pct: Floats, excess: Floats) -> npt.NDArray[np.bool_]:
    """Per hop: its link's configured loss makes a run of timeouts as long as its excess
    plausible (`RARE`)."""
    p = np.clip(loss_pct / 100, 0.0, 1.0)
    in_a_row = np.zeros(p.shape)
    in_a_row[p >= 1] = 16
    partial = (p > 0) & (p < 1)
    in_a_row[partial] = np.floor(np.log(RARE) / np.log(p[partial]))
    explains: npt.NDArray[np.bool_] = excess <= _timeouts_ms(in_a_row)
    return explains


@dataclasses.dataclass(frozen=True, slots=True)
class OutlierGroup:
    """The out-of-line hops of one link with one likely cause."""

    src: str
    dst: str
    cause: str
    hops: int
    median_excess_ms: float  # the upper median
    max_excess_ms: float
    evidence: str  # the worst hop's


def groups(d: Diagnosis) -> list[OutlierGroup]:
    """The diagnosed hops by link and cause, the largest groups first (then the worst)."""
    if not len(d.rows):
        return []
    cause_ix = {c: i for i, c in enumerate(dict.fromkeys(_CAUSES))}
    h = d.hops
    link = _link_codes(h.src[d.rows], h.dst[d.rows], len(h.names))
    key = link * len(cause_ix) + np.array([cause_ix[c] for c in _CAUSES])[d.branch]
    del link  # (a 100-node run diagnoses 500,000 hops: each column is 4 MB)
    order = np.lexsort((d.excess, key))  # by group, then by excess ascending
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    del key
    ends = np.r_[starts[1:], len(order)]
    out = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        worst = int(order[b - 1])
        out.append(OutlierGroup(
            *d.link(worst), _CAUSES[int(d.branch[worst])], b - a,
            float(d.excess[order[a + (b - a) // 2]]), float(d.excess[worst]),
            d.evidence(worst)))
    out.sort(key=lambda g: (-g.hops, -g.max_excess_ms))
    return out
