"""`local:exec`: instances as plain processes on this host, each with its own loopback address."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

from harness.plans import RunSpec
from harness.runners._base import Deployment, Placement
from harness.runners._registry import LOCAL_EXEC
from harness.sync import NETWORK_INITIALIZED, SyncState

LOOPBACK_NET = ipaddress.IPv4Network("127.18.0.0/16")


class ExecRunner:
    """No privileges needed: all of 127.0.0.0/8 reaches `lo`, so every instance can bind
    the same port on its own address. Links cannot be shaped."""

    name: ClassVar[str] = LOCAL_EXEC

    @asynccontextmanager
    async def deploy(
        self, spec: RunSpec, run_dir: Path, state: SyncState
    ) -> AsyncIterator[Deployment]:
        placements = {
            inst.id: Placement(str(LOOPBACK_NET.network_address + 1 + inst.global_seq))
            for inst in spec.instances
        }
        for inst in spec.instances:
            state.signal_entry(NETWORK_INITIALIZED, inst.id)
        yield Deployment(placements, str(LOOPBACK_NET), None, {"runner": self.name})
