"""The interface every shaping backend implements (kernel tc, userspace NFQUEUE)."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any, ClassVar, Protocol

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


@dataclasses.dataclass(frozen=True, slots=True)
class BackendFailure:
    """A backend that stopped shaping on its own, e.g. its engine process died."""

    backend: str  # the backend's name, e.g. "userspace"
    component: str  # what died, e.g. "the userspace shaping engine"
    pid: int | None
    status: int | None  # its exit code, or minus the signal that ended it
    effect: str  # what traffic does since, e.g. "links pass unshaped"

    @property
    def signal(self) -> str | None:
        """The name of the signal that ended it, if one did (e.g. "SIGKILL")."""
        if self.status is None or self.status >= 0:
            return None
        try:
            return signal.Signals(-self.status).name
        except ValueError:
            return f"signal {-self.status}"

    def describe(self) -> str:
        """One line: what died and how, e.g. "the userspace shaping engine died (SIGKILL)"."""
        how = self.signal or (f"exit code {self.status}" if self.status is not None else "gone")
        return f"{self.component} died ({how})"

    def to_dict(self) -> dict[str, Any]:
        """As recorded in network.jsonl (op "backend-failed")."""
        return {
            "backend": self.backend,
            "component": self.component,
            "pid": self.pid,
            "status": self.status,
            "signal": self.signal,
            "effect": self.effect,
            "message": self.describe(),
        }


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

    def failure(self) -> BackendFailure | None:
        """Why the backend no longer shapes as asked, once that is so (cheap, never
        blocks); None while it works."""

    def notes(self) -> tuple[str, ...]:
        """What a reader of a run should know about how the links were shaped (e.g. a
        slower fallback engine, and why); empty when there is nothing to say. Cheap."""

    def close(self) -> None:
        """Remove everything the backend created; safe to call twice."""
