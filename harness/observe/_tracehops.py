"""The hops of a run's traces (a `receive` at B `from` A) as columns: each hop's delay
against the configured shape of A -> B when A had the message. A 100-node run has close to
a million hops: they are computed over whole numpy columns, and made into `Hop` objects
only when asked for."""

from __future__ import annotations

import dataclasses

import numpy as np

from harness.observe._shapes import Shape, ShapeTimeline
from harness.observe._tracegather import SHIFT, Floats, Gathered, Index, Ints


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
    """Every hop as numpy columns (names and messages by index into the `Gathered`).

    `shape[i]` is the shape hop i went through (by index into `shape_list`)."""

    def __init__(self, g: Gathered, tl: ShapeTimeline, abs_tol_ms: float,
                 rel_tol: float) -> None:
        self.msgs, self.topics, self.names = g.msgs, g.msg_topic, g.names
        self._g = g
        n = len(self.names)
        had = g.had_at.ravel()  # (message, node) at m * n + node; NaN: never had it
        # the network's state when each sender had each message
        monos = np.array(tl.state_monos)
        state = np.searchsorted(monos, had, side="right")
        msg, src, dst, recv, size = g.take_hops()
        sender = msg * n + src
        sent = had[sender]
        ok = recv >= sent  # not: a receipt from a node that never had it, or before it had it
        if not ok.all():
            msg, src, dst, recv, size, sent, sender = (
                col[ok] for col in (msg, src, dst, recv, size, sent, sender))
        # each hop's (state, from, to), and the shape of each such key once
        sent_state = state[sender]
        # no network change while it was on its way: its link's shape is known for sure
        steady = np.searchsorted(monos, recv, side="right") == sent_state
        state_link = sent_state << 2 * SHIFT | src << SHIFT | dst
        del sender, state, sent_state
        keys, shape_col = np.unique(state_link, return_inverse=True)
        row_of = np.empty(len(keys), np.int64)
        row_of[shape_col] = np.arange(len(shape_col))  # a row of each key
        mask = (1 << SHIFT) - 1
        self.shape_list: list[Shape] = []
        tol_of, latency_of, bandwidth_of, dropped = [], [], [], []
        for k, row in zip(keys.tolist(), row_of.tolist(), strict=True):
            shape = tl.at(self.names[k >> SHIFT & mask], self.names[k & mask], float(sent[row]))
            latency = float(shape.get("latency_ms") or 0)
            bw = shape.get("bandwidth_bps")
            self.shape_list.append(shape)
            dropped.append(bool(shape.get("drop")))
            tol_of.append(abs_tol_ms + rel_tol * latency + 2 * float(shape.get("jitter_ms") or 0))
            latency_of.append(latency)
            bandwidth_of.append(float(bw) if isinstance(bw, int | float) and bw > 0 else 0.0)
        if any(dropped):  # hops over a cut link (sent before the cut)
            ok = ~np.array(dropped)[shape_col]
            msg, src, dst, recv, size, sent, shape_col, steady = (
                col[ok] for col in (msg, src, dst, recv, size, sent, shape_col, steady))
        if (size < 0).any():  # unknown: the size published
            pub_size = np.full(len(self.msgs), -1, np.int64)
            for m, p in self._g.publish.items():
                pub_size[m] = -1 if p[2] is None else p[2]
            size = np.where(size >= 0, size, pub_size[msg])
        self.expected: Floats = np.array(latency_of)[shape_col]
        if any(bandwidth_of):  # + serialisation
            bw = np.array(bandwidth_of)[shape_col]
            some = (bw > 0) & (size > 0)
            self.expected[some] += size[some] * 8 / bw[some] * 1000
        self.msg: Index = msg.astype(np.int32)
        self.src: Index = src.astype(np.int32)
        self.dst: Index = dst.astype(np.int32)
        self.recv: Floats = recv
        self.sent: Floats = sent
        self.size: Ints = size
        self.tol: Floats = np.array(tol_of)[shape_col]
        self.shape: Index = shape_col.astype(np.int32)
        self.steady: np.ndarray = steady  # no network change while the hop was on its way

    def __len__(self) -> int:
        return len(self.msg)

    def hop_ms(self) -> Floats:
        """Every hop's delay."""
        return (self.recv - self.sent) * 1000.0

    def out_of_line(self, excess_ms: Floats) -> Ints:
        """The hops whose excess over the configured delay (`excess_ms`, each hop's delay
        minus `expected`) is beyond the tolerance."""
        return np.flatnonzero(excess_ms > self.tol)

    def by_link(self) -> list[tuple[int, int, Ints]]:
        """(src, dst, the hops' indexes in order) of each link that carried a hop, by
        (src, dst)."""
        n = len(self.names)
        link = np.asarray(self.src, np.int64) * n + np.asarray(self.dst, np.int64)
        if not len(link):
            return []
        order = np.argsort(link, kind="stable")
        used, starts = np.unique(link[order], return_index=True)
        return [(k // n, k % n, rows) for k, rows
                in zip(used.tolist(), np.split(order, starts[1:]), strict=True)]

    def handler_ms(self, rows: Ints) -> Floats:
        """The time each hop's sender took from its first receipt to its delivery
        (validation) before it forwarded the message (0 for its publisher)."""
        m, src, g = self.msg[rows], self.src[rows], self._g
        delivered, got = g.deliver_at[m, src], g.recv_at[m, src]
        counts = (g.pub_origin[m] != src) & (delivered <= self.recv[rows]) & ~np.isnan(got)
        with np.errstate(invalid="ignore"):  # NaN where it does not count
            return np.where(counts, np.maximum(0.0, (delivered - got) * 1000), 0.0)

    def hops_at(self, rows: Ints, causes: list[str | None] | None = None,
                evidence: list[str] | None = None,
                handler_ms: Floats | None = None) -> list[Hop]:
        """Hops `rows` as objects (with their causes and evidence, when diagnosed)."""
        if handler_ms is None:
            handler_ms = self.handler_ms(rows)
        count = len(rows)
        recv, sent, msg = self.recv[rows], self.sent[rows], self.msg[rows].tolist()
        return list(map(
            Hop,
            [self.msgs[m] for m in msg],
            [self.topics[m] for m in msg],
            [self.names[s] for s in self.src[rows].tolist()],
            [self.names[d] for d in self.dst[rows].tolist()],
            sent.tolist(), recv.tolist(),
            [None if s < 0 else s for s in self.size[rows].tolist()],
            ((recv - sent) * 1000).tolist(), self.expected[rows].tolist(),
            handler_ms.tolist(), self.tol[rows].tolist(),
            causes or [None] * count, evidence or [""] * count))

    def hops(self, outliers: list[Hop]) -> list[Hop]:
        """Every hop, by the time it was sent (the out-of-line ones as diagnosed)."""
        diagnosed = {(h.msg_id, h.src, h.dst): h for h in outliers}
        out = [diagnosed.get((h.msg_id, h.src, h.dst), h)
               for h in self.hops_at(np.arange(len(self.msg)))]
        out.sort(key=lambda h: (h.sent_mono, h.src, h.dst))
        return out
