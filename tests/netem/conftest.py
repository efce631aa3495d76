"""Fixtures of the netem tests: live gating, unique prefixes, snapshots of the host's network."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest

from netem import HostInfo, LinkShape, LinkStats, Pair

from ..conftest import host_network_state


def live_problem() -> str | None:
    """Why live namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (live tests build network namespaces)"
    for tool in ("ip", "iptables-restore", "iptables-save", "nsenter", "tc", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
        return "br_netfilter is not loaded"
    return None


@pytest.fixture
def live() -> None:
    problem = live_problem()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A prefix no other test (of any engineer) uses; its leftovers are removed afterwards."""
    import netem

    value = f"tn{secrets.token_hex(3)}"
    yield value
    if os.geteuid() == 0:
        netem.cleanup(value)


@pytest.fixture
def host_state(live: None) -> Callable[[], dict[str, str]]:
    return host_network_state


class RecordingBackend:
    """A fake backend that remembers every call, and can be told to fail."""

    name: ClassVar[str] = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_next_apply = False

    def attach(self, hub_netns: str, hosts: Sequence[HostInfo]) -> None:
        self.calls.append(("attach", (hub_netns, list(hosts))))

    def apply(self, matrix: Mapping[Pair, LinkShape]) -> None:
        if self.fail_next_apply:
            self.fail_next_apply = False
            raise RuntimeError("backend refused")
        self.calls.append(("apply", dict(matrix)))

    def stats(self) -> Mapping[Pair, LinkStats]:
        return {}

    def close(self) -> None:
        self.calls.append(("close", None))

    @property
    def last_matrix(self) -> dict[Pair, LinkShape]:
        applied = [arg for op, arg in self.calls if op == "apply"]
        assert applied, "apply was never called"
        last: dict[Pair, LinkShape] = applied[-1]
        return last


@pytest.fixture
def recording() -> RecordingBackend:
    return RecordingBackend()
