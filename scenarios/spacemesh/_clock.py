"""Clocks injected into the protocol code: wall time (as the harness skews it, under the
harness) or the event loop's (virtual) time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

import anyio

if TYPE_CHECKING:
    from harness import sdk


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


class HarnessClock:
    """The instance's wall clock under the harness (`env.clock`, or `sdk.Clock.from_environ()`
    in a program): real time plus the skew of the run's clock faults, so a skew fault
    reaches the node's protocol. Outside the harness it is the real clock."""

    def __init__(self, clock: sdk.Clock) -> None:
        self._clock = clock

    @classmethod
    def from_environ(cls) -> HarnessClock:
        """The clock the harness gave this process (TEST_CLOCK_FILE), else the real one."""
        from harness import sdk  # only real processes pay for it, not the simulation

        return cls(sdk.Clock.from_environ())

    def now(self) -> float:
        return self._clock.time()

    async def sleep_until(self, deadline: float) -> None:
        await self._clock.sleep_until(deadline)


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
