"""`local:netns`: each instance in its own network namespace, on an emulated data network."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import structlog
import trio

import netem
from harness._errors import EnvironmentProblem, UsageError
from harness._tell import tell
from harness.plans import RunSpec
from harness.runners._base import Deployment, Placement
from harness.runners._registry import LOCAL_NETNS
from harness.sync import NETWORK_INITIALIZED, SyncState

_log = structlog.get_logger("harness.netns")

BACKEND_ENV = "HARNESS_NETEM_BACKEND"
"""The variable that chooses local:netns runs' shaping backend (`netns_backend`)."""
SUBNET_ENV = "HARNESS_DATA_SUBNET"
"""The variable that moves local:netns runs' data network (`netns_subnet`)."""


def netns_backend() -> str:
    """The shaping backend local:netns runs use: $HARNESS_NETEM_BACKEND, or "auto"; a value
    that is none of `netem.BACKEND_NAMES` is a one-line UsageError naming it."""
    try:
        return netem.check_backend_name(os.environ.get(BACKEND_ENV, "auto"), BACKEND_ENV)
    except netem.RequestError as e:
        raise UsageError(str(e)) from None


def netns_subnet(hosts: int) -> str:
    """The data network local:netns runs use: $HARNESS_DATA_SUBNET, or netem's default; a
    value that is no IPv4 subnet, or too small for `hosts`, is a one-line UsageError."""
    subnet = os.environ.get(SUBNET_ENV, netem.DEFAULT_SUBNET)
    try:
        netem.check_subnet(subnet, hosts)
    except netem.RequestError as e:
        raise UsageError(f"{SUBNET_ENV}: {e}") from None
    return subnet


class NetnsRunner:
    """Builds a `netem.Network` with one host per instance and applies the instances'
    network requests to it; the record of every change goes to `network.jsonl`."""

    name: ClassVar[str] = LOCAL_NETNS

    def __init__(self, backend: str | None = None, subnet: str | None = None) -> None:
        self.backend = backend or netns_backend()
        self.subnet = subnet or netns_subnet(1)

    @asynccontextmanager
    async def deploy(
        self, spec: RunSpec, run_dir: Path, state: SyncState
    ) -> AsyncIterator[Deployment]:
        try:
            # Whatever an earlier run killed with SIGKILL left behind goes first.
            removed = await trio.to_thread.run_sync(netem.cleanup)
            if removed:
                _log.warning("removed leftovers of earlier runs", removed=removed)
                tell(f"harness: removed what earlier, killed runs left: {len(removed)} "
                     f"namespaces and files ({', '.join(removed[:3])}"
                     f"{', ...' if len(removed) > 3 else ''})")
            net = netem.Network(subnet=self.subnet, backend=self.backend,
                                record=run_dir / "network.jsonl")
            hosts = await trio.to_thread.run_sync(net.build, spec.total)
        except netem.NetemError as e:
            raise EnvironmentProblem(f"local:netns: {e} (try: harness doctor)") from e
        try:
            by_instance = {inst.id: h for inst, h in zip(spec.instances, hosts, strict=True)}
            placements = {i: Placement(str(h.ip), h.netns_path) for i, h in by_instance.items()}

            async def configure(instance: str | None, config: dict[str, Any]) -> None:
                if instance not in by_instance:
                    raise ValueError("say hello with your instance id before asking for a network")
                await trio.to_thread.run_sync(
                    net.apply_request, by_instance[instance], config, instance
                )
                if isinstance(config.get("callback_state"), str):
                    state.signal_entry(config["callback_state"], instance)

            for inst in spec.instances:
                state.signal_entry(NETWORK_INITIALIZED, inst.id)
            info = {
                "runner": self.name,
                "backend": net.backend.name,
                "subnet": str(net.subnet),
                "prefix": net.prefix,
                "hosts": {i: str(h.ip) for i, h in by_instance.items()},
            }
            yield Deployment(placements, str(net.subnet), configure, info,
                             link_stats=net.link_stats, network_failure=net.backend_failure,
                             network_notes=net.backend_notes,
                             faults=_Faults(net, by_instance))
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(net.close)


class _Faults:
    """Faults' cuts and shapes, applied to the run's `netem.Network` by instance id."""

    def __init__(self, net: netem.Network, hosts: Mapping[str, netem.Host]) -> None:
        self.net = net
        self.hosts = hosts

    async def cut(self, pairs: Collection[tuple[str, str]], on: bool, by: str) -> None:
        """Drop (on) or let through again (off) each direction."""
        hosts = [(self.hosts[a], self.hosts[b]) for a, b in pairs]
        change = self.net.cut if on else self.net.uncut
        await trio.to_thread.run_sync(lambda: change(hosts, asked_by=by))

    async def override(self, shapes: Mapping[tuple[str, str], netem.LinkShape | None],
                       by: str) -> None:
        """Shape directions over the instances' own (None: remove the override)."""
        by_host: dict[tuple[netem.HostRef, netem.HostRef], netem.LinkShape | None] = {
            (self.hosts[a], self.hosts[b]): s for (a, b), s in shapes.items()}
        await trio.to_thread.run_sync(lambda: self.net.override(by_host, asked_by=by))
