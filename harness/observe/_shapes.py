"""The configured link shapes of a run over time, rebuilt from run.json and network.jsonl."""

from __future__ import annotations

import bisect
import copy
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.observe._jsonl import Unreadable, number, read_jsonl
from harness.observe._runrecord import RunRecord, read_run

Shape = dict[str, Any]  # LinkShape fields; {"drop": True} for a cut link
DROP: Shape = {"drop": True}
_ANY = "*"
#: netem record lines of what its backend did or said on its own (its engine died; it fell
#: back to a slower engine): no change of a link, and in events.jsonl too
BACKEND_OPS = frozenset({"backend-failed", "backend-note"})
#: netem record lines that change no link: the network's birth and end, and the backend's
_NOT_CHANGES = frozenset({"build", "close"}) | BACKEND_OPS


def host_names(run: RunRecord) -> dict[str, str]:
    """Address -> instance id, from run.json (instances' ip and network.hosts)."""
    names: dict[str, str] = {}
    net = run.network or {}
    for iid, ip in (net.get("hosts") or {}).items():
        names[str(ip)] = str(iid)
    for inst in run.instances:
        if inst.ip:
            names[inst.ip] = inst.id
    return names


class ShapeTimeline:
    """Answers "what shape did the direction src -> dst have at time t" for a run.

    Reads netem's own record (lines with an `op`) by replaying it with netem. Also
    understands network.jsonl lines whose `applied` (preferred) or `request` is either the
    sync protocol's config (`default`, `rules`, `enabled`: egress of `asked_by`, or of every
    host when the supervisor asked) or an explicit list `links: [{src, dst, shape|drop}]`.
    Hosts may be named by instance id or data address.
    """

    def __init__(self, run: RunRecord, changes: list[dict[str, Any]]) -> None:
        self.names = host_names(run)
        self.hosts = sorted({i.id for i in run.instances} | set(self.names.values()))
        net = run.network or {}
        state: dict[tuple[str, str], Shape] = {}
        if isinstance(net.get("default_shape"), dict):
            state[(_ANY, _ANY)] = dict(net["default_shape"])
        self._apply_links(state, net.get("links"))
        self._monos: list[float] = [float("-inf")]
        self._states: list[dict[tuple[str, str], Shape]] = [dict(state)]
        self.changes: list[dict[str, Any]] = []
        netem_record = any("op" in rec for rec in changes)
        if netem_record and not _requests_only(changes):  # netem's own record: replay it
            self._replay_netem(state, changes)
            return
        for rec in sorted(changes, key=_mono):
            if not isinstance(rec.get("mono"), int | float):
                continue
            if self._apply(state, _as_config(rec) if netem_record else rec):
                self._monos.append(float(rec["mono"]))
                self._states.append(dict(state))
                self.changes.append(rec)

    def _replay_netem(
        self, base: dict[tuple[str, str], Shape], changes: list[dict[str, Any]]
    ) -> None:
        import netem

        lines = sorted(changes, key=_mono)
        as_dict: dict[Any, Shape] = {}  # one dict per distinct LinkShape, shared by the states
        drop = dict(DROP)
        names: dict[Any, str] = {}  # address -> name (str() of an address is slow)
        # each source's egress at the last line, and its compact form: most lines change one
        rows: dict[str, tuple[dict[str, Shape], dict[tuple[str, str], Shape]]] = {}
        for line, matrix, drops in netem.replay_states(lines):
            if line.get("op") in _NOT_CHANGES or not isinstance(line.get("mono"), int | float):
                continue
            by_src: dict[str, dict[str, Shape]] = {}
            for (src, dst), shape in matrix.items():
                d = as_dict.get(shape)
                if d is None:
                    d = as_dict[shape] = shape.to_dict()
                by_src.setdefault(self._cached_name(names, src), {})[
                    self._cached_name(names, dst)] = d
            for src, dst in drops:
                by_src.setdefault(self._cached_name(names, src), {})[
                    self._cached_name(names, dst)] = drop
            state = dict(base)
            for source, row in by_src.items():
                prev = rows.get(source)
                if prev is None or prev[0] != row:
                    prev = rows[source] = (row, self._compact_row(source, row))
                state.update(prev[1])
            self._monos.append(float(line["mono"]))
            self._states.append(state)
            self.changes.append(line)

    def _cached_name(self, names: dict[Any, str], host: Any) -> str:
        name = names.get(host)
        if name is None:
            name = names[host] = self.name(host)
        return name

    def _compact_row(self, src: str, row: dict[str, Shape]) -> dict[tuple[str, str], Shape]:
        """A source's egress as few entries: (src, *) for the shape most of its directions
        have when every other host is in the row (a 100-host run has 9,900 directions per
        state), plus the exceptions."""
        others = len(self.hosts) - (src in self.hosts)
        if len(row) < others or not all(h in row for h in self.hosts if h != src):
            return {(src, dst): shape for dst, shape in row.items()}
        counts: dict[int, int] = {}
        for shape in row.values():
            counts[id(shape)] = counts.get(id(shape), 0) + 1
        common_id = max(counts, key=lambda k: counts[k])
        common = next(s for s in row.values() if id(s) == common_id)
        out = {(src, _ANY): common}
        out.update({(src, dst): s for dst, s in row.items() if s is not common})
        return out

    @classmethod
    def from_run_dir(cls, run_dir: Path, run: RunRecord | None = None,
                     damaged: dict[Path, int] | None = None,
                     unreadable: Unreadable | None = None,
                     finished: bool = False) -> ShapeTimeline:
        """Read network.jsonl of `run_dir` (its damaged lines counted in `damaged`, an
        unreadable file told to `unreadable`, as `read_jsonl` does, `finished` once the run
        has ended) and, unless `run` is its record already read, run.json (if there is one
        yet)."""
        run = run or read_run(run_dir) or RunRecord(run_dir.name)
        return cls(run, list(read_jsonl(run_dir / "network.jsonl", damaged, unreadable,
                                        finished)))

    def copy(self) -> ShapeTimeline:
        """The same timeline (the states are shared, not replayed again), with a `names`
        of its own, so that names taught to the copy do not change this one."""
        twin = copy.copy(self)
        twin.names = dict(self.names)
        return twin

    @property
    def state_monos(self) -> list[float]:
        """When each state began (the first: -inf); `at` of a time in [k, k+1) is state k's."""
        return self._monos

    def name(self, host: Any) -> str:
        """An instance id for an address or id."""
        return self.names.get(str(host), str(host))

    def _apply(self, state: dict[tuple[str, str], Shape], rec: Mapping[str, Any]) -> bool:
        applied, request = rec.get("applied"), rec.get("request")
        config = applied if isinstance(applied, dict) and _is_config(applied) else request
        if not isinstance(config, dict) or not _is_config(config):
            return False
        asked = self.name(rec.get("asked_by") or "supervisor")
        src = _ANY if asked == "supervisor" or asked not in self.hosts else asked
        if "links" in config:
            self._apply_links(state, config["links"])
        if "default" in config or "rules" in config or "enabled" in config:
            for key in [k for k in state if k[0] == src]:  # a config replaces the source's egress
                del state[key]
            if src == _ANY:
                state.clear()
            if config.get("enabled") is False:
                state[(src, _ANY)] = dict(DROP)
                return True
            if isinstance(config.get("default"), dict):
                state[(src, _ANY)] = dict(config["default"])
            for rule in config.get("rules") or []:
                if not isinstance(rule, dict):
                    continue
                shape = DROP if rule.get("drop") else rule.get("shape")
                if not isinstance(shape, dict):
                    continue
                for peer in rule.get("peers") or []:
                    state[(src, self.name(peer))] = dict(shape)
        return True

    def _apply_links(self, state: dict[tuple[str, str], Shape], links: Any) -> None:
        for link in links or []:
            if not isinstance(link, dict) or "src" not in link or "dst" not in link:
                continue
            shape = DROP if link.get("drop") else link.get("shape")
            if isinstance(shape, dict):
                state[(self.name(link["src"]), self.name(link["dst"]))] = dict(shape)

    def at(self, src: str, dst: str, mono: float | None = None) -> Shape:
        """The shape of src -> dst at `mono` (the latest when None); {} means unshaped."""
        i = len(self._states) - 1 if mono is None else bisect.bisect_right(self._monos, mono) - 1
        state = self._states[max(i, 0)]
        src, dst = self.name(src), self.name(dst)
        for key in ((src, dst), (src, _ANY), (_ANY, dst), (_ANY, _ANY)):
            if key in state:
                return state[key]
        return {}

    def directions(
        self, key: Callable[[Shape], str], mono: float | None = None
    ) -> DirectionSummary:
        """The shaped directions between known hosts at `mono` (latest when None), counted
        by `key` of their shape, without visiting every one of the hosts^2 directions."""
        i = len(self._states) - 1 if mono is None else bisect.bisect_right(self._monos, mono) - 1
        return DirectionSummary(self.hosts, self._states[max(i, 0)], key)

    def matrix(self, mono: float | None = None) -> dict[tuple[str, str], Shape]:
        """Every shaped direction between known hosts at `mono` (latest when None): hosts^2
        entries (`directions` summarises them instead)."""
        out: dict[tuple[str, str], Shape] = {}
        for a in self.hosts:
            for b in self.hosts:
                if a != b:
                    shape = self.at(a, b, mono)
                    if shape and any(v for v in shape.values()):
                        out[(a, b)] = shape
        return out


