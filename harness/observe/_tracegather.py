"""The trace records of every instance gathered into columns: who published each message
when, each node's first receipt and delivery, and each first receipt from a peer (a hop).

A 100-node run has close to a million records: each instance's records become numpy
columns (its strings mapped to indexes with C-level builtins), and what joins instances
(first times per message and node) is computed once, over all of them, in `finish`."""

from __future__ import annotations

import operator
from collections.abc import Hashable, Sequence
from itertools import repeat
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from harness.observe._jsonl import ReadFailed
from harness.observe._rundir import InstanceDir
from harness.observe._shapes import ShapeTimeline
from harness.observe._tracefile import read_trace_columns_capped, trace_paths

T = TypeVar("T")
Ints = npt.NDArray[np.int64]
Index = npt.NDArray[np.int32]
"""Indexes into a run's names, messages or shapes, one per hop: half the size of `Ints`
(a 100-node run has 670,000 hops, a column of them 2.7 MB)."""
Floats = npt.NDArray[np.float64]
_NEEDED = ("mono", "kind", "msg_id", "topic", "from", "to", "size")
_PUBLISH, _RECEIVE, _DELIVER = 1, 2, 3
_KINDS = {"publish": _PUBLISH, "receive": _RECEIVE, "deliver": _DELIVER}  # any other: 0
SHIFT = 20  # a hop's key (message, from, to) packs the two nodes in SHIFT bits each


def _take(col: Sequence[T], rows: Sequence[int]) -> list[T]:
    if len(rows) > 1:
        return list(operator.itemgetter(*rows)(col))
    return [col[rows[0]]] if rows else []


def _names(col: list[Any]) -> list[Any]:
    """`col` with what cannot be a kind or a host's name (a list, a dict: a damaged record)
    as None, which reads as not said."""
    if set(map(type, col)) <= {str, type(None)}:
        return col
    return [v if isinstance(v, str | int | float) else None for v in col]


def _ints(values: Any, count: int) -> Ints:
    return np.fromiter(values, np.int64, count)


def _first_at(parts: list[tuple[Ints, Ints, Floats]], shape: tuple[int, int]) -> Floats:
    """The earliest time of each (message, node) in `parts` as a dense array of `shape`,
    NaN where there is none."""
    at = np.full(shape, np.inf)
    if parts:
        m, node, mono = (np.concatenate(col) for col in zip(*parts, strict=True))
        np.minimum.at(at, (m, node), mono)
    at[at == np.inf] = np.nan
    return at


