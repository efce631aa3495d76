"""`Host`: one emulated machine, a network namespace with one interface on the data network."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

from netem._backends._base import HostInfo
from netem._names import netns_path


@dataclasses.dataclass(frozen=True, slots=True)
class Host:
    """One host of a `Network`.

    name: `h<N>`, unique in the network; number: N (1-based).
    netns: namespace name under /run/netns; netns_path: its full path (for setns/nsenter).
    ip: address on the data network; network: the data subnet (its only route).
    ifname: the interface inside the host's namespace; hub_ifname: its peer in the hub.
    """

    name: str
    number: int
    netns: str
    ip: IPv4Address
    network: IPv4Network
    ifname: str
    hub_ifname: str

    @property
    def netns_path(self) -> str:
        return netns_path(self.netns)

    def info(self) -> HostInfo:
        """The view of this host a shaping backend takes."""
        return HostInfo(
            name=self.name,
            netns=self.netns,
            ip=self.ip,
            ifname=self.ifname,
            hub_ifname=self.hub_ifname,
        )
