"""A throw-away hub-and-hosts topology for the engine's live tests and its benchmark.

Not the product's network (that is netem.Network): just enough to measure the engine.
Every interface is created inside the namespaces made here, never in the caller's own;
`close()` deletes the namespaces, which takes everything in them along.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from ipaddress import IPv4Address
from types import TracebackType

from netem._names import host_mac
from netem._userspace._rules import NETNS_DIR


class TestbedError(RuntimeError):
    """The topology could not be built."""


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise TestbedError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class Testbed:
    """A bridge in a hub namespace joining `hosts` namespaces, 198.18.0.1, .2, ..."""

    __test__ = False  # not a pytest test class

    def __init__(self, prefix: str = "ueng", hosts: int = 2) -> None:
        self.prefix = f"{prefix}-{os.getpid():x}{secrets.token_hex(2)}"
        self.hub = f"{self.prefix}-hub"
        self.hosts = [f"{self.prefix}-h{i + 1}" for i in range(hosts)]
        self.ips = [IPv4Address(f"198.18.0.{i + 1}") for i in range(hosts)]
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)

    def _build(self) -> None:
        self._netns(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        self.exec(self.hub, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
        for i, (host, ip) in enumerate(zip(self.hosts, self.ips, strict=True)):
            self._netns(host)
            port = f"p{i + 1}"
            _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "address", host_mac(ip), "netns", host)  # fmt: skip
            _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
            _ip("-n", host, "addr", "add", f"{ip}/24", "dev", "eth0")
            _ip("-n", host, "link", "set", "eth0", "up")
            _ip("-n", host, "link", "set", "lo", "up")
        # Permanent neighbours, as netem.Network gives its hosts: no ARP, and no entry in the
        # kernel's neighbour table that every namespace shares (other runs may have filled it).
        for host, ip in zip(self.hosts, self.ips, strict=True):
            for peer in self.ips:
                if peer != ip:
                    _ip("-n", host, "neigh", "replace", str(peer), "lladdr", host_mac(peer),
                        "dev", "eth0", "nud", "permanent")  # fmt: skip

    def exec(self, netns: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a command in one of the namespaces and wait for it."""
        proc = subprocess.run(
            ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise TestbedError(f"{' '.join(argv)} in {netns}: {proc.stderr.strip()}")
        return proc

    def popen(self, netns: str, argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        """Start a command in one of the namespaces."""
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            ["ip", "netns", "exec", netns, *argv], text=True, **kwargs
        )

    def close(self) -> None:
        """Delete every namespace made here; safe twice."""
        while self._made:
            name = self._made.pop()
            with contextlib.suppress(TestbedError):
                _ip("netns", "del", name)

    def leftovers(self) -> list[str]:
        """Namespaces of this testbed still present (empty after close)."""
        return sorted(p.name for p in NETNS_DIR.glob(f"{self.prefix}-*"))

    def __enter__(self) -> Testbed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
