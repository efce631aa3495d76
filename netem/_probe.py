"""What the running kernel can do for shaping, found by really trying it.

Each probe builds a throw-away network namespace holding one veth pair, tries the feature
there and removes the namespace; the host's own namespace is never touched. Answers are
cached for the life of the process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeResult:
    """One capability: whether it works and, when not, why."""

    name: str
    ok: bool
    detail: str = ""


@contextmanager
def _scratch_namespace() -> Iterator[tuple[IPRoute, int]]:
    """A fresh namespace with veth `p0`/`p1`, both up; yields (rtnl socket, index of p0)."""
    name = f"netem-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    netns.create(name)
    try:
        with IPRoute(netns=name, flags=0) as ipr:
            ipr.link("add", ifname="p0", kind="veth", peer={"ifname": "p1"})
            index = ipr.link_lookup(ifname="p0")[0]
            ipr.link("set", index=index, state="up")
            yield ipr, index
    finally:
        netns.remove(name)


def _try(name: str, action: Callable[[IPRoute, int], None]) -> ProbeResult:
    if os.geteuid() != 0:
        return ProbeResult(name, False, "needs root to create a network namespace")
    try:
        with _scratch_namespace() as (ipr, index):
            action(ipr, index)
    except NetlinkError as exc:
        return ProbeResult(name, False, f"kernel refused it: {os.strerror(exc.code)}")
    except OSError as exc:
        return ProbeResult(name, False, f"{type(exc).__name__}: {exc}")
    return ProbeResult(name, True)


def _add_netem(ipr: IPRoute, index: int) -> None:
    ipr.tc("add", "netem", index, 0x10000, delay=1000)


def _add_htb(ipr: IPRoute, index: int) -> None:
    ipr.tc("add", "htb", index, 0x10000, default=1)
    ipr.tc("add-class", "htb", index, 0x10001, parent=0x10000, rate="1mbit")
    ipr.tc(
        "add-filter",
        "u32",
        index,
        parent=0x10000,
        prio=1,
        protocol=0x0800,
        target=0x10001,
        keys=["0xc6120001/0xffffffff+16"],
    )


def _add_tbf(ipr: IPRoute, index: int) -> None:
    ipr.tc("add", "tbf", index, 0x10000, rate="1mbit", burst=16000, latency=50_000)


@functools.cache
def probe_sch_netem() -> ProbeResult:
    """Can a netem qdisc be added (sch_netem built in or loadable)?"""
    return _try("sch_netem", _add_netem)


@functools.cache
def probe_htb_u32() -> ProbeResult:
    """Can an htb root with a class and a u32 filter on a destination be added?"""
    return _try("htb+u32", _add_htb)


@functools.cache
def probe_tbf() -> ProbeResult:
    """Can a tbf qdisc be added?"""
    return _try("tbf", _add_tbf)


@functools.cache
def probe_nfqueue() -> ProbeResult:
    """Can an iptables rule with an NFQUEUE target be added (the userspace engine's hook)?"""
    name = "nfqueue"
    if os.geteuid() != 0:
        return ProbeResult(name, False, "needs root to create a network namespace")
    iptables = shutil.which("iptables")
    if iptables is None:
        return ProbeResult(name, False, "iptables not found")
    ns = f"netem-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    netns.create(ns)
    try:
        rule = ["-A", "OUTPUT", "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"]
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, iptables, "-w", *rule],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        netns.remove(ns)
    if proc.returncode != 0:
        return ProbeResult(name, False, f"iptables refused it: {proc.stderr.strip()}")
    return ProbeResult(name, True)


def has_sch_netem() -> bool:
    """True when the kernel can shape with netem (the kernel backend can be used)."""
    return probe_sch_netem().ok


def probe_all() -> list[ProbeResult]:
    """Every probe, for a doctor command."""
    return [probe_sch_netem(), probe_htb_u32(), probe_tbf(), probe_nfqueue()]
