"""The tc layout of one host's egress interface, as plain data, and the changes between two.

Layout (handles in tc notation)::

    root htb 1:  default 1:1
     |- class 1:1      uncapped, no netem        <- every destination without a shape
     |- class 1:<m>    rate = bandwidth_bps (or uncapped)
     |   `- netem <m>: delay/jitter/loss/corrupt/duplicate/reorder   (kernel backend only)
     `- u32 filter, prio <m>: ip dst <destination>/32 -> 1:<m>

`m` is the destination's slot: a number fixed per destination for the life of a backend
(its position in the attached hosts, plus FIRST_SLOT), so a changed shape touches only that
destination's class, leaf and filter. Everything here is pure; `_tc_netlink` sends it.
"""

from __future__ import annotations

import dataclasses
import math
import socket
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any, Literal

from netem._shape import LinkShape

UNCAPPED_BPS = 10_000_000_000
"""The rate of the default class and of classes for destinations without a bandwidth cap."""

ROOT = 0x10000  # handle 1:
DEFAULT_MINOR = 1  # class 1:1
FIRST_SLOT = 0x10
MAX_SLOT = 0xFFFF

ETH_P_IP = 0x0800
_MTU = 1514
_MAX_QUANTUM = 200_000
_BASE_LIMIT = 1000  # netem's default queue limit, in packets


@dataclasses.dataclass(frozen=True, slots=True)
class HtbRoot:
    """The root htb qdisc (handle 1:) sending unclassified packets to class 1:<default_minor>."""

    default_minor: int = DEFAULT_MINOR


@dataclasses.dataclass(frozen=True, slots=True)
class HtbClass:
    """Class 1:<minor> under the root, capped at `rate_bps` (ceil = rate: no borrowing)."""

    minor: int
    rate_bps: int


@dataclasses.dataclass(frozen=True, slots=True)
class NetemLeaf:
    """A netem qdisc <minor>: under class 1:<minor>."""

    minor: int
    delay_us: int
    jitter_us: int
    loss_pct: float
    corrupt_pct: float
    duplicate_pct: float
    reorder_pct: float
    limit: int


@dataclasses.dataclass(frozen=True, slots=True)
class DstFilter:
    """A u32 filter at prio <minor> on the root: packets to `dst` go to class 1:<minor>."""

    minor: int
    dst: IPv4Address


Spec = HtbRoot | HtbClass | NetemLeaf | DstFilter
Action = Literal["add", "change", "delete"]


@dataclasses.dataclass(frozen=True, slots=True)
class Op:
    """One change to make: add, change (replace in place) or delete a spec."""

    action: Action
    spec: Spec


def netem_limit(shape: LinkShape) -> int:
    """Packets netem may hold: its default 1000 plus what the delay keeps in flight at the
    link's rate (1500-byte packets), so a long fat link is not cut by the queue limit."""
    rate = shape.bandwidth_bps or UNCAPPED_BPS
    in_flight = rate / 8 / 1500 * (shape.latency_ms + shape.jitter_ms) / 1000
    return min(_BASE_LIMIT + math.ceil(in_flight), 2**31 - 1)


def render(
    shapes: Mapping[IPv4Address, LinkShape],
    slots: Mapping[IPv4Address, int],
    *,
    leaves: bool,
) -> tuple[Spec, ...]:
    """The specs making `shapes` (destination -> shape) true on one host's egress.

    leaves=True (kernel backend): a class for every shaped destination, with a netem leaf
    where the shape needs more than a rate. leaves=False (userspace backend): classes only,
    and only for destinations with a bandwidth cap; the rest is the delay engine's job.
    Identity shapes get nothing. Ordered so that adding them in order works.
    """
    classes: list[Spec] = []
    netems: list[Spec] = []
    filters: list[Spec] = []
    for dst in sorted(shapes):
        shape = shapes[dst]
        wanted = shape.bandwidth_bps is not None or (leaves and shape.needs_delay_engine)
        if not wanted:
            continue
        minor = slots[dst]
        classes.append(HtbClass(minor, shape.bandwidth_bps or UNCAPPED_BPS))
        if leaves and shape.needs_delay_engine:
            netems.append(
                NetemLeaf(
                    minor=minor,
                    delay_us=round(shape.latency_ms * 1000),
                    jitter_us=round(shape.jitter_ms * 1000),
                    loss_pct=shape.loss_pct,
                    corrupt_pct=shape.corrupt_pct,
                    duplicate_pct=shape.duplicate_pct,
                    reorder_pct=shape.reorder_pct,
                    limit=netem_limit(shape),
                )
            )
        filters.append(DstFilter(minor, dst))
    return (HtbRoot(), HtbClass(DEFAULT_MINOR, UNCAPPED_BPS), *classes, *netems, *filters)


