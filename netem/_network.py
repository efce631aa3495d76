"""`Network`: emulated hosts joined through a hub namespace; shapes, partitions, record."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from pathlib import Path
from types import TracebackType
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from netem import _build as build
from netem import _names as names
from netem._backends._base import Backend, BackendFailure, LinkStats, Pair
from netem._backends._select import select_backend
from netem._build import _ns as ns
from netem._cleanup import _manifest as manifests
from netem._errors import NetemError, NetworkError, RequestError
from netem._firewall import Firewall
from netem._hosts import Host
from netem._interrupts import held_back
from netem._policy import Policy, Request, grouped, parse_request
from netem._record import Recorder, shape_json
from netem._rootless import rootless_problem
from netem._shape import LinkShape

HostRef = Host | str | IPv4Address
"""A host given as its `Host`, its name (`"h3"`) or its address (`"198.18.0.3"`)."""

DEFAULT_SUBNET = "198.18.0.0/15"


class Network:
    """Hosts in their own network namespaces, one interface each, joined by a bridge in a
    hub namespace; traffic shaped per direction by a backend and cut by partitions.

    prefix: carried by every name the network creates (default: `ht` + 6 random hex).
    subnet: the data network; host N gets its N-th address.
    backend: "auto", "kernel", "userspace", "none" or a `Backend` object.
    record: a file to append one JSON line per change to (see `netem.replay`).
    dry_run: keep and check the policy but create nothing (no namespaces, no rules).

    Every change is validated whole first: a bad one raises `RequestError` and changes
    nothing. A change the machine refuses raises `NetworkError` after restoring the previous
    drop rules. Use as a context manager, or call `close()`: everything created is removed.
    """

    def __init__(
        self,
        prefix: str | None = None,
        subnet: str = DEFAULT_SUBNET,
        backend: Backend | str = "auto",
        record: Path | str | None = None,
        *,
        dry_run: bool = False,
    ) -> None:
        self.prefix = names.new_prefix() if prefix is None else names.check_prefix(prefix)
        self.subnet = _parse_subnet(subnet)
        self.dry_run = dry_run
        self.backend: Backend = select_backend(backend)
        self.hub_netns = names.hub_netns(self.prefix)
        self._hosts: list[Host] = []
        self._by_ip: dict[IPv4Address, Host] = {}
        self._by_name: dict[str, Host] = {}
        self._policy = Policy()
        self._lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Change] = []
        """Changes asked for and not applied yet (`_change`)."""
        self._firewall: Firewall | None = None
        self._created: list[str] = []
        self._manifest = False
        self._attached = False
        self._closed = False
        self._recorder = Recorder(record)
        self._failure_lock = threading.Lock()
        self._failure_recorded = False
        self._notes_recorded: list[str] = []

    # -- building ---------------------------------------------------------------------

    @property
    def hosts(self) -> list[Host]:
        """The hosts, in order of number."""
        return list(self._hosts)

    @property
    def hub_netns_path(self) -> str:
        return names.netns_path(self.hub_netns)

    def build(self, count: int, *, asked_by: str = "netem") -> list[Host]:
        """Create `count` hosts h1..h<count> (once per network) and return them."""
        with self._lock:
            self._check_open()
            if self._hosts:
                raise RequestError("this network is built already")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise RequestError(f"host count must be a whole number >= 1, not {count!r}")
            _check_room(self.subnet, count)
            numbers = list(range(1, count + 1))
            try:
                hosts = self._build_hosts(numbers)
            except BaseException as e:
                self._teardown()
                if isinstance(e, NetlinkError | OSError) and not isinstance(e, NetemError):
                    raise NetworkError(f"building the network failed: {e}") from e
                raise
            self._hosts = hosts
            self._by_ip = {h.ip: h for h in hosts}
            self._by_name = {h.name: h for h in hosts}
            self._recorder.write(
                "build",
                asked_by,
                {"count": count},
                {
                    "prefix": self.prefix,
                    "subnet": str(self.subnet),
                    "hosts": [{"name": h.name, "ip": str(h.ip)} for h in hosts],
                },
            )
            return list(hosts)

    def _build_hosts(self, numbers: list[int]) -> list[Host]:
        if self.dry_run:
            hosts = [
                Host(
                    name=names.host_name(n),
                    number=n,
                    netns=names.host_netns(self.prefix, n),
                    ip=self.subnet.network_address + n,
                    network=self.subnet,
                    ifname=names.host_ifname(self.prefix, n),
                    hub_ifname=names.hub_ifname(self.prefix, n),
                )
                for n in numbers
            ]
        else:
            _check_privileges()
            live = manifests.holder(self.prefix)
            if live is not None:  # its manifest must stay: its namespaces are traced by it
                whose = "a live network's" if live.owner_alive() else "of another PID namespace"
                raise NetworkError(f"network prefix {self.prefix!r} is in use by process "
                                   f"{live.pid} ({whose}): choose another prefix")
            self._manifest = True  # first: an interruption may land right after the write
            manifests.write(self.prefix, str(self.subnet))
            ns.ensure_netns_dir()
            build.create_hub(self.prefix, self._created)
            self._firewall = Firewall(self.hub_netns_path)
            self._firewall.setup()
            hosts = build.add_hosts(self.prefix, self.subnet, numbers, self._created)
        self.backend.attach(self.hub_netns, [h.info() for h in hosts])
        self._attached = True
        self.backend.apply({})
        return hosts

    # -- looking ----------------------------------------------------------------------

    def host(self, ref: HostRef) -> Host:
        """The host named by `ref`; `RequestError` if there is none."""
        if isinstance(ref, Host):
            found = self._by_ip.get(ref.ip)
            if found != ref:
                raise RequestError(f"host {ref.name} ({ref.ip}) is not part of this network")
            return ref
        if isinstance(ref, IPv4Address):
            by_ip = self._by_ip.get(ref)
            if by_ip is None:
                raise RequestError(f"no host has address {ref}")
            return by_ip
        if isinstance(ref, str):
            by_name = self._by_name.get(ref)
            if by_name is not None:
                return by_name
            try:
                return self.host(IPv4Address(ref))
            except AddressValueError:
                raise RequestError(f"no host named {ref!r}") from None
        raise RequestError(f"a host is a Host, a name or an address, not {ref!r}")

    def matrix(self) -> dict[Pair, LinkShape]:
        """The effective shape of every shaped direction (directions left out are unshaped)."""
        with self._lock:
            return self._policy.matrix(self._by_ip)

    def drops(self) -> frozenset[Pair]:
        """Every direction whose packets are dropped (partitions, drop rules, disabled)."""
        with self._lock:
            return self._policy.drops(self._by_ip)

    @property
    def policy(self) -> Policy:
        """The whole current policy, as data."""
        return self._policy

    # -- changing ---------------------------------------------------------------------

    def set_default(
        self, host: HostRef, shape: LinkShape | None, *, asked_by: str = "netem"
    ) -> None:
        """Shape all egress traffic of `host` (None: unshaped), except where a rule says."""
        h = self.host(host)
        _check_shape(shape)
        self._change(
            lambda policy: policy.with_default(h.ip, shape),
            "default",
            asked_by,
            {"host": str(h.ip), "shape": shape_json(shape)},
        )

    def set_rule(
        self, src: HostRef, dst: HostRef, shape: LinkShape | None, *, asked_by: str = "netem"
    ) -> None:
        """Shape the direction src -> dst, overriding src's default (None: remove the rule)."""
        s, d = self.host(src), self.host(dst)
        if s == d:
            raise RequestError(f"a rule needs two different hosts, not {s.name} twice")
        _check_shape(shape)
        self._change(
            lambda policy: policy.with_rule((s.ip, d.ip), shape),
            "rule",
            asked_by,
            {"src": str(s.ip), "dst": str(d.ip), "shape": shape_json(shape)},
        )

    def partition(
        self,
        a: Iterable[HostRef],
        b: Iterable[HostRef],
        *,
        oneway: bool = False,
        asked_by: str = "netem",
    ) -> None:
        """Drop traffic from every host of `a` to every host of `b`, and back unless `oneway`."""
        side_a, side_b = self._side(a, "a"), self._side(b, "b")
        both = side_a & side_b
        if both:
            raise RequestError(f"host {self._by_ip[min(both)].name} is on both sides")
        pairs = {(x, y) for x in side_a for y in side_b}
        if not oneway:
            pairs |= {(y, x) for x, y in pairs}
        self._change(
            lambda policy: policy.with_partition(pairs),
            "partition",
            asked_by,
            {"a": _ips(side_a), "b": _ips(side_b), "oneway": oneway},
        )

    def heal(
        self,
        a: Iterable[HostRef] | None = None,
        b: Iterable[HostRef] | None = None,
        *,
        asked_by: str = "netem",
    ) -> None:
        """Remove partitions: all of them, those touching `a` (or `b`), or those between
        `a` and `b`, both ways. Drop rules a host asked for stay."""
        side_a = None if a is None else self._side(a, "a")
        side_b = None if b is None else self._side(b, "b")
        if side_a is None and side_b is None:
            pairs = None
        else:
            every = set(self._by_ip)
            xs, ys = side_a or every, side_b or every
            pairs = {(x, y) for x in xs for y in ys} | {(y, x) for x in xs for y in ys}
        self._change(
            lambda policy: policy.healed(pairs),
            "heal",
            asked_by,
            {
                "a": None if side_a is None else _ips(side_a),
                "b": None if side_b is None else _ips(side_b),
            },
        )

    def cut(
        self, pairs: Iterable[tuple[HostRef, HostRef]], *, asked_by: str = "netem"
    ) -> None:
        """Drop the traffic of each (source, destination) direction of `pairs`, one change
        for all of them (`partition` for two sides; this for any shape: a ring, a bridge)."""
        cut = self._pairs(pairs)
        self._change(lambda policy: policy.with_partition(cut), "cut", asked_by,
                     {"pairs": _pair_list(cut)})  # fmt: skip

    def uncut(
        self, pairs: Iterable[tuple[HostRef, HostRef]], *, asked_by: str = "netem"
    ) -> None:
        """Let the directions of `pairs` through again (what `cut` or `partition` dropped)."""
        healed = self._pairs(pairs)
        self._change(lambda policy: policy.healed(healed), "uncut", asked_by,
                     {"pairs": _pair_list(healed)})  # fmt: skip

    def override(
        self,
        shapes: Mapping[tuple[HostRef, HostRef], LinkShape | None],
        *,
        asked_by: str = "netem",
    ) -> None:
        """Shape directions over whatever the hosts asked for (None: remove the override,
        so their own shapes apply again); one change for all of them."""
        resolved: dict[Pair, LinkShape | None] = {}
        for (src, dst), shape in shapes.items():
            (pair,) = self._pairs([(src, dst)])
            _check_shape(shape)
            resolved[pair] = shape
        self._change(
            lambda policy: policy.with_overrides(resolved),
            "override",
            asked_by,
            {"shapes": [[str(a), str(b), shape_json(s)] for (a, b), s in sorted(resolved.items())]},
        )

    def _pairs(self, pairs: Iterable[tuple[HostRef, HostRef]]) -> frozenset[Pair]:
        out = set()
        for src, dst in pairs:
            s, d = self.host(src).ip, self.host(dst).ip
            if s == d:
                raise RequestError(f"a direction needs two different hosts, not {src} twice")
            out.add((s, d))
        if not out:
            raise RequestError("no direction given")
        return frozenset(out)

    def apply_request(self, host: HostRef, config: Mapping[str, Any], asked_by: str) -> Request:
        """Apply a host's `network` request (docs/contracts.md section 6): its default
        shape, per-peer rules (shape or drop) and `enabled`, replacing its earlier request.
        `callback_*` keys are the caller's business and ignored here."""
        h = self.host(host)
        request = parse_request(config, h.ip, self._by_ip)
        self._change(
            lambda policy: policy.with_request(h.ip, request),
            "request",
            asked_by,
            {"host": str(h.ip), "config": dict(config)},
        )
        return request

    def _side(self, refs: Iterable[HostRef], label: str) -> set[IPv4Address]:
        if isinstance(refs, str | Host | IPv4Address):
            raise RequestError(f"side {label} is a collection of hosts, not a single host")
        side = {self.host(r).ip for r in refs}
        if not side:
            raise RequestError(f"side {label} of a partition is empty")
        return side

    def _change(
        self, update: Callable[[Policy], Policy], op: str, asked_by: str, asked: dict[str, Any]
    ) -> None:
        # Changes asked for from several threads at once (one per instance's request) build
        # on each other under the lock, never on a stale copy. They are applied in batches:
        # whoever takes the lock applies every change queued by then, in order, with one
        # backend update, since each update costs about the whole matrix (a hundred hosts
        # asking for their shape at start-up: a few updates, not a hundred).
        change = _Change(update, op, asked_by, asked)
        with self._queue_lock:
            self._queue.append(change)
        with self._lock:
            if not change.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._apply_batch(batch)
        if change.error is not None:
            raise change.error

    def _apply_batch(self, batch: list[_Change]) -> None:
        """Apply `batch` in order: a change that is refused (bad input) fails alone; if
        the backend or the firewall fails, every change of the batch fails and nothing of
        it is applied."""
        try:
            self._check_open()
            if not self._hosts:
                raise RequestError("build the network before changing it")
        except BaseException as exc:
            for change in batch:
                change.finish(exc)
            raise
        try:
            self._apply_steps(batch)
        finally:
            for change in batch:  # reached only if something unexpected broke off the batch
                if not change.done:
                    change.finish(NetworkError("not applied: the batch it was in broke off"))

    def _apply_steps(self, batch: list[_Change]) -> None:
        policy = self._policy
        old_drops = new_drops = policy.drops(self._by_ip)
        # each applied change, with the drops before and after it (each policy's once)
        steps: list[tuple[_Change, frozenset[Pair], frozenset[Pair]]] = []
        for change in batch:
            try:
                policy = change.update(policy)
            except Exception as exc:  # its own bad input: the others go on
                change.finish(exc)
                continue
            drops = policy.drops(self._by_ip)
            steps.append((change, new_drops, drops))
            new_drops = drops
        firewall_changed = False
        try:
            if self._firewall is not None and new_drops != old_drops:
                firewall_changed = True
                self._firewall.apply(new_drops)
            matrix = policy.matrix(self._by_ip)
            self.backend.apply(matrix)
        except BaseException as exc:
            if firewall_changed and self._firewall is not None:
                self._firewall.apply(old_drops)
            for change, _, _ in steps:
                change.finish(exc)
            raise
        self._policy = policy
        for change, drops_before, drops_after in steps:
            applied = {
                "cut": _pairs(drops_after - drops_before),
                "restored": _pairs(drops_before - drops_after),
                "shaped": len(matrix),  # once its whole batch is applied
            }
            self._recorder.write(change.op, change.asked_by, change.asked, applied)
            change.finish(None)

    def link_stats(self) -> Mapping[Pair, LinkStats]:
        """The backend's counters per shaped direction (safe while others change the net)."""
        with self._lock:
            if self._closed or not self._attached:
                return {}
            return self.backend.stats()

    def backend_failure(self) -> BackendFailure | None:
        """Why the backend no longer shapes as asked (e.g. the userspace engine died), once
        that is so; None while it works. Cheap and never waits for a change in progress, so
        it can be polled. The first time a failure is seen it is recorded (op
        "backend-failed", `applied`: `BackendFailure.to_dict()`)."""
        failure = getattr(self.backend, "failure", None)  # backends written before it
        found: BackendFailure | None = failure() if failure is not None else None
        if found is not None:
            with self._failure_lock:
                if not self._failure_recorded:
                    self._failure_recorded = True
                    self._recorder.write("backend-failed", "netem", {}, found.to_dict())
        return found

    def backend_notes(self) -> tuple[str, ...]:
        """What a reader of the run should know about how its links were shaped (e.g. the
        userspace engine's slower Python fallback, and why); empty when nothing. Cheap, so it
        can be polled. Each note is recorded once, when first seen (op "backend-note",
        `applied`: {"backend", "message"})."""
        notes = getattr(self.backend, "notes", None)  # backends written before it
        found: tuple[str, ...] = tuple(notes()) if notes is not None else ()
        with self._failure_lock:
            for note in found:
                if note not in self._notes_recorded:
                    self._notes_recorded.append(note)
                    self._recorder.write("backend-note", "netem", {},
                                         {"backend": self.backend.name, "message": note})
        return found

    # -- ending -----------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything the network created (safe to call twice)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._recorder.write("close", "netem", {}, {})
            finally:
                self._teardown()

    def _teardown(self) -> None:
        with held_back():
            self._remove_all()

    def _remove_all(self) -> None:
        errors: list[BaseException] = []
        if self._attached:
            self._attached = False
            try:
                self.backend.close()
            except Exception as e:
                errors.append(e)
        try:
            build.remove_namespaces(self._created)
            self._created.clear()
        except Exception as e:
            errors.append(e)
        if self._manifest:
            manifests.remove(self.prefix)
            self._manifest = False
        if self._closed:
            self._recorder.close()
        if errors:
            raise NetworkError(f"removing network {self.prefix} failed: {errors[0]}")

    def _check_open(self) -> None:
        if self._closed:
            raise RequestError(f"network {self.prefix} is closed")

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._hosts)} hosts"
        return f"<Network {self.prefix} {self.subnet} {state}>"


