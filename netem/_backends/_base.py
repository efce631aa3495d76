"""The interface every shaping backend implements (kernel tc, userspace NFQUEUE)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from typing import ClassVar, Protocol

from netem._shape import LinkShape

Pair = tuple[IPv4Address, IPv4Address]
"""(source address, destination address): one direction between two hosts."""


@dataclasses.dataclass(frozen=True, slots=True)
class HostInfo:
    """What a backend needs to know of one emulated host."""

    name: str  # e.g. "h3"
    netns: str  # network namespace name, under /run/netns
    ip: IPv4Address  # address on the data network
    ifname: str  # the host's interface inside its namespace
    hub_ifname: str  # the peer end of that interface, inside the hub namespace


@dataclasses.dataclass(frozen=True, slots=True)
class LinkStats:
    """Counters of one direction, as far as the backend can tell."""

    packets: int = 0
    bytes: int = 0
    drops: int = 0
    queue_delay_ms: float | None = None  # mean time a packet waited, where measured


class Backend(Protocol):
    """Shapes the traffic between hosts; drops for partitions are not its job."""

    name: ClassVar[str]

    def attach(self, hub_netns: str, hosts: Sequence[HostInfo]) -> None:
        """Prepare to shape traffic among `hosts`, joined in `hub_netns`."""

    def apply(self, matrix: Mapping[Pair, LinkShape]) -> None:
        """Make the whole desired state true: each listed direction gets its shape, every
        other direction none. Idempotent; changes only what differs from the last call."""

    def stats(self) -> Mapping[Pair, LinkStats]:
        """Current counters per shaped direction."""

    def close(self) -> None:
        """Remove everything the backend created; safe to call twice."""
