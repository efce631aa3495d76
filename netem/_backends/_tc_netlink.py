"""`HtbShaper`: keeps each host's egress tc layout (see `_tc_spec`) equal to a pair matrix.

One rtnetlink socket per host namespace, opened when a shape first needs it and kept; no
process is started per change. A change the kernel refuses is rolled back on every host it had touched, so a
failed `apply` leaves the previous state in place.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netem._backends._base import HostInfo, LinkStats, Pair
from netem._backends._tc_spec import (
    DEFAULT_MINOR,
    FIRST_SLOT,
    MAX_SLOT,
    DstFilter,
    HtbRoot,
    Op,
    Spec,
    diff,
    render,
    request,
)
from netem._build._ns import netlink_socket, run_in_netns
from netem._errors import NetworkError, RequestError
from netem._names import netns_path
from netem._shape import LinkShape

T = TypeVar("T")


class _Egress:
    """One host's egress interface and the specs last applied to it."""

    def __init__(self, host: HostInfo) -> None:
        self.host = host
        try:
            # a socket opened from a thread inside the namespace: pyroute2's own
            # IPRoute(netns=...) forks a helper per namespace, about 20 ms each
            sock = run_in_netns(netns_path(host.netns), netlink_socket)
            self.ipr = IPRoute(fileno=sock.detach())
        except (OSError, NetlinkError) as exc:
            raise NetworkError(f"cannot enter namespace {host.netns}: {exc}") from None
        found = self.ipr.link_lookup(ifname=host.ifname)
        if not found:
            self.ipr.close()
            raise NetworkError(f"no interface {host.ifname} in namespace {host.netns}")
        self.index: int = found[0]
        self.specs: tuple[Spec, ...] = ()

    def run(self, ops: Sequence[Op]) -> None:
        for op in ops:
            command, kind, handle, kwargs = request(op)
            try:
                self.ipr.tc(command, kind, self.index, handle, **kwargs)
            except NetlinkError as exc:
                raise NetworkError(
                    f"tc {command} {kind or ''} on {self.host.name} ({self.host.ifname}) "
                    f"failed: {os.strerror(exc.code)}"
                ) from None
            except (ValueError, KeyError, TypeError) as exc:  # pyroute2 refused the arguments
                raise NetworkError(
                    f"tc {command} {kind or ''} on {self.host.name}: bad request ({exc!r})"
                ) from None

    def reset(self, specs: tuple[Spec, ...]) -> None:
        """Remove the root qdisc (taking everything below with it) and build `specs` anew."""
        with contextlib.suppress(NetworkError):  # there may be none
            self.run([Op("delete", HtbRoot())])
        self.specs = ()
        self.run(diff((), specs))
        self.specs = specs

    def close(self) -> None:
        try:
            if self.specs:
                self.run([Op("delete", HtbRoot())])
        except NetworkError:
            pass  # the namespace or interface is already gone
        finally:
            self.specs = ()
            self.ipr.close()


