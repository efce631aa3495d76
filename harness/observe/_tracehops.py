"""The hops of a run's traces (a `receive` at B `from` A) as columns: each hop's delay
against the configured shape of A -> B when A had the message. A 100-node run has close to
a million hops: they are computed with C-level builtins over whole columns, and made into
`Hop` objects only when asked for."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import operator
from array import array
from itertools import compress, repeat
from typing import Any

from harness.observe._shapes import Shape, ShapeTimeline
from harness.observe._tracegather import SHIFT, Gathered, _take, keys


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


class HopColumns:
    """Every hop as columns of numbers (names and messages by index into the `Gathered`).

    `shapes[i]` is the shape hop i went through (by index into `shape_list`)."""

    def __init__(self, g: Gathered, tl: ShapeTimeline, abs_tol_ms: float,
                 rel_tol: float) -> None:
        self.msgs, self.topics, self.names = g.msgs, g.msg_topic, g.names
        self._publish, self._recv, self._deliver = g.publish, g.first_recv, g.first_deliver
        had = g.had_at()
        sent: list[Any] = list(map(had.get, keys(g.r_msg, g.r_src)))
        recv: list[float] = g.r_mono.tolist()
        rows: list[int] | None = None  # all
        if None in sent or not all(map(operator.ge, recv, sent)):
            # a receipt from a node that never had the message, or before it had it
            rows = [i for i, (r, s) in enumerate(zip(recv, sent, strict=True))
                    if s is not None and r >= s]
        msg, src, dst = g.r_msg.tolist(), g.r_src.tolist(), g.r_dst.tolist()
        size = g.r_size.tolist()
        if rows is not None:
            msg, src, dst, size, sent, recv = (
                _take(c, rows) for c in (msg, src, dst, size, sent, recv))
        # the shape of each hop: by (network state when sent, src, dst)
        states = map(functools.partial(bisect.bisect_right, tl.state_monos), sent)
        link = list(keys(src, dst))
        state_link = list(map(operator.or_, map(operator.lshift, states, repeat(2 * SHIFT)),
                              link))
        some_row = dict(zip(state_link, range(len(state_link)), strict=True))
        self.shape_list: list[Shape] = []
        shape_ix: dict[int, int] = {}
        tol_of: list[float] = []
        latency_of: list[float] = []
        bandwidth_of: list[float] = []
        dropped: set[int] = set()
        for k, row in some_row.items():
            i = len(self.shape_list)
            s_, d_ = k >> SHIFT & (1 << SHIFT) - 1, k & (1 << SHIFT) - 1
            shape = tl.at(self.names[s_], self.names[d_], sent[row])
            latency = float(shape.get("latency_ms") or 0)
            bw = shape.get("bandwidth_bps")
            shape_ix[k] = i
            self.shape_list.append(shape)
            tol_of.append(abs_tol_ms + rel_tol * latency + 2 * float(shape.get("jitter_ms") or 0))
            latency_of.append(latency)
            bandwidth_of.append(float(bw) if isinstance(bw, int | float) and bw > 0 else 0.0)
            if shape.get("drop"):
                dropped.add(i)
        shape_col = list(map(shape_ix.__getitem__, state_link))
        if dropped:  # a hop over a cut link: a message sent before the cut
            rows = [i for i, s in enumerate(shape_col) if s not in dropped]
            msg, src, dst, size, sent, recv, shape_col, link = (
                _take(c, rows) for c in (msg, src, dst, size, sent, recv, shape_col, link))
        if -1 in size:  # unknown: the size published
            pub_size = {m: -1 if p[2] is None else p[2] for m, p in self._publish.items()}
            size = [s if s >= 0 else pub_size.get(m, -1) for m, s in zip(msg, size, strict=True)]
        expected = list(map(latency_of.__getitem__, shape_col))
        if any(bandwidth_of):  # + serialisation
            bws = map(bandwidth_of.__getitem__, shape_col)
            expected = [e + s * 8 / b * 1000 if b and s > 0 else e
                        for e, s, b in zip(expected, size, bws, strict=True)]
        self.msg, self.src, self.dst = array("l", msg), array("l", src), array("l", dst)
        self.sent, self.recv = array("d", sent), array("d", recv)
        self.size = array("q", size)  # -1: unknown
        self.expected = array("d", expected)
        self.tol = array("d", map(tol_of.__getitem__, shape_col))
        self.shape = array("l", shape_col)
        self.link = link  # src << SHIFT | dst

    def __len__(self) -> int:
        return len(self.msg)

    def hop_ms(self) -> list[float]:
        """Every hop's delay."""
        return list(map(operator.mul, map(operator.sub, self.recv, self.sent), repeat(1000.0)))

    def out_of_line(self, hop_ms: list[float]) -> list[int]:
        """The hops whose excess over the configured delay is beyond the tolerance."""
        excess = map(operator.sub, hop_ms, self.expected)
        return list(compress(range(len(hop_ms)), map(operator.gt, excess, self.tol)))

    def by_link(self) -> list[tuple[int, int, list[int]]]:
        """(src, dst, the hops' indexes in order) of each link."""
        order = sorted(range(len(self.link)), key=self.link.__getitem__)
        return [(k >> SHIFT, k & (1 << SHIFT) - 1, list(rows))
                for k, rows in itertools.groupby(order, key=self.link.__getitem__)]

    def handler_ms(self, i: int) -> float:
        """The time hop i's sender took from its first receipt to its delivery (validation)
        before it forwarded the message (0 for its publisher)."""
        m, src = self.msg[i], self.src[i]
        pub = self._publish.get(m)
        key = m << SHIFT | src
        delivered, got = self._deliver.get(key), self._recv.get(key)
        if (pub and pub[1] == src) or delivered is None or got is None:
            return 0.0
        return max(0.0, (delivered - got) * 1000) if delivered <= self.recv[i] else 0.0

    def hop(self, i: int, cause: str | None = None, evidence: str = "") -> Hop:
        """Hop i as an object."""
        size, m = self.size[i], self.msg[i]
        return Hop(self.msgs[m], self.topics[m], self.names[self.src[i]],
                   self.names[self.dst[i]], self.sent[i], self.recv[i],
                   None if size < 0 else size, (self.recv[i] - self.sent[i]) * 1000,
                   self.expected[i], self.handler_ms(i), self.tol[i], cause, evidence)

    def hops(self, outliers: list[Hop]) -> list[Hop]:
        """Every hop, by the time it was sent (the out-of-line ones as diagnosed)."""
        diagnosed = {(h.msg_id, h.src, h.dst): h for h in outliers}
        out = []
        for i in range(len(self.msg)):
            h = self.hop(i)
            out.append(diagnosed.get((h.msg_id, h.src, h.dst), h))
        out.sort(key=lambda h: (h.sent_mono, h.src, h.dst))
        return out
