"""The trace records of every instance gathered into columns: who published each message
when, each node's first receipt and delivery, and each first receipt from a peer (a hop).

A 100-node run has close to a million records: each instance's records are turned into
columns with C-level builtins (map, zip, dict, itemgetter) rather than one at a time."""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Hashable, Iterable, Sequence
from itertools import compress, repeat
from typing import Any, TypeVar

from harness.observe._rundir import InstanceDir
from harness.observe._shapes import ShapeTimeline
from harness.observe._tracefile import read_trace_columns

T = TypeVar("T")
_NEEDED = ("mono", "kind", "msg_id", "topic", "from", "to", "size")
SHIFT = 20  # a key of (message, node) is message << SHIFT | node: a 100-node run has ~1M


def keys(a: Sequence[int] | Iterable[int], b: Sequence[int] | Iterable[int]) -> map[int]:
    """The keys a << SHIFT | b, pairwise."""
    return map(operator.or_, map(operator.lshift, a, repeat(SHIFT)), b)


def _take(col: Sequence[T], rows: Sequence[int]) -> list[T]:
    if len(rows) > 1:
        return list(operator.itemgetter(*rows)(col))
    return [col[rows[0]]] if rows else []


def _taker(rows: Sequence[int]) -> Callable[[Sequence[T]], Sequence[T]]:
    """What `_take` of `rows` does, for several columns of the same rows (one itemgetter)."""
    if len(rows) > 1:
        return operator.itemgetter(*rows)
    return functools.partial(_take, rows=rows)


def _where(col: list[Any], value: Any) -> list[int]:
    """The indexes of `value` in `col` (a few: one search from each to the next)."""
    out: list[int] = []
    i = -1
    for _ in range(col.count(value)):
        i = col.index(value, i + 1)
        out.append(i)
    return out


def _firsts(ks: list[int], monos: list[float], into: dict[int, float]) -> None:
    """Merge each key's first mono (the columns are in time order) into `into`, keeping the
    earlier where a key is there already."""
    first = dict(zip(reversed(ks), reversed(monos), strict=True))
    for k in first.keys() & into.keys():
        first[k] = min(first[k], into[k])
    into.update(first)


class Gathered:
    """Every instance's trace records as columns. Names and messages are indexes into
    `names` and `msgs`; a receipt row is the first receipt of (message, from, to) in one
    instance's trace. Keys of (message, node) are `keys` (ints)."""

    def __init__(self, tl: ShapeTimeline) -> None:
        self._tl = tl
        self.names: list[str] = []
        self._name_ix: dict[Hashable, int] = {}  # a record's from/to as written -> name
        self._by_name: dict[str, int] = {}
        self.msgs: list[str] = []
        self.msg_topic: list[str] = []
        self._msg_ix: dict[str, int] = {}
        self.publish: dict[int, tuple[float, int, int | None]] = {}  # msg -> mono, origin, size
        self.first_recv: dict[int, float] = {}
        self.first_deliver: dict[int, float] = {}
        # lists, not arrays: their values are the objects the columns hold already (an
        # array would convert each value in and make a new object of it on each read)
        self.r_msg: list[int] = []
        self.r_src: list[int] = []
        self.r_dst: list[int] = []
        self.r_mono: list[float] = []
        self.r_size: list[int] = []  # -1: unknown
        self.nodes: list[str] = []  # instances with a trace
        self._had: dict[int, float] | None = None

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
        """Read one instance's traces into the columns."""
        cols = read_trace_columns(inst.path, _NEEDED)
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
            msg_types, mono_types = set(map(type, msg)), set(map(type, mono))
        if not msg:
            return
        if mono_types != {float}:
            mono = cols["mono"] = list(map(float, mono))
        if not all(map(operator.le, mono, itertools.islice(mono, 1, None))):
            # out of time order: sort (stably), so that a key's first row is its earliest
            order = sorted(range(len(mono)), key=mono.__getitem__)
            cols = {k: _take(col, order) for k, col in cols.items()}
            msg, mono = cols["msg_id"], cols["mono"]
        if msg_types != {str}:
            msg = list(map(str, msg))
        kind, frm, to, size = cols["kind"], cols["from"], cols["to"], cols["size"]
        if set(map(type, size)) != {int}:
            size = [int(s) if isinstance(s, int) else -1 for s in size]  # a bool as 0 or 1

        new = [m_id for m_id in dict.fromkeys(msg) if m_id not in self._msg_ix]
        if new:  # each message is new in one instance's trace only
            topics = cols["topic"]
            if len(new) < 64:
                first = {m_id: msg.index(m_id) for m_id in new}
            else:
                first = dict(zip(reversed(msg), range(len(msg) - 1, -1, -1), strict=True))
            for m_id in new:
                self._msg_ix[m_id] = len(self.msgs)
                self.msgs.append(m_id)
                self.msg_topic.append(str(topics[first[m_id]] or ""))
        m = list(map(self._msg_ix.__getitem__, msg))
        hosts = {h: self.ix(h) for h in set(frm) | set(to) if h is not None}
        src = list(map(({**hosts, None: -1}).__getitem__, frm))  # -1: not said
        dst = list(map(({**hosts, None: own}).__getitem__, to))

        for i in _where(kind, "publish"):
            origin = own if src[i] < 0 else src[i]
            pub = self.publish.get(m[i])
            if pub is None or mono[i] < pub[0]:
                self.publish[m[i]] = (float(mono[i]), origin, None if size[i] < 0 else size[i])
        md = list(keys(m, dst))  # (message, the node that had it) of every row
        is_recv = list(map(operator.eq, kind, repeat("receive")))
        recv_md = list(compress(md, is_recv))
        _firsts(recv_md, list(compress(mono, is_recv)), self.first_recv)
        is_deliver = list(map(operator.eq, kind, repeat("deliver")))
        _firsts(list(compress(md, is_deliver)), list(compress(mono, is_deliver)),
                self.first_deliver)
        # the first receipt of each (message, to, from) said
        if -1 in src:  # some receipt does not say from whom
            hop = list(map(operator.and_, is_recv, map(operator.ge, src, repeat(0))))
            hop_md = list(compress(md, hop))
        else:
            hop, hop_md = is_recv, recv_md
        hop_keys = list(keys(hop_md, compress(src, hop)))
        if len(set(hop_keys)) < len(hop_keys):  # a message received twice from one peer
            rows = list(compress(range(len(hop)), hop))
            take = _taker(sorted(dict(zip(reversed(hop_keys), reversed(rows),
                                          strict=True)).values()))
            columns: list[Iterable[Any]] = [take(m), take(src), take(dst), take(mono),
                                            take(size)]
        else:
            columns = [compress(col, hop) for col in (m, src, dst, mono, size)]
        into: tuple[list[Any], ...] = (self.r_msg, self.r_src, self.r_dst, self.r_mono,
                                       self.r_size)
        for r_col, col in zip(into, columns, strict=True):
            r_col.extend(col)

    def had_at(self) -> dict[int, float]:
        """When each node first had each message (by key): its publication, else its first
        receipt, else its first delivery (computed once)."""
        if self._had is None:
            self._had = dict(self.first_deliver)
            self._had.update(self.first_recv)
            self._had.update({m << SHIFT | origin: mono
                              for m, (mono, origin, _) in self.publish.items()})
        return self._had
