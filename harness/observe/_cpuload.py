"""The host's CPU pressure over a run: whether its CPU was saturated, after the run (from
its telemetry's "cpu" samples) and live (`SaturationWatch`)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

SATURATED_SHARE = 0.5
"""Of the time some runnable task waited for a CPU (the host's CPU pressure): at or above
it, over a run or a stretch of it, the host is saturated. A 30-node Spacemesh run that
keeps up on 2 cores stays near 0.2; 100 nodes, which do not, near 0.8."""
SATURATED_PART = 0.25
"""A run saturated for this share of its time or more gets the warning, whatever the rest."""
SATURATED_NOTICE_S = 10.0
"""Saturated seconds after which a run in progress says so (`SaturationWatch`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CpuLoad:
    """The host's CPU pressure over a run, from its telemetry's "cpu" samples."""

    waited: float  # share of the sampled time some runnable task waited for a CPU
    saturated_s: float  # seconds in stretches between samples at `SATURATED_SHARE` or more
    sampled_s: float  # seconds from the first sample to the last

    @property
    def saturated(self) -> bool:
        """Whether the run's figures measure the machine (see `SATURATED_PART`)."""
        return (self.waited >= SATURATED_SHARE
                or self.saturated_s >= SATURATED_PART * self.sampled_s)


def wait_share(t0: float, w0: float, t1: float, w1: float) -> float:
    """The share of [t0, t1] (seconds) in which some runnable task waited for a CPU, from
    `cpu_wait_us_total` read at each end (w0, w1); NaN for an empty or reversed span."""
    if t1 <= t0:
        return float("nan")
    return max(0.0, min(1.0, (w1 - w0) / ((t1 - t0) * 1e6)))


def _saturated_stretch(t0: float, w0: float, t1: float, w1: float) -> bool:
    return wait_share(t0, w0, t1, w1) >= SATURATED_SHARE  # NaN compares false


def cpu_load(records: list[dict[str, Any]]) -> CpuLoad | None:
    """The CPU pressure the "cpu" records show; None with fewer than two of them."""
    samples = sorted(
        (float(r["mono"]), float(r["wait_us_total"]))
        for r in records
        if r.get("kind") == "cpu"
        and isinstance(r.get("mono"), int | float)
        and isinstance(r.get("wait_us_total"), int | float)
    )
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return None
    saturated = sum(
        t1 - t0 for (t0, w0), (t1, w1) in itertools.pairwise(samples)
        if _saturated_stretch(t0, w0, t1, w1)
    )
    waited = wait_share(*samples[0], *samples[-1])
    return CpuLoad(waited, saturated, samples[-1][0] - samples[0][0])


class SaturationWatch:
    """Fed the CPU samples of a run as they are taken; `add` returns a sentence, once,
    when the host has been saturated for `after_s` seconds of the run so far."""

    def __init__(self, after_s: float | None = None) -> None:
        self.after_s = SATURATED_NOTICE_S if after_s is None else after_s
        self._last: tuple[float, float] | None = None
        self._saturated_s = 0.0
        self._waited_us = 0.0  # within the saturated stretches
        self._told = False

    def add(self, mono: float, wait_us_total: float) -> str | None:
        """Take the sample (CLOCK_MONOTONIC seconds, `cpu_wait_us_total`)."""
        last, self._last = self._last, (mono, wait_us_total)
        if last is None or self._told or not _saturated_stretch(*last, mono, wait_us_total):
            return None
        self._saturated_s += mono - last[0]
        self._waited_us += wait_us_total - last[1]
        if self._saturated_s < self.after_s:
            return None
        self._told = True
        share = min(1.0, self._waited_us / (self._saturated_s * 1e6))
        return (
            f"the host's CPU has been saturated for {self._saturated_s:.0f} s of this run "
            f"(runnable tasks waited for a CPU {share:.0%} of that time): delays from here "
            "on measure this machine as much as the emulated network"
        )
