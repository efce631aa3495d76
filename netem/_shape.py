"""`LinkShape`: what one direction of a link does to the packets on it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


class ShapeError(ValueError):
    """A link shape with a value out of range; raised before anything is applied."""


_PERCENT_FIELDS = ("loss_pct", "corrupt_pct", "duplicate_pct", "reorder_pct")


@dataclasses.dataclass(frozen=True, slots=True)
class LinkShape:
    """One direction of a link, in the units people use for tc netem.

    latency_ms, jitter_ms: added one-way delay and its spread (milliseconds).
    loss_pct, corrupt_pct, duplicate_pct, reorder_pct: percentages of packets, 0 to 100.
    bandwidth_bps: rate cap in bits per second, or None for no cap.
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
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ShapeError(f"{name} must be a number, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ShapeError(f"{name} must be a finite number >= 0, not {value!r}")
        for name in _PERCENT_FIELDS:
            if getattr(self, name) > 100:
                raise ShapeError(f"{name} is a percentage (0 to 100), not {getattr(self, name)!r}")
        if self.latency_ms > 3_600_000:
            raise ShapeError(f"latency_ms {self.latency_ms!r} is over an hour")
        bw = self.bandwidth_bps
        if bw is not None and (isinstance(bw, bool) or not isinstance(bw, int) or bw < 8):
            raise ShapeError(f"bandwidth_bps must be a whole number of bits/s >= 8, not {bw!r}")
        if self.reorder_pct and not self.latency_ms:
            raise ShapeError("reorder_pct needs latency_ms > 0 (reordered packets skip the delay)")

    @property
    def is_identity(self) -> bool:
        """True when the shape changes nothing."""
        return self == IDENTITY

    @property
    def needs_delay_engine(self) -> bool:
        """True when the shape needs more than a rate limiter (delay, loss, ...)."""
        return dataclasses.replace(self, bandwidth_bps=None) != IDENTITY

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
