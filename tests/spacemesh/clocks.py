"""A clock for a node that is not running: its time is set by hand."""

from __future__ import annotations

import anyio.lowlevel


class FixedClock:
    """`now()` is `t` until a test moves it; a wait returns at once."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        await anyio.lowlevel.checkpoint()
