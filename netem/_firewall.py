"""Partitions and drop rules: iptables rules in the hub namespace.

Bridged IPv4 traffic passes the hub's FORWARD chain (br_netfilter). Its first rule jumps to
`NETEM-DROP`, which holds one DROP rule per cut direction; the userspace shaper owns the
chain `NETEM-QUEUE`, jumped to after ours. Each change rewrites `NETEM-DROP` in a single
`iptables-restore --noflush` call, so a change is applied whole or not at all.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

from netem._backend import Pair
from netem._build_errors import NetworkError

DROP_CHAIN = "NETEM-DROP"
QUEUE_CHAIN = "NETEM-QUEUE"  # owned by the userspace backend; named here only to document it


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NetworkError(f"{name} not found (Debian: apt-get install iptables)")
    return path


class Firewall:
    """The drop rules of one hub namespace."""

    def __init__(self, netns_path: str) -> None:
        self._netns_path = netns_path
        self._restore = _tool("iptables-restore")
        self._nsenter = shutil.which("nsenter")
        if self._nsenter is None:
            raise NetworkError("nsenter not found (Debian: apt-get install util-linux)")

    def setup(self) -> None:
        """Create the chain and the jump to it, as the first rule of FORWARD."""
        self._run(f"*filter\n:{DROP_CHAIN} - [0:0]\n-I FORWARD 1 -j {DROP_CHAIN}\nCOMMIT\n")

    def apply(self, drops: Iterable[Pair]) -> None:
        """Make exactly the directions in `drops` dropped."""
        lines = ["*filter", f":{DROP_CHAIN} - [0:0]"]  # declaring the chain flushes it
        lines += [f"-A {DROP_CHAIN} -s {s}/32 -d {d}/32 -j DROP" for s, d in sorted(drops)]
        lines += ["COMMIT", ""]
        self._run("\n".join(lines))

    def _run(self, script: str) -> None:
        assert self._nsenter is not None
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