def _shaped(shape: Shape | None) -> bool:
    return bool(shape) and any(v for v in shape.values())  # type: ignore[union-attr]


class DirectionSummary:
    """The shaped directions a -> b (a != b) between hosts in one network state, by class:
    a direction's shape is its own entry, else its source's (a, *), else its destination's
    (*, b), else the default (*, *). `counts` is computed from the entries, in
    O(hosts + entries); `others` lists only what differs from a given class."""

    def __init__(self, hosts: list[str], state: Mapping[tuple[str, str], Shape],
                 key: Callable[[Shape], str]) -> None:
        self._hosts, self._key = hosts, key
        known = set(hosts)
        self._own: dict[str, dict[str, Shape]] = {}  # a -> b -> its own entry
        self._row: dict[str, Shape] = {}
        self._col: dict[str, Shape] = {}
        for (a, b), shape in state.items():
            if a in known and b in known and a != b:
                self._own.setdefault(a, {})[b] = shape
            elif a in known and b == _ANY:
                self._row[a] = shape
            elif a == _ANY and b in known:
                self._col[b] = shape
        self._default = state.get((_ANY, _ANY))
        self.counts: dict[str, int] = {}
        self.shapes: dict[str, Shape] = {}  # a shape of each class
        n = len(hosts)

        def add(shape: Shape | None, count: int) -> None:
            if count > 0 and shape is not None and _shaped(shape):
                k = key(shape)
                self.counts[k] = self.counts.get(k, 0) + count
                self.shapes.setdefault(k, shape)

        for own in self._own.values():
            for shape in own.values():
                add(shape, 1)
        rest = 0  # directions from hosts without a row entry, to hosts without a column one
        for a in hosts:
            own = self._own.get(a, {})
            if a in self._row:
                add(self._row[a], n - 1 - len(own))
            else:
                cols = sum(1 for b in self._col if b != a and b not in own)
                rest += n - 1 - len(own) - cols
        for b, shape in self._col.items():
            add(shape, sum(1 for a in hosts
                           if a != b and a not in self._row and b not in self._own.get(a, {})))
        add(self._default, rest)

    def shape(self, a: str, b: str) -> Shape | None:
        """The shape of a -> b (None: unshaped)."""
        own = self._own.get(a, {})
        for shape in (own.get(b), self._row.get(a), self._col.get(b), self._default):
            if shape is not None:
                return shape
        return None

    def others(self, common: str | None, limit: int) -> list[tuple[str, str, Shape]]:
        """The first `limit` shaped directions (by source, then destination) whose class is
        not `common`, visiting only the hosts that can have one."""
        out: list[tuple[str, str, Shape]] = []
        key = self._key

        def differs(shape: Shape | None) -> bool:
            return shape is not None and _shaped(shape) and key(shape) != common

        cols_differ = [b for b, s in self._col.items() if differs(s)]
        everyone = self._hosts
        for a in self._hosts:
            own = self._own.get(a, {})
            if differs(self._row.get(a, self._default)):
                candidates = everyone
            else:
                cands = set(own)
                if a not in self._row:
                    cands.update(cols_differ)
                candidates = sorted(cands, key=self._order)
            for b in candidates:
                shape = self.shape(a, b) if b != a else None
                if differs(shape):
                    out.append((a, b, shape))  # type: ignore[arg-type]
                    if len(out) >= limit:
                        return out
        return out

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {h: i for i, h in enumerate(self._hosts)}

    def _order(self, host: str) -> int:
        return self._index[host]


