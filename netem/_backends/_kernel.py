"""`KernelBackend`: per-destination htb classes with netem leaves on each host's egress."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from netem._backends._base import BackendFailure, HostInfo, LinkStats, Pair
from netem._backends._tc_netlink import HtbShaper
from netem._errors import NetworkError
from netem._probe import probe_sch_netem
from netem._shape import LinkShape


class KernelBackend:
    """Shapes with the kernel's tc: on each source host's interface (inside its namespace)
    an htb root, one class per shaped destination (rate = bandwidth_bps, or 10 Gbit/s when
    uncapped) with a netem qdisc under it, and a u32 filter on the destination address.
    Unshaped destinations fall to a default class without netem. See `netem._backends._tc_spec`.

    Needs sch_netem; `attach` says so in one line when the kernel lacks it.
    """

    name: ClassVar[str] = "kernel"

    def __init__(self) -> None:
        self._shaper = HtbShaper(leaves=True)

    def attach(self, hub_netns: str, hosts: Sequence[HostInfo]) -> None:
        """Put the empty layout on every host's interface (the hub is not used)."""
        probe = probe_sch_netem()
        if not probe.ok:
            raise NetworkError(
                f"the kernel backend needs sch_netem, which this kernel cannot load "
                f"({probe.detail}); use the userspace backend"
            )
        self._shaper.attach(hosts)

    def apply(self, matrix: Mapping[Pair, LinkShape]) -> None:
        """Make `matrix` the whole shaping state, changing only classes that differ."""
        self._shaper.apply(matrix)

    def stats(self) -> Mapping[Pair, LinkStats]:
        """Packets and bytes through each shaped direction's class; drops incl. netem loss."""
        return self._shaper.stats()

    def failure(self) -> BackendFailure | None:
        """None: the kernel's qdiscs have no process that could die."""
        return None

    def notes(self) -> tuple[str, ...]:
        """Nothing to say: the kernel's netem shapes as asked."""
        return ()

    def close(self) -> None:
        """Remove the root qdisc from every host; safe to call twice."""
        self._shaper.close()
