"""The copy port: where a hub's engine sends duplicates' copies so that they cross the
bridge's rules as the packets it lets go do.

A copy cannot be given back to the queue (NFQUEUE has a verdict per packet, not new
packets), so the engine sends it itself, from an AF_PACKET socket. Out of the packet's own
bridge port it would skip FORWARD, and a partition would not drop it. Out of `COPY_DEV`,
a veth whose peer `COPY_PORT` is a port of the hub's bridge, it is bridged like any
packet: FORWARD's rules see it at its due time, and its mark (`RECHECK_MARK`) keeps the
jump to the queue from taking it again.
"""

from __future__ import annotations

import json

from netem._userspace._rules import RulesError, run_in, why_failed

COPY_DEV = "netem-copies"
COPY_PORT = "netem-copies-p"


def _ip(netns: str | None, *args: str) -> str:
    proc = run_in(netns, ["ip", *args])
    if proc.returncode != 0:
        raise RulesError(f"ip {' '.join(args)} in {netns or 'this namespace'}: "
                         f"{why_failed(proc)}")
    return proc.stdout


def add(netns: str | None) -> str | None:
    """Make the copy port on the namespace's bridge, up; its name, or None when the
    namespace has no bridge or several (copies then leave by their packet's port). Its
    two ends take the kernel's next free indexes, below netem's hub ports
    (`netem._build._hub_port`) in a hub."""
    bridges = json.loads(_ip(netns, "-j", "link", "show", "type", "bridge") or "[]")
    if len(bridges) != 1:
        return None
    proc = run_in(netns, ["ip", "-batch", "-"], "\n".join([
        f"link add {COPY_DEV} type veth peer name {COPY_PORT}",
        f"link set {COPY_PORT} master {bridges[0]['ifname']} up",
        f"link set {COPY_DEV} up",
    ]) + "\n")  # fmt: skip
    if proc.returncode != 0 and "File exists" in proc.stderr and _exists(netns):
        return COPY_DEV  # left by an engine that was killed
    if proc.returncode != 0:
        remove(netns)
        raise RulesError(f"cannot make the copies' port {COPY_DEV}: {why_failed(proc)}")
    return COPY_DEV


def _exists(netns: str | None) -> bool:
    return run_in(netns, ["ip", "link", "show", COPY_DEV]).returncode == 0


def remove(netns: str | None) -> None:
    """Remove the copy port (both ends) if it is there."""
    proc = run_in(netns, ["ip", "link", "del", COPY_DEV])
    if proc.returncode != 0 and _exists(netns):
        raise RulesError(f"cannot remove the copies' port {COPY_DEV}: {why_failed(proc)}")
