"""The clock file: how the supervisor tells one instance the skew of its clock.

The supervisor (`harness._clock.InstanceClock`) rewrites it atomically; the SDK (`env.clock`)
and libfaketime (its FAKETIME_TIMESTAMP_FILE) read it. Two lines (docs/contracts.md,
"Clock faults"):

    # {"offset": -2.5, "drift": 0.001, "since": 1795975699.491248}
    -2.612345678 x1.001

The first is the skew itself (libfaketime skips lines that start with '#'); the second is the
same skew in libfaketime's terms, relative to the instance's libfaketime anchor. This module
imports nothing heavier than orjson: instances read it at every start.
"""

from __future__ import annotations

import dataclasses
import math

import orjson

MAX_DRIFT = 0.5
"""|drift| at most this: seconds gained (or lost) per real second."""


@dataclasses.dataclass(frozen=True)
class Skew:
    """A clock that reads, at real Unix time `t` (seconds) from `since` on,

        fake(t) = t + offset + drift * (t - since)

    A new skew replaces the old one at once: a jump to exactly `offset` at its `since`
    (continue smoothly with `Skew(old.offset_at(now), new_drift, now)`).
    """

    offset: float = 0.0
    drift: float = 0.0
    since: float = 0.0

    def __post_init__(self) -> None:
        if not all(map(math.isfinite, (self.offset, self.drift, self.since))):
            raise ValueError(f"a clock skew is finite numbers, not {self}")
        if not -MAX_DRIFT <= self.drift <= MAX_DRIFT:
            raise ValueError(f"drift must be in [-{MAX_DRIFT}, {MAX_DRIFT}] (seconds gained "
                             f"per second), not {self.drift}")

    def at(self, t: float) -> float:
        """The skewed time at real time `t`."""
        return t + self.offset_at(t)

    def offset_at(self, t: float) -> float:
        """How far ahead (negative: behind) of real time the clock is at real time `t`."""
        return self.offset + self.drift * (t - self.since)

    def real(self, fake: float) -> float:
        """The real time at which the clock reads `fake` (the inverse of `at`)."""
        return (fake - self.offset + self.drift * self.since) / (1.0 + self.drift)

    def render(self, anchor: float) -> str:
        """The file's text. libfaketime computes `anchor + O + R * (t - anchor)` where
        `anchor` is the start time every process of the instance shares (the supervisor
        presets it, see harness._clock); O and R are chosen so that this is `at(t)`."""
        head = orjson.dumps({"offset": self.offset, "drift": self.drift, "since": self.since})
        o = self.offset + self.drift * (anchor - self.since)
        # No letters but the 'x': libfaketime reads m, h, d or y anywhere as a unit. The
        # rate in full (repr: 0.5 <= R <= 1.5 has no exponent): its error grows with t.
        return f"# {head.decode()}\n{o:+.9f} x{1.0 + self.drift!r}\n"

    @classmethod
    def parse(cls, text: str) -> Skew:
        """The skew of a clock file's text; ValueError if it is not one."""
        first = text.partition("\n")[0]
        try:
            data = orjson.loads(first.removeprefix("# "))
            return cls(float(data["offset"]), float(data["drift"]), float(data["since"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValueError(f"not a harness clock file: {first[:80]!r}") from None


REAL = Skew()
"""No skew: the real clock."""
