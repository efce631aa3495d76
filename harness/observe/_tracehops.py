"""The hops of a run's traces (a `receive` at B `from` A) as columns: each hop's delay
against the configured shape of A -> B when A had the message. A 100-node run has close to
a million hops: they are computed with C-level builtins over whole columns, and made into
`Hop` objects only when asked for."""

from __future__ import annotations

import bisect
import collections
import dataclasses
import functools
import itertools
import math
import operator
from array import array
from itertools import compress, repeat
from typing import TypeVar

from harness.observe._shapes import Shape, ShapeTimeline
from harness.observe._tracegather import SHIFT, Gathered

T = TypeVar("T", int, float)


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


def _keep(col: list[T], ok: list[bool]) -> list[T]:
    return list(compress(col, ok))


class HopColumns:
    """Every hop as columns of numbers (names and messages by index into the `Gathered`).

    `shapes[i]` is the shape hop i went through (by index into `shape_list`)."""

    def __init__(self, g: Gathered, tl: ShapeTimeline, abs_tol_ms: float,
                 rel_tol: float) -> None:
        self.msgs, self.topics, self.names = g.msgs, g.msg_topic, g.names
        self._publish, self._recv, self._deliver = g.publish, g.first_recv, g.first_deliver
        # (message, node) as a flat index m * n + node: a list lookup where a dict of a
        # hundred thousand keys would miss the cache on every one of close to a million hops;
        # NaN where the node never had the message (no receipt is >= NaN)
        n, mask = len(self.names), (1 << SHIFT) - 1
        had = g.had_at()
        had_keys = list(had)
        had_ix = list(map(operator.add, map(operator.mul, map(operator.rshift, had_keys,
                                                              repeat(SHIFT)), repeat(n)),
                          map(operator.and_, had_keys, repeat(mask))))
        had_at = [math.nan] * (len(self.msgs) * n)
        collections.deque(map(had_at.__setitem__, had_ix, had.values()), maxlen=0)
        # each sender's (network state when it had the message, itself) as the high bits of
        # a key (state, src, dst): per (message, node), not per hop (hops share a sender)
        state_src = [0] * len(had_at)
        states = map(functools.partial(bisect.bisect_right, tl.state_monos), had.values())
        collections.deque(map(state_src.__setitem__, had_ix, map(
            operator.or_, map(operator.lshift, states, repeat(2 * SHIFT)),
            map(operator.lshift, map(operator.and_, had_keys, repeat(mask)), repeat(SHIFT)))),
            maxlen=0)
        del had_keys, had_ix
        msg, src, dst, recv, size = g.r_msg, g.r_src, g.r_dst, g.r_mono, g.r_size
        sender = list(map(operator.add, map(operator.mul, msg, repeat(n)), src))
        sent = list(map(had_at.__getitem__, sender))  # had's own floats
        # each hop's delay (s), kept for hop_ms. All >= 0 implies recv >= sent for all, so
        # the exact test runs only when some is not (a pass over `sent`, floats all over
        # the heap, costs more than one over these)
        delay = array("d", map(operator.sub, recv, sent))
        if not all(map(operator.ge, delay, repeat(0.0))):
            # a receipt from a node that never had the message, or before it had it
            ok = list(map(operator.ge, recv, sent))
            msg, src, dst, size = _keep(msg, ok), _keep(src, ok), _keep(dst, ok), _keep(size, ok)
            recv, sent = _keep(recv, ok), list(compress(sent, ok))
            sender = list(compress(sender, ok))
            delay = array("d", compress(delay, ok))
        state_link = list(map(operator.or_, map(state_src.__getitem__, sender), dst))
        del sender, state_src, had_at

        self.shape_list: list[Shape] = []
        shape_ix: dict[int, int] = {}
        tol_of: list[float] = []
        latency_of: list[float] = []
        bandwidth_of: list[float] = []
        dropped: set[int] = set()
        for k, row in dict(zip(state_link, itertools.count())).items():
            shape = tl.at(self.names[k >> SHIFT & mask], self.names[k & mask], sent[row])
            latency = float(shape.get("latency_ms") or 0)
            bw = shape.get("bandwidth_bps")
            shape_ix[k] = len(self.shape_list)
            if shape.get("drop"):
                dropped.add(len(self.shape_list))
            self.shape_list.append(shape)
            tol_of.append(abs_tol_ms + rel_tol * latency + 2 * float(shape.get("jitter_ms") or 0))
            latency_of.append(latency)
            bandwidth_of.append(float(bw) if isinstance(bw, int | float) and bw > 0 else 0.0)
        shape_col = list(map(shape_ix.__getitem__, state_link))
        del state_link
        if dropped:  # hops over a cut link (sent before the cut)
            ok = [s not in dropped for s in shape_col]
            msg, src, dst, size = _keep(msg, ok), _keep(src, ok), _keep(dst, ok), _keep(size, ok)
            recv, sent = _keep(recv, ok), list(compress(sent, ok))
            shape_col = _keep(shape_col, ok)
            delay = array("d", compress(delay, ok))
        if -1 in size:  # unknown: the size published
            pub_size = {m: -1 if p[2] is None else p[2] for m, p in self._publish.items()}
            size = [s if s >= 0 else pub_size.get(m, -1) for m, s in zip(msg, size, strict=True)]
        # lists of the shapes' own floats (shared, as the hop columns' values are)
        self.expected = list(map(latency_of.__getitem__, shape_col))
        if any(bandwidth_of):  # + serialisation
            bws = map(bandwidth_of.__getitem__, shape_col)
            self.expected = [e + s * 8 / b * 1000 if b and s > 0 else e
                             for e, s, b in zip(self.expected, size, bws, strict=True)]
        self.msg, self.src, self.dst, self.recv, self.size = msg, src, dst, recv, size
        self.sent = sent  # a list: had's own floats, shared rather than copied
        self._delay_s = delay
        self.tol = list(map(tol_of.__getitem__, shape_col))
        self.shape = shape_col

    def __len__(self) -> int:
        return len(self.msg)

    def hop_ms(self) -> array[float]:
        """Every hop's delay."""
        return array("d", map(operator.mul, self._delay_s, repeat(1000.0)))

    def out_of_line(self, excess_ms: array[float]) -> list[int]:
        """The hops whose excess over the configured delay (`excess_ms`, each hop's delay
        minus `expected`) is beyond the tolerance."""
        return list(compress(range(len(excess_ms)), map(operator.gt, excess_ms, self.tol)))

    def by_link(self) -> list[tuple[int, int, list[int]]]:
        """(src, dst, the hops' indexes in order) of each link, by (src, dst): the hops are
        put in one list per (src, dst) in one pass (no sort of close to a million), and
        only the links that carried a hop get one (not n * n)."""
        n = len(self.names)
        buckets: collections.defaultdict[int, list[int]] = collections.defaultdict(list)
        link = map(operator.add, map(operator.mul, self.src, repeat(n)), self.dst)
        collections.deque(map(list.append, map(buckets.__getitem__, link),
                              range(len(self.src))), maxlen=0)
        return [(k // n, k % n, buckets[k]) for k in sorted(buckets)]

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

    def hop(self, i: int, cause: str | None = None, evidence: str = "",
            handler_ms: float | None = None) -> Hop:
        """Hop i as an object (`handler_ms`: its sender's, when known already)."""
        size, m = self.size[i], self.msg[i]
        if handler_ms is None:
            handler_ms = self.handler_ms(i)
        return Hop(self.msgs[m], self.topics[m], self.names[self.src[i]],
                   self.names[self.dst[i]], self.sent[i], self.recv[i],
                   None if size < 0 else size, (self.recv[i] - self.sent[i]) * 1000,
                   self.expected[i], handler_ms, self.tol[i], cause, evidence)

    def hops(self, outliers: list[Hop]) -> list[Hop]:
        """Every hop, by the time it was sent (the out-of-line ones as diagnosed)."""
        diagnosed = {(h.msg_id, h.src, h.dst): h for h in outliers}
        out = []
        for i in range(len(self.msg)):
            h = self.hop(i)
            out.append(diagnosed.get((h.msg_id, h.src, h.dst), h))
        out.sort(key=lambda h: (h.sent_mono, h.src, h.dst))
        return out
