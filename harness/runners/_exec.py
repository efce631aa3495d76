"""`local:exec`: instances as plain processes on this host, each with its own loopback address."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

from harness._errors import EnvironmentProblem
from harness.plans import RunSpec
from harness.runners._base import Deployment, Placement
from harness.runners._registry import LOCAL_EXEC
from harness.sync import NETWORK_INITIALIZED, SyncState

LOOPBACK_BLOCKS = range(18, 255)
"""A run's instances take addresses in 127.N.0.0/16, the first N here that no other run
holds: two runs at once whose plans listen on a fixed port would otherwise collide."""


def claim_loopback() -> tuple[ipaddress.IPv4Network, socket.socket]:
    """The first free block of `LOOPBACK_BLOCKS`, and what holds it: a Unix socket bound to
    an abstract name (no file to leave behind; freed when it is closed or its process dies)."""
    for n in LOOPBACK_BLOCKS:
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            holder.bind(f"\0harness-loopback-127.{n}")
        except OSError as e:
            holder.close()
            if e.errno == errno.EADDRINUSE:
                continue
            raise
        return ipaddress.IPv4Network(f"127.{n}.0.0/16"), holder
    raise EnvironmentProblem(f"every loopback block 127.{LOOPBACK_BLOCKS[0]}-"
                             f"{LOOPBACK_BLOCKS[-1]}.0.0/16 is held by another run")


class ExecRunner:
    """No privileges needed: all of 127.0.0.0/8 reaches `lo`, so every instance can bind
    the same port on its own address, in a /16 of the run's own. Links cannot be shaped."""

    name: ClassVar[str] = LOCAL_EXEC

    @asynccontextmanager
    async def deploy(
        self, spec: RunSpec, run_dir: Path, state: SyncState
    ) -> AsyncIterator[Deployment]:
        net, holder = claim_loopback()
        with holder:
            placements = {
                inst.id: Placement(str(net.network_address + 1 + inst.global_seq))
                for inst in spec.instances
            }
            for inst in spec.instances:
                state.signal_entry(NETWORK_INITIALIZED, inst.id)
            yield Deployment(placements, str(net), None, {"runner": self.name})