class _Change:
    """One change asked for: how it derives the policy, what the record says, and how it
    ended (``done``; ``error`` None when it was applied)."""

    __slots__ = ("asked", "asked_by", "done", "error", "op", "update")

    def __init__(
        self, update: Callable[[Policy], Policy], op: str, asked_by: str, asked: dict[str, Any]
    ) -> None:
        self.update, self.op, self.asked_by, self.asked = update, op, asked_by, asked
        self.done = False
        self.error: BaseException | None = None

    def finish(self, error: BaseException | None) -> None:
        self.done, self.error = True, error


def _check_privileges() -> None:
    if (problem := manifests.proc_problem()) is not None:
        raise NetworkError(f"cannot own a network here: {problem}")
    if os.geteuid() == 0:
        return  # real root, or root of a user namespace (netem.reexec_in_userns)
    problem = rootless_problem()
    how = (
        "call netem.reexec_in_userns() first to run in a user namespace"
        if problem is None
        else f"and user namespaces cannot be used here: {problem}"
    )
    raise NetworkError(f"building a network needs root; {how}")


def _parse_subnet(subnet: str) -> IPv4Network:
    try:
        net = IPv4Network(subnet)
    except (AddressValueError, NetmaskValueError, ValueError) as e:
        raise RequestError(f"bad subnet {subnet!r}: {e}") from None
    if net.prefixlen > 30:
        raise RequestError(f"subnet {subnet} is too small: at most /30")
    for bad, what in _UNUSABLE:
        if net.overlaps(bad):
            raise RequestError(f"subnet {subnet} overlaps {bad} ({what}): hosts cannot have "
                               f"addresses there")
    return net


