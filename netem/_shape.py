"""`LinkShape`: what one direction of a link does to the packets on it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


class ShapeError(ValueError):
    """A link shape with a value out of range; raised before anything is applied."""


_PERCENT_FIELDS = ("loss_pct", "corrupt_pct", "duplicate_pct", "reorder_pct")

# The limits are what both backends can apply (a shape must not depend on which one runs):
MAX_DELAY_MS = 250_000.0
"""Longest latency or jitter: netem's delay and jitter are u32 counts of 64 ns ticks
(pyroute2 encodes microseconds x 15.625), so 2^32 ticks is 274.9 s; the userspace engine
(int64 nanoseconds) takes more."""
MIN_BANDWIDTH_BPS = 60
"""Lowest rate cap: pyroute2 encodes htb's rate table as 256 u32 transmit times (in the same
ticks) of cells up to 2048 bytes; below 60 bit/s (7.5 bytes/s) the slowest cell overflows."""
MAX_BANDWIDTH_BPS = 2**53
"""Highest rate cap (9 Pbit/s): pyroute2 turns bit/s into bytes/s as a float, exact up to
2^53; the kernel holds bytes/s in a u64 (TCA_HTB_RATE64) and bit/s wrap at 2^64."""


@dataclasses.dataclass(frozen=True, slots=True)
class LinkShape:
    """One direction of a link, in the units people use for tc netem.

    latency_ms, jitter_ms: added one-way delay and its spread (milliseconds), 0 to 250 000.
    loss_pct, corrupt_pct, duplicate_pct, reorder_pct: percentages of packets, 0 to 100.
    bandwidth_bps: rate cap in bits per second (a whole number, 60 to 2^53), or None.
    A value out of range raises ShapeError naming the field, the value and the range.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    bandwidth_bps: int | None = None
    corrupt_pct: float = 0.0
    duplicate_pct: float = 0.0
    reorder_pct: float = 0.0

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms", *_PERCENT_FIELDS):
            value = getattr(self, name)
            top = 100.0 if name in _PERCENT_FIELDS else MAX_DELAY_MS
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ShapeError(f"{name} must be a number from 0 to {top:g}, not {value!r}")
            # compared first: math.isfinite overflows on an int beyond any float
            if not (0 <= value <= top and math.isfinite(value)):
                raise ShapeError(f"{name} {value!r} is out of range: 0 to {top:g}")
        bw = self.bandwidth_bps
        if bw is not None:
            if isinstance(bw, bool) or not isinstance(bw, int):
                raise ShapeError(f"bandwidth_bps must be a whole number of bits/s, not {bw!r}")
            if not MIN_BANDWIDTH_BPS <= bw <= MAX_BANDWIDTH_BPS:
                raise ShapeError(
                    f"bandwidth_bps {bw} is out of range: {MIN_BANDWIDTH_BPS} to "
                    f"{MAX_BANDWIDTH_BPS} (2^53) bits/s"
                )
        if self.reorder_pct and not self.latency_ms:
            raise ShapeError("reorder_pct needs latency_ms > 0 (reordered packets skip the delay)")

    @property
    def is_identity(self) -> bool:
        """True when the shape changes nothing."""
        return self == IDENTITY

    @property
    def needs_delay_engine(self) -> bool:
        """True when the shape needs more than a rate limiter (delay, loss, ...)."""
        # Called for every direction of a matrix at every change: the fields, not a copy.
        return bool(
            self.latency_ms or self.jitter_ms or self.loss_pct or self.corrupt_pct
            or self.duplicate_pct or self.reorder_pct
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinkShape:
        """Build from a dict such as the sync protocol's; unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise ShapeError(f"a link shape is an object, not {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ShapeError(
                f"unknown link shape field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)


IDENTITY = LinkShape()
