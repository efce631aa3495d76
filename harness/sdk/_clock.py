"""`Clock`: the wall clock of this instance, as the harness skews it (`env.clock`)."""

from __future__ import annotations

import dataclasses
import os
import time

from harness._clockfile import REAL, Skew
from harness._runparams import RunParams

CHECK_EVERY_S = 0.1
"""How often at most the clock file is looked at (one stat; read only when it changed)."""
MAX_NAP_S = 1.0
"""`sleep_until` looks at the clock at least this often, so that a skew change mid-sleep
counts."""


class Clock:
    """Wall time as the harness gives it to this instance: real time plus the skew that the
    supervisor's clock faults set (docs/contracts.md, "Clock faults"), the same that a
    non-Python program reads through libfaketime:

        time() = t + offset + drift * (t - since)     at real time t

    A change of skew is seen within `CHECK_EVERY_S`. `monotonic()` is not skewed, as
    libfaketime leaves CLOCK_MONOTONIC alone for the harness's programs. Without a clock
    file (outside the harness, or a run that skews nothing) this is the real clock.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 check_every: float = CHECK_EVERY_S) -> None:
        self.path = None if path is None else os.fspath(path)
        self._every = check_every
        self._next_check = float("-inf")
        self._seen: tuple[int, int, int] | None = None
        self._skew = REAL
        # A program started under libfaketime (LD_PRELOAD) already reads the skewed time
        # from libc: adding the skew again would count it twice.
        self._preloaded = "faketime" in os.environ.get("LD_PRELOAD", "") and bool(
            self.path) and os.environ.get("FAKETIME_TIMESTAMP_FILE") == self.path

    @classmethod
    def from_environ(cls) -> Clock:
        """The clock named by this process's environment (TEST_CLOCK_FILE), for a program
        that runs under the harness without a `RunEnv`; the real clock elsewhere."""
        field = next(f for f in dataclasses.fields(RunParams) if f.name == "clock_file")
        return cls(os.environ.get(field.metadata["env"]) or None)

    def time(self) -> float:
        """The skewed wall clock, Unix seconds."""
        if self._preloaded:
            return time.time()
        return self.skew().at(time.time())

    def monotonic(self) -> float:
        """`time.monotonic()`: not skewed (a skew changes the wall clock only)."""
        return time.monotonic()

    def offset(self) -> float:
        """How far ahead of real time (negative: behind) the clock is now."""
        skew = self.skew()
        if self._preloaded:
            fake = time.time()
            return fake - skew.real(fake)
        return skew.offset_at(time.time())

    def skew(self) -> Skew:
        """The skew in force (at most `check_every` old)."""
        now = time.monotonic()
        if self.path is not None and now >= self._next_check:
            self._next_check = now + self._every
            self._reload(self.path)
        return self._skew

    async def sleep_until(self, wall: float) -> None:
        """Return once `time() >= wall`."""
        import anyio  # the SDK's backends both run on it; imported by the time this runs

        while (left := wall - self.time()) > 0:
            rate = 1.0 if self._preloaded else 1.0 + self.skew().drift
            await anyio.sleep(min(left / rate, MAX_NAP_S))

    def _reload(self, path: str) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._seen, self._skew = None, REAL
            return
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen != self._seen:
            with open(path, encoding="utf-8") as f:
                self._skew = Skew.parse(f.read())
            self._seen = seen