_UNUSABLE = tuple((IPv4Network(n), what) for n, what in (
    ("0.0.0.0/8", "'this network'"), ("127.0.0.0/8", "loopback"),
    ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved, and broadcast")))


def _check_room(subnet: IPv4Network, hosts: int) -> None:
    room = min(subnet.num_addresses - 2, names.MAX_HOST_NUMBER)
    if hosts > room:
        raise RequestError(f"subnet {subnet} has room for {room} hosts, not {hosts}")


def check_subnet(subnet: str, hosts: int) -> IPv4Network:
    """`subnet` parsed, when a network of `hosts` hosts fits in it; a one-line RequestError
    otherwise (what `Network` and `build` would refuse, asked before anything is made)."""
    net = _parse_subnet(subnet)
    _check_room(net, hosts)
    return net


def _check_shape(shape: object) -> None:
    if shape is not None and not isinstance(shape, LinkShape):
        raise RequestError(f"a shape is a LinkShape or None, not {shape!r}")


def _ips(side: Iterable[IPv4Address]) -> list[str]:
    return [str(ip) for ip in sorted(side, key=int)]


def _pairs(pairs: Iterable[Pair]) -> dict[str, list[str]]:
    """Directions for the record: {source: [destination or "first-last" range, ...]}."""
    return {
        str(src): [str(a) if a == b else f"{a}-{b}" for a, b in runs]
        for src, runs in grouped(pairs).items()
    }


def _pair_list(pairs: Iterable[Pair]) -> list[list[str]]:
    return [[str(a), str(b)] for a, b in sorted(pairs)]
