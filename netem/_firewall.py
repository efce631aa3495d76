"""Partitions and drop rules: iptables rules in the hub namespace.

Bridged IPv4 traffic passes the hub's FORWARD chain (br_netfilter). Its first rule jumps to
`NETEM-DROP`, which jumps per source address to a chain of its own (`NETEM-D-<hex address>`)
holding that source's cut destinations. The userspace shaper owns `NETEM-QUEUE`, whose jump
it puts before ours: the packets it delays meet our drops when it lets them go, marked,
as the kernel's netem delays them on their source's interface before they reach the hub.
Destinations with consecutive addresses (hosts are numbered) share one `iprange` rule, so a
partition of two halves costs one rule per source, and a packet meets at most (#sources +
#ranges of its source) rules. Each change is one
`iptables-restore --noflush` transaction: applied whole or not at all.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from ipaddress import IPv4Address

from netem._backends._base import Pair
from netem._errors import NetworkError
from netem._policy import grouped

DROP_CHAIN = "NETEM-DROP"
QUEUE_CHAIN = "NETEM-QUEUE"  # owned by the userspace backend; named here only to document it


def sub_chain(src: IPv4Address) -> str:
    """The per-source chain's name (16 characters; iptables allows 28)."""
    return f"NETEM-D-{int(src):08x}"


def render(
    drops: Iterable[Pair], old_sources: Iterable[IPv4Address]
) -> tuple[str, set[IPv4Address]]:
    """The iptables-restore text that makes exactly `drops` dropped, and the sources that
    have a chain afterwards (pass them back as `old_sources` next time)."""
    by_src = grouped(drops)
    sources = list(by_src)
    gone = sorted(set(old_sources) - set(by_src), key=int)
    # Declaring an existing chain under --noflush flushes it.
    lines = ["*filter", f":{DROP_CHAIN} - [0:0]"]
    lines += [f":{sub_chain(src)} - [0:0]" for src in [*sources, *gone]]
    for src in sources:
        chain = sub_chain(src)
        lines.append(f"-A {DROP_CHAIN} -s {src}/32 -j {chain}")
        for first, last in by_src[src]:
            if first == last:
                lines.append(f"-A {chain} -d {first}/32 -j DROP")
            else:
                lines.append(f"-A {chain} -m iprange --dst-range {first}-{last} -j DROP")
    lines += [f"-X {sub_chain(src)}" for src in gone]
    lines += ["COMMIT", ""]
    return "\n".join(lines), set(sources)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NetworkError(f"{name} not found (Debian: apt-get install {package})")
    return path


class Firewall:
    """The drop rules of one hub namespace."""

    def __init__(self, netns_path: str) -> None:
        self._netns_path = netns_path
        self._restore = _tool("iptables-restore", "iptables")
        self._nsenter = _tool("nsenter", "util-linux")
        self._sources: set[IPv4Address] = set()

    def setup(self) -> None:
        """Create the chain and the jump to it, as the first rule of FORWARD."""
        self._run(f"*filter\n:{DROP_CHAIN} - [0:0]\n-I FORWARD 1 -j {DROP_CHAIN}\nCOMMIT\n")

    def apply(self, drops: Iterable[Pair]) -> None:
        """Make exactly the directions in `drops` dropped."""
        script, sources = render(drops, self._sources)
        self._run(script)
        self._sources = sources

    def _run(self, script: str) -> None:
        proc = subprocess.run(
            [self._nsenter, f"--net={self._netns_path}", self._restore, "--noflush", "-w", "10"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["no output"])[0]
            raise NetworkError(f"iptables-restore in the hub failed: {detail}")