def _key(spec: Spec) -> tuple[str, int]:
    if isinstance(spec, HtbRoot):
        return ("root", 0)
    return (type(spec).__name__, spec.minor)


_ADD_ORDER = {"HtbRoot": 0, "HtbClass": 1, "NetemLeaf": 2, "DstFilter": 3, "root": 0}


def diff(old: Sequence[Spec], new: Sequence[Spec]) -> list[Op]:
    """The ops turning `old` into `new`: deletes (filters, leaves, then classes), changes,
    then adds (classes, leaves, then filters). Equal specs give no op."""
    old_by = {_key(s): s for s in old}
    new_by = {_key(s): s for s in new}
    deletes: list[Op] = []
    changes: list[Op] = []
    adds: list[Op] = []
    for key, spec in old_by.items():
        if key not in new_by:
            deletes.append(Op("delete", spec))
    for key, spec in new_by.items():
        before = old_by.get(key)
        if before is None:
            adds.append(Op("add", spec))
        elif before != spec:
            if isinstance(spec, DstFilter | HtbRoot):
                # a filter cannot be changed in place by prio alone: replace it whole
                deletes.append(Op("delete", before))
                adds.append(Op("add", spec))
            else:
                changes.append(Op("change", spec))

    def order(op: Op) -> tuple[int, int]:
        kind = _key(op.spec)[0]
        return (_ADD_ORDER[kind], _key(op.spec)[1])

    deletes.sort(key=order, reverse=True)
    adds.sort(key=order)
    return [*deletes, *changes, *adds]


def _rate(bps: int) -> dict[str, Any]:
    rate_bytes = max(1, bps // 8)
    return {
        "rate": f"{bps}bit",
        "ceil": f"{bps}bit",
        # a burst of one timer tick (1 ms) at the rate, at least one full packet
        "burst": max(_MTU, rate_bytes // 1000),
        "cburst": max(_MTU, rate_bytes // 1000),
        "quantum": min(_MAX_QUANTUM, max(_MTU, rate_bytes // 10)),
    }


def filter_info(prio: int) -> int:
    """tcm_info of a filter at `prio` for IPv4: prio in the high 16 bits, the protocol in
    network byte order in the low 16 (as the kernel reads them)."""
    return (prio << 16) | socket.htons(ETH_P_IP)


Request = tuple[str, str | None, int, dict[str, Any]]
"""(pyroute2 tc command, kind, handle, keyword arguments)."""


def request(op: Op) -> Request:
    """The `IPRoute.tc(command, kind, index, handle, **kwargs)` call for `op` (index apart)."""
    spec, action = op.spec, op.action
    if isinstance(spec, HtbRoot):
        if action == "delete":
            return ("del", None, ROOT, {"parent": 0xFFFFFFFF})
        return ("add", "htb", ROOT, {"default": spec.default_minor})
    if isinstance(spec, HtbClass):
        handle = ROOT | spec.minor
        if action == "delete":
            return ("del-class", None, handle, {"parent": ROOT})
        command = "add-class" if action == "add" else "change-class"
        return (command, "htb", handle, {"parent": ROOT, **_rate(spec.rate_bps)})
    if isinstance(spec, NetemLeaf):
        handle = spec.minor << 16
        parent = ROOT | spec.minor
        if action == "delete":
            return ("del", None, handle, {"parent": parent})
        kwargs: dict[str, Any] = {
            "parent": parent,
            "delay": spec.delay_us,
            "jitter": spec.jitter_us,
            "loss": spec.loss_pct,
            "duplicate": spec.duplicate_pct,
            "limit": spec.limit,
        }
        if spec.corrupt_pct:
            kwargs["prob_corrupt"] = spec.corrupt_pct
        if spec.reorder_pct:
            kwargs["prob_reorder"] = spec.reorder_pct
        return ("add" if action == "add" else "replace", "netem", handle, kwargs)
    # DstFilter
    if action == "delete":
        # pyroute2 packs prio and protocol into tcm_info only for a filter kind it is
        # given (and u32's needs a target), and the kernel flushes every filter of the
        # parent when tcm_info's prio is 0: pack it here, so only this prio goes
        return ("del-filter", None, 0, {"parent": ROOT, "info": filter_info(spec.minor)})
    base = {"parent": ROOT, "prio": spec.minor, "protocol": ETH_P_IP}
    key = f"0x{int(spec.dst):08x}/0xffffffff+16"  # IPv4 destination address: offset 16
    return ("add-filter", "u32", 0, {**base, "target": ROOT | spec.minor, "keys": [key]})
