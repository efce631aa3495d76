"""One pod's egress, shaped from inside the pod: the netem policy of the run's hosts (pure),
narrowed to this pod as source, made true on its interface with netem's tc layout (kernel
backend: htb + netem leaves per destination; userspace: htb caps only, the rest held by
netem's userspace engine on the pod's OUTPUT hook) and its drops as iptables rules in
OUTPUT."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from netem import LinkShape
from netem._backends._tc_spec import FIRST_SLOT, Spec, diff, render, request
from netem._policy import Policy, parse_request

if TYPE_CHECKING:
    from netem._userspace import Engine

DROP_CHAIN = "HARNESS-DROP"  # in OUTPUT: the instance's own requests' drops
CUT_CHAIN = "HARNESS-CUT"  # in INPUT: faults' cuts, silent for the sender as in the hub


def egress_shapes(me: IPv4Address, policy: Policy, hosts: Mapping[IPv4Address, int]
                  ) -> dict[IPv4Address, LinkShape]:
    """`policy` narrowed to `me` as source: each destination pod's shape."""
    return {dst: s for (src, dst), s in policy.matrix(hosts).items() if src == me}


def egress_specs(me: IPv4Address, policy: Policy, hosts: Mapping[IPv4Address, int],
                 *, leaves: bool = True) -> tuple[Spec, ...]:
    """The tc layout making `policy` true on `me`'s egress; `hosts` maps every known pod's
    address to its instance's global seq (its fixed slot). Without `leaves` only the
    bandwidth caps (the userspace engine does the rest)."""
    slots = {ip: FIRST_SLOT + seq for ip, seq in hosts.items()}
    return render(egress_shapes(me, policy, hosts), slots, leaves=leaves)


def drop_script(me: IPv4Address, policy: Policy, hosts: Mapping[IPv4Address, int],
                cut_from: Iterable[IPv4Address] = ()) -> str:
    """iptables-restore text making exactly `me`'s dropped destinations dropped (the
    policy's) and the sources a fault cut off from `me` dropped on arrival. (A drop in
    OUTPUT fails the sender's send with EPERM; a cut must look like a silent network.)"""
    lines = ["*filter", f":{DROP_CHAIN} - [0:0]", f":{CUT_CHAIN} - [0:0]"]
    lines += [f"-A {DROP_CHAIN} -d {dst}/32 -j DROP"
              for src, dst in sorted(policy.drops(hosts)) if src == me]
    lines += [f"-A {CUT_CHAIN} -s {src}/32 -j DROP" for src in sorted(set(cut_from))]
    return "\n".join([*lines, "COMMIT", ""])


class PodEgress:
    """This pod's interface, changed only where the wanted layout differs; with `engine`
    (started, on this namespace's OUTPUT hook) delays and losses are the engine's."""

    def __init__(self, me: IPv4Address, ifname: str = "eth0",
                 engine: Engine | None = None) -> None:
        from pyroute2 import IPRoute

        self.me = me
        self.engine = engine
        self.ipr = IPRoute()
        self.index = self.ipr.link_lookup(ifname=ifname)[0]
        self.specs: tuple[Spec, ...] = ()
        self.policy = Policy()
        self.hosts: dict[IPv4Address, int] = {}
        self.cut_from: set[IPv4Address] = set()  # sources a fault cut off from this pod
        subprocess.run(["iptables-restore", "--noflush"], check=True, text=True,
                       input=f"*filter\n:{DROP_CHAIN} - [0:0]\n:{CUT_CHAIN} - [0:0]\n"
                             f"-I OUTPUT 1 -j {DROP_CHAIN}\n-I INPUT 1 -j {CUT_CHAIN}\n"
                             "COMMIT\n")

    def request(self, config: Any) -> None:
        """The instance's `network` request (RequestError if it is bad)."""
        self.policy = self.policy.with_request(
            self.me, parse_request(config, self.me, dict.fromkeys(self.hosts)))
        self.apply()

    def apply(self) -> None:
        """Make the policy over the hosts known now true."""
        wanted = egress_specs(self.me, self.policy, self.hosts, leaves=self.engine is None)
        for op in diff(self.specs, wanted):
            command, kind, handle, kwargs = request(op)
            self.ipr.tc(command, kind, self.index, handle, **kwargs)
        self.specs = wanted
        if self.engine is not None:
            shapes = egress_shapes(self.me, self.policy, self.hosts)
            self.engine.update({(self.me, dst): s for dst, s in shapes.items()})
        subprocess.run(["iptables-restore", "--noflush"], check=True, text=True,
                       input=drop_script(self.me, self.policy, self.hosts, self.cut_from))
