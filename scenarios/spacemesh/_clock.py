"""Clocks injected into the protocol code: wall time (as the harness skews it, under the
harness) or the event loop's (virtual) time."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Protocol

import anyio

if TYPE_CHECKING:
    from harness import sdk


def loop_time() -> float:
    """``anyio.current_time()``: the event loop's clock. Under trio it asks trio directly,
    without anyio's lookup of the running backend on every call (a simulation reads the
    clock a few hundred thousand times)."""
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        return trio.current_time()  # type: ignore[no-any-return]
    return anyio.current_time()


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
        return loop_time() + self._offset

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline - self._offset)


class Gate:
    """Whether a simulated process runs: a paused one is frozen (SIGSTOP) until resumed."""

    def __init__(self) -> None:
        self._resumed: anyio.Event | None = None

    @property
    def paused(self) -> bool:
        """True between `pause` and `resume`."""
        return self._resumed is not None

    def pause(self) -> None:
        """Freeze: whoever waits on the gate blocks until `resume`."""
        if self._resumed is None:
            self._resumed = anyio.Event()

    def resume(self) -> None:
        """Thaw: everything that waited goes on at once, as a SIGCONTed process does."""
        if self._resumed is not None:
            self._resumed.set()
            self._resumed = None

    async def wait(self) -> None:
        """Return at once when running, else once resumed (no checkpoint when running)."""
        while self._resumed is not None:
            await self._resumed.wait()


class SkewClock:
    """A simulated process's clock: the loop's (virtual) time plus an offset and a drift
    that a fault can change at any moment (`skew`), behind the process's `Gate`.

    It reads ``t + offset + drift * (t - t0)``, ``t0`` being when the skew was set. A sleep
    wakes when the clock *as it reads then* reaches the deadline, so a skew set during the
    sleep moves the wake-up, as a timer on a jumped wall clock would; and a paused process
    wakes only once resumed (late, as a SIGCONTed process's overdue timers fire)."""

    def __init__(self, gate: Gate | None = None) -> None:
        self.gate = gate or Gate()
        self.offset = 0.0
        self.drift = 0.0
        self._t0 = 0.0
        self._changed = anyio.Event()

    def skew(self, offset: float = 0.0, drift: float = 0.0) -> None:
        """Read `offset` seconds ahead from now on, gaining `drift` seconds per second."""
        if not -0.5 <= drift <= 0.5:
            raise ValueError(f"drift must be in [-0.5, 0.5], not {drift!r}")
        self._t0 = anyio.current_time()
        self.offset, self.drift = offset, drift
        self._changed.set()
        self._changed = anyio.Event()

    def now(self) -> float:
        t = loop_time()
        return t + self.offset + self.drift * (t - self._t0)

    async def sleep_until(self, deadline: float) -> None:
        # A tolerance: the loop time that solves now() == deadline may round a hair short.
        while self.now() < deadline - 1e-9:
            changed = self._changed
            t = (deadline - self.offset + self.drift * self._t0) / (1 + self.drift)
            with anyio.move_on_after(max(0.0, t - anyio.current_time())):
                await changed.wait()
        await self.gate.wait()
