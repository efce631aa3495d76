"""Clocks injected into the protocol code: real wall time or the event loop's (virtual) time."""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    """Time on the network's shared timeline, in seconds."""

    def now(self) -> float:
        """The current time."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class WallClock:
    """Unix time: what separate processes agree on (genesis is a Unix timestamp)."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        # Loop: the event loop sleeps on the monotonic clock, which may drift from wall time.
        while (left := deadline - time.time()) > 0:  # noqa: ASYNC110
            await anyio.sleep(left)


class LoopClock:
    """The event loop's clock plus an offset.

    Under trio's ``MockClock`` (anyio's trio backend) this is virtual time, which lets a
    simulation run hundreds of nodes for many layers in a fraction of a second.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset

    def now(self) -> float:
        return anyio.current_time() + self._offset

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline - self._offset)