class Gathered:
    """Every instance's trace records as columns. Names and messages are indexes into
    `names` and `msgs`; a receipt row (`r_*`) is the first receipt of (message, from, to)
    in one instance's trace. Call `finish` once every instance is added: it fills the
    columns and the (message, node) arrays."""

    def __init__(self, tl: ShapeTimeline) -> None:
        self._tl = tl
        self.names: list[str] = []
        self._name_ix: dict[Hashable, int] = {}  # a record's from/to as written -> name
        self._by_name: dict[str, int] = {}
        self.msgs: list[str] = []
        self.msg_topic: list[str] = []
        self._msg_ix: dict[str, int] = {}
        self.publish: dict[int, tuple[float, int, int | None]] = {}  # msg -> mono, origin, size
        self.nodes: list[str] = []  # instances with a trace
        self.cut: list[str] = []  # instances whose trace was read only up to MAX_TRACE_BYTES
        self.damaged: dict[str, str] = {}  # instances whose trace could not be read, and why
        self.traced: list[str] = []  # instances with a trace file, events or not, read or not
        # per instance, until `finish`: (message, node, mono) of receipts and deliveries,
        # and its hops' (message, from, to, mono, size)
        self._recv: list[tuple[Ints, Ints, Floats]] = []
        self._published: list[tuple[Ints, Ints, Floats]] = []  # every node's own, by message
        self._deliver: list[tuple[Ints, Ints, Floats]] = []
        self._hops: list[tuple[Ints, Ints, Ints, Floats, Ints]] = []
        # what `finish` makes
        self.r_msg = self.r_src = self.r_dst = self.r_size = np.zeros(0, np.int64)
        self.r_mono = np.zeros(0)
        self.recv_at = self.deliver_at = self.had_at = np.zeros((0, 0))
        """(message, node): the first receipt, the first delivery, and when the node first
        had the message (its publication, else its first receipt, else its first
        delivery); NaN: never."""
        self.pub_origin = np.zeros(0, np.int64)
        """Each message's publisher (-1: its publication is not in any trace)."""

    def ix(self, host: Hashable) -> int:
        """The index of the name of a host as a record writes it."""
        i = self._name_ix.get(host)
        if i is None:
            name = self._tl.name(host)
            i = self._by_name.get(name)
            if i is None:
                i = self._by_name[name] = len(self.names)
                self.names.append(name)
            self._name_ix[host] = i
        return i

    def add_instance(self, inst: InstanceDir) -> None:
        """Read one instance's traces into the columns (one that cannot be read is left
        out, and `damaged` says why; one corrupt from some point on is read up to it)."""
        if not trace_paths(inst.path):
            return
        self.traced.append(inst.id)
        damage: list[str] = []
        try:
            cols, cut = read_trace_columns_capped(inst.path, _NEEDED, damage)
        except ReadFailed as e:
            if e.out_of_files:
                raise
            self.damaged[inst.id] = f"could not be read ({e.reason})"
            return
        if damage:
            self.damaged[inst.id] = "; ".join(damage)
        if cut:
            self.cut.append(inst.id)
        msg, mono = cols["msg_id"], cols["mono"]
        if not msg:
            return
        self.nodes.append(inst.id)
        own = self.ix(inst.id)
        msg_types, mono_types = set(map(type, msg)), set(map(type, mono))
        if type(None) in msg_types or not mono_types <= {float, int}:
            keep = [i for i, (m, t) in enumerate(zip(msg, mono, strict=True))
                    if m is not None and isinstance(t, int | float)]
            cols = {k: _take(col, keep) for k, col in cols.items()}
            msg, mono = cols["msg_id"], cols["mono"]
            msg_types = set(map(type, msg))
        if not msg:
            return
        mono_a = np.array(mono, dtype=np.float64)
        if np.any(mono_a[1:] < mono_a[:-1]):
            # out of time order: sort (stably), so that a key's first row is its earliest
            order = np.argsort(mono_a, kind="stable")
            cols = {k: _take(col, order.tolist()) for k, col in cols.items()}
            msg, mono_a = cols["msg_id"], mono_a[order]
        if msg_types != {str}:
            msg = list(map(str, msg))
        count = len(msg)
        kind, frm, to = (_names(cols[k]) for k in ("kind", "from", "to"))
        size = cols["size"]
        if set(map(type, size)) != {int}:
            size = [int(s) if isinstance(s, int) else -1 for s in size]  # a bool as 0 or 1

        new = [m_id for m_id in dict.fromkeys(msg) if m_id not in self._msg_ix]
        if new:  # each message is new in one instance's trace only
            topics = cols["topic"]
            if len(new) < 64:
                first = {m_id: msg.index(m_id) for m_id in new}
            else:
                first = dict(zip(reversed(msg), range(count - 1, -1, -1), strict=True))
            for m_id in new:
                self._msg_ix[m_id] = len(self.msgs)
                self.msgs.append(m_id)
                self.msg_topic.append(str(topics[first[m_id]] or ""))
        m = _ints(map(self._msg_ix.__getitem__, msg), count)
        hosts = {h: self.ix(h) for h in set(frm) | set(to) if h is not None}
        src = _ints(map(({**hosts, None: -1}).__getitem__, frm), count)  # -1: not said
        dst = _ints(map(({**hosts, None: own}).__getitem__, to), count)
        kinds = np.fromiter(map(_KINDS.get, kind, repeat(0)), np.int8, count)
        size_a = np.array(size, dtype=np.int64)

        published = np.flatnonzero(kinds == _PUBLISH)
        origins = np.where(src[published] < 0, own, src[published])
        self._published.append((m[published], origins, mono_a[published]))
        for i, origin in zip(published.tolist(), origins.tolist(), strict=True):
            pub = self.publish.get(int(m[i]))
            if pub is None or mono_a[i] < pub[0]:
                self.publish[int(m[i])] = (float(mono_a[i]), origin,
                                           None if size_a[i] < 0 else int(size_a[i]))
        is_recv = kinds == _RECEIVE
        self._recv.append((m[is_recv], dst[is_recv], mono_a[is_recv]))
        is_deliver = kinds == _DELIVER
        self._deliver.append((m[is_deliver], dst[is_deliver], mono_a[is_deliver]))
        # the first receipt of each (message, to, from) said
        hop = np.flatnonzero(is_recv & (src >= 0))
        keys = m[hop] << 2 * SHIFT | src[hop] << SHIFT | dst[hop]
        first_rows = np.unique(keys, return_index=True)[1]
        if len(first_rows) < len(hop):  # a message received twice from one peer
            hop = hop[np.sort(first_rows)]
        self._hops.append((m[hop], src[hop], dst[hop], mono_a[hop], size_a[hop]))

    def finish(self) -> None:
        """Gather what every instance added into the columns and (message, node) arrays."""
        shape = (len(self.msgs), len(self.names))
        self.recv_at = _first_at(self._recv, shape)
        self.deliver_at = _first_at(self._deliver, shape)
        self.had_at = np.where(np.isnan(self.recv_at), self.deliver_at, self.recv_at)
        self.pub_origin = np.full(len(self.msgs), -1, np.int64)
        if self._published:
            # A node has a message from its own publication of it: several may make the same
            # one (a certificate of the same votes). Only the first publisher's counted, so
            # another's copies reached its peers "before it had the message" (hops of 1 ms
            # over 50 ms links).
            pub_m, pub_node, pub_mono = (np.concatenate(c) for c in zip(*self._published,
                                                                        strict=True))
            np.fmin.at(self.had_at, (pub_m, pub_node), pub_mono)
        if self.publish:
            pub_m = _ints(self.publish, len(self.publish))
            self.pub_origin[pub_m] = _ints((p[1] for p in self.publish.values()),
                                           len(self.publish))
        if self._hops:
            self.r_msg, self.r_src, self.r_dst, self.r_mono, self.r_size = (
                np.concatenate(col) for col in zip(*self._hops, strict=True))
        self._recv, self._deliver, self._hops, self._published = [], [], [], []

    def take_hops(self) -> tuple[Ints, Ints, Ints, Floats, Ints]:
        """The hop columns (`r_msg`, `r_src`, `r_dst`, `r_mono`, `r_size`), handed over:
        this object keeps none of them (a 100-node run's are 27 MB, and their user keeps
        filtered copies)."""
        taken = self.r_msg, self.r_src, self.r_dst, self.r_mono, self.r_size
        self.r_msg = self.r_src = self.r_dst = self.r_size = np.zeros(0, np.int64)
        self.r_mono = np.zeros(0)
        return taken