def _mono(rec: dict[str, Any]) -> float:
    """A record's `mono` to order by (0 where it has none, or a damaged one)."""
    mono = number(rec.get("mono"))
    return 0.0 if mono is None else mono


def _requests_only(lines: list[dict[str, Any]]) -> bool:
    """A netem record of requests alone (no partition, cut, override...), none disabling
    a host: each request replaces its host's egress, which `_apply` does without replaying
    netem (a replay derives 2 x hosts^2 directions per line: seconds at 100 hosts)."""
    for line in lines:
        op = line.get("op")
        if op in _NOT_CHANGES:
            continue
        asked = line.get("asked")
        config = asked.get("config") if op == "request" and isinstance(asked, dict) else None
        if not isinstance(config, dict) or config.get("enabled") is False:
            return False
    return True


def _as_config(line: dict[str, Any]) -> dict[str, Any]:
    """A netem `request` line as a config line asked by its host (build/close: nothing)."""
    asked = line.get("asked") or {}
    if line.get("op") != "request":
        return {}
    return {"mono": line.get("mono"), "asked_by": asked.get("host"), "applied": asked["config"]}


def _is_config(d: Mapping[str, Any]) -> bool:
    return any(k in d for k in ("default", "rules", "enabled", "links"))


def expected_delay_ms(shape: Shape, size: int | None = None) -> float:
    """One-way delay a shape adds to a message of `size` bytes: latency + serialisation."""
    delay = float(shape.get("latency_ms") or 0.0)
    bw = shape.get("bandwidth_bps")
    if size and isinstance(bw, int | float) and bw > 0:
        delay += size * 8 / bw * 1000
    return delay