class HtbShaper:
    """Egress shaping of every host with htb classes, optionally with netem leaves.

    leaves=True: the kernel backend's full layout; leaves=False: bandwidth caps only.
    """

    def __init__(self, *, leaves: bool) -> None:
        self.leaves = leaves
        self._hosts: dict[IPv4Address, HostInfo] = {}  # attached
        self._egress: dict[IPv4Address, _Egress] = {}  # opened (a shape has needed them)
        self._slots: dict[IPv4Address, int] = {}
        # pyroute2 binds a socket made from a file descriptor to the thread that made it, so
        # every netlink call of this shaper runs on one thread of its own, whichever thread
        # calls (the Network's callers may be Trio's worker threads, one per request).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="netem-tc")

    def _confined(self, fn: Callable[..., T], *args: Any) -> T:
        return self._thread.submit(fn, *args).result()

    @property
    def hosts(self) -> list[HostInfo]:
        """The attached hosts."""
        return list(self._hosts.values())

    def attach(self, hosts: Sequence[HostInfo]) -> None:
        """Take `hosts` on. A host's namespace is opened, and its layout (root + default)
        put on, when a shape first needs it: a network that never shapes a host costs it
        nothing (at 1,000 hosts that was half of building the network)."""
        return self._confined(self._attach, hosts)

    def _attach(self, hosts: Sequence[HostInfo]) -> None:
        new = [h for h in hosts if h.ip not in self._hosts]
        if len(self._slots) + len(new) > MAX_SLOT - FIRST_SLOT + 1:
            raise RequestError(f"the tc layout has room for {MAX_SLOT - FIRST_SLOT + 1} hosts")
        for host in new:
            self._hosts[host.ip] = host
            self._slots[host.ip] = FIRST_SLOT + len(self._slots)

    def _open(self, host: HostInfo) -> _Egress:
        """The host's egress, opened now if it was not yet (with no layout on it)."""
        egress = self._egress.get(host.ip)
        if egress is None:
            egress = self._egress[host.ip] = _Egress(host)
            with contextlib.suppress(NetworkError):  # a fresh namespace has none
                egress.run([Op("delete", HtbRoot())])
        return egress

    def validate(self, matrix: Mapping[Pair, LinkShape]) -> None:
        """Raise `RequestError` (changing nothing) if `matrix` cannot be applied."""
        for (src, dst), shape in matrix.items():
            if src not in self._hosts:
                raise RequestError(f"source {src} is not an attached host")
            if dst not in self._slots:
                raise RequestError(f"destination {dst} is not an attached host")
            if src == dst:
                raise RequestError(f"pair {src} -> {dst} names the same host twice")
            if not isinstance(shape, LinkShape):
                raise RequestError(f"the shape of {src} -> {dst} is not a LinkShape: {shape!r}")

    def desired(self, matrix: Mapping[Pair, LinkShape]) -> dict[IPv4Address, tuple[Spec, ...]]:
        """The specs per host for `matrix` (every attached host, shaped or not; none for
        an unshaped host that no shape has needed yet)."""
        per_src: dict[IPv4Address, dict[IPv4Address, LinkShape]] = {ip: {} for ip in self._hosts}
        for (src, dst), shape in matrix.items():
            per_src[src][dst] = shape
        return {
            src: render(shapes, self._slots, leaves=self.leaves)
            if shapes or src in self._egress else ()
            for src, shapes in per_src.items()
        }

    def apply(self, matrix: Mapping[Pair, LinkShape]) -> None:
        """Make `matrix` true; on a refusal restore every host touched, then raise."""
        return self._confined(self._apply, matrix)

    def _apply(self, matrix: Mapping[Pair, LinkShape]) -> None:
        self.validate(matrix)
        wanted = self.desired(matrix)
        done: list[tuple[_Egress, tuple[Spec, ...]]] = []
        opening = sum(1 for src, specs in wanted.items() if specs and src not in self._egress)
        if opening:
            _ensure_fd_room(_FDS_PER_HOST * opening)
        for src, specs in wanted.items():
            if not specs and src not in self._egress:
                continue
            try:
                egress = self._open(self._hosts[src])
            except BaseException:
                self._roll_back(None, (), done)
                raise
            old = egress.specs
            if old == specs:
                continue
            try:
                egress.run(diff(old, specs))
            except BaseException:
                self._roll_back(egress, old, done)
                raise
            egress.specs = specs
            done.append((egress, old))

    def _roll_back(
        self,
        failed: _Egress | None,
        old: tuple[Spec, ...],
        done: list[tuple[_Egress, tuple[Spec, ...]]],
    ) -> None:
        # the failing host is half-changed, and what the kernel holds is unknown: rebuild it
        undo = done if failed is None else [(failed, old), *done]
        for egress, specs in undo:
            try:
                egress.reset(specs)
            except NetworkError:
                egress.specs = ()  # the rollback failed too; the next apply rebuilds it

    def stats(self) -> dict[Pair, LinkStats]:
        """Counters of each shaped direction: packets and bytes sent through its class,
        drops by the class including its leaf's (netem's loss counts as drops)."""
        return self._confined(self._stats)

    def _stats(self) -> dict[Pair, LinkStats]:
        out: dict[Pair, LinkStats] = {}
        for src, egress in self._egress.items():
            minors = {s.minor: s.dst for s in egress.specs if isinstance(s, DstFilter)}
            if not minors:
                continue
            counters: dict[int, list[int]] = {m: [0, 0, 0] for m in minors}
            try:
                classes = egress.ipr.get_classes(egress.index)
                qdiscs = egress.ipr.get_qdiscs(egress.index)
            except NetlinkError as exc:
                raise NetworkError(
                    f"reading tc counters of {egress.host.name} failed: {exc}"
                ) from None
            for msg in classes:
                minor = msg["handle"] & 0xFFFF
                if minor in counters and minor != DEFAULT_MINOR:
                    basic, drops = _counters(msg)
                    counters[minor][0] += basic[0]
                    counters[minor][1] += basic[1]
                    counters[minor][2] += drops
            for msg in qdiscs:
                minor = msg["handle"] >> 16
                if minor in counters and msg.get_attr("TCA_KIND") == "netem":
                    # htb counts a drop its leaf reports (netem's loss too) in the class's
                    # own drops; the max guards against a kernel that does not
                    counters[minor][2] = max(counters[minor][2], _counters(msg)[1])
            for minor, (packets, nbytes, drops) in counters.items():
                out[(src, minors[minor])] = LinkStats(packets=packets, bytes=nbytes, drops=drops)
        return out

    def close(self) -> None:
        """Remove the layout from every host and close the sockets; safe to call twice."""
        return self._confined(self._close)

    def _close(self) -> None:
        egresses, self._egress = list(self._egress.values()), {}
        self._slots = {}
        self._hosts = {}
        for egress in egresses:
            egress.close()


_FDS_PER_HOST = 4  # an IPRoute holds its netlink socket and an event loop's descriptors


def _ensure_fd_room(extra: int) -> None:
    """Raise the soft limit on open files (up to the hard one) when `extra` more descriptors
    would not fit: a few hundred hosts pass the common default of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = len(os.listdir("/proc/self/fd")) + extra + 64
    if soft == resource.RLIM_INFINITY or need <= soft:
        return
    if hard != resource.RLIM_INFINITY and need > hard:
        raise NetworkError(
            f"shaping these hosts needs about {need} open files; the hard limit is {hard} "
            "(raise it with ulimit -Hn)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _counters(msg: object) -> tuple[tuple[int, int], int]:
    """((packets, bytes), drops) of a tc message's TCA_STATS2."""
    stats2 = msg.get_attr("TCA_STATS2")  # type: ignore[attr-defined]
    if stats2 is None:
        return (0, 0), 0
    basic = stats2.get_attr("TCA_STATS_BASIC") or {}
    queue = stats2.get_attr("TCA_STATS_QUEUE") or {}
    return (int(basic.get("packets", 0)), int(basic.get("bytes", 0))), int(queue.get("drops", 0))
