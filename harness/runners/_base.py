"""What a runner gives a run: where each instance lives and how its network is changed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from harness.plans import RunSpec
from harness.sync import NetworkHandler, SyncState

if TYPE_CHECKING:
    from netem import BackendFailure, LinkShape


@dataclasses.dataclass(frozen=True)
class Placement:
    """One instance's address, and its network namespace where it has one."""

    data_ip: str
    netns: str | None = None  # path, e.g. /run/netns/NAME


class NetworkFaults(Protocol):
    """How faults change a runner's network: by instance id, over what instances asked."""

    async def cut(self, pairs: Collection[tuple[str, str]], on: bool, by: str) -> None:
        """Drop (on) or let through again (off) each (source, destination) direction."""
        ...

    async def override(self, shapes: Mapping[tuple[str, str], LinkShape | None],
                       by: str) -> None:
        """Shape directions over the instances' own shapes (None: remove the override)."""
        ...


@dataclasses.dataclass
class Deployment:
    """The runner's side of a run, alive for as long as the run."""

    placements: Mapping[str, Placement]
    data_network: str
    network: NetworkHandler | None = None  # None: links cannot be shaped by this runner
    info: dict[str, Any] | None = None  # what run.json records under "network"
    link_stats: Callable[[], Mapping[Any, Any]] | None = None  # shaping counters per link
    # Why the network stopped shaping on its own (the userspace engine died), once it has;
    # polled by the supervisor, so cheap and never blocking.
    network_failure: Callable[[], BackendFailure | None] | None = None
    # What a reader should know about how links were shaped (a slower fallback engine, and
    # why): `netem.Network.backend_notes`; polled with `network_failure`.
    network_notes: Callable[[], tuple[str, ...]] | None = None
    faults: NetworkFaults | None = None  # None: this runner cannot shape or cut links


class Runner(Protocol):
    """Places instances: `local:exec` on this host's loopback, `local:netns` in namespaces."""

    name: ClassVar[str]

    def deploy(
        self, spec: RunSpec, run_dir: Path, state: SyncState
    ) -> AbstractAsyncContextManager[Deployment]:
        """Build what the run needs; everything it built is gone when the block ends.

        The runner signals `network-initialized` once for each instance whose network is up.
        """
        ...
