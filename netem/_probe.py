"""What the running kernel can do for shaping, found by really trying it.

Each probe runs `ip`/`tc`/`iptables` in a throw-away, unnamed network namespace holding one
veth pair (`unshare --net`), so the host's own namespace is never touched and nothing is
left behind even if the probe is killed. Answers are cached for the life of the process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeResult:
    """One capability: whether it works and, when not, why."""

    name: str
    ok: bool
    detail: str = ""


def _in_scratch_namespace(name: str, script: str) -> ProbeResult:
    """Run `script` (sh) in a fresh, unnamed network namespace holding veth p0/p1.

    The namespace belongs to the `unshare` process alone and vanishes with it, however the
    probe ends; not root, a user namespace is made too (`unshare -Urn`).
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return ProbeResult(name, False, "unshare (util-linux) not found")
    prefix = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "-Urn"]
    setup = "ip link add p0 type veth peer name p1 && ip link set p0 up && "
    try:
        proc = subprocess.run(
            [*prefix, "sh", "-c", setup + script],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ProbeResult(name, False, f"{type(exc).__name__}: {exc}")
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split()) or f"exit code {proc.returncode}"
        return ProbeResult(name, False, detail)
    return ProbeResult(name, True)


@functools.cache
def probe_sch_netem() -> ProbeResult:
    """Can a netem qdisc be added (sch_netem built in or loadable)?"""
    return _in_scratch_namespace("sch_netem", "tc qdisc add dev p0 root netem delay 1ms")


@functools.cache
def probe_htb_u32() -> ProbeResult:
    """Can an htb root with a class and a u32 filter on a destination be added?"""
    return _in_scratch_namespace(
        "htb+u32",
        "tc qdisc add dev p0 root handle 1: htb default 1 && "
        "tc class add dev p0 parent 1: classid 1:1 htb rate 1mbit && "
        "tc filter add dev p0 parent 1: protocol ip prio 1 u32 "
        "match ip dst 198.18.0.1/32 flowid 1:1",
    )


@functools.cache
def probe_tbf() -> ProbeResult:
    """Can a tbf qdisc be added?"""
    return _in_scratch_namespace(
        "tbf", "tc qdisc add dev p0 root tbf rate 1mbit burst 16kb latency 50ms"
    )


@functools.cache
def probe_nfqueue() -> ProbeResult:
    """Can an iptables rule with an NFQUEUE target be added (the userspace engine's hook)?"""
    if shutil.which("iptables") is None:
        return ProbeResult("nfqueue", False, "iptables not found")
    return _in_scratch_namespace(
        "nfqueue", "iptables -w -A OUTPUT -j NFQUEUE --queue-num 0 --queue-bypass"
    )


def has_sch_netem() -> bool:
    """True when the kernel can shape with netem (the kernel backend can be used)."""
    return probe_sch_netem().ok


def probe_all(*, fresh: bool = False) -> list[ProbeResult]:
    """Every probe, for a doctor command; `fresh` tries again rather than answer from the
    cache (after something was installed)."""
    probes = (probe_sch_netem, probe_htb_u32, probe_tbf, probe_nfqueue)
    if fresh:
        for probe in probes:
            probe.cache_clear()
    return [probe() for probe in probes]
