"""Warnings about the conditions a run ran in, where they weaken what its figures say
(summary.json's "warnings", the report's header, the end of `harness run`)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.observe._report._data import RunData

SATURATED_SHARE = 0.5
"""Of the time some runnable task waited for a CPU (the host's CPU pressure): at or above
it, over a run or a stretch of it, the host is saturated. A 30-node Spacemesh run that
keeps up on 2 cores stays near 0.2; 100 nodes, which do not, near 0.8."""
SATURATED_PART = 0.25
"""A run saturated for this share of its time or more gets the warning, whatever the rest."""


@dataclasses.dataclass(frozen=True, slots=True)
class CpuLoad:
    """The host's CPU pressure over a run, from its telemetry's "cpu" samples."""

    waited: float  # share of the sampled time some runnable task waited for a CPU
    saturated_s: float  # seconds in stretches between samples at `SATURATED_SHARE` or more
    sampled_s: float  # seconds from the first sample to the last


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
    span = samples[-1][0] - samples[0][0]
    saturated = sum(
        t1 - t0
        for (t0, w0), (t1, w1) in itertools.pairwise(samples)
        if t1 > t0 and w1 - w0 >= SATURATED_SHARE * (t1 - t0) * 1e6
    )
    waited = max(0.0, min(1.0, (samples[-1][1] - samples[0][1]) / (span * 1e6)))
    return CpuLoad(waited, saturated, span)


def run_warnings(r: RunData) -> list[str]:
    """One sentence per condition that weakens the run's figures (none: an empty list)."""
    load = cpu_load(r.telemetry)
    if load is None or not (
        load.waited >= SATURATED_SHARE or load.saturated_s >= SATURATED_PART * load.sampled_s
    ):
        return []
    a = r.analysis
    busy = a.causes.get("busy CPU", 0)
    text = (
        f"the host's CPU was saturated: runnable tasks waited for a CPU {load.waited:.0%} "
        f"of the time ({load.saturated_s:.0f} of {load.sampled_s:.0f} s at "
        f"{SATURATED_SHARE:.0%} or more)"
    )
    if busy:
        text += f"; {busy:,} of the {a.out_of_line:,} out-of-line hops are put down to it"
    return [
        text + ". Delays and timeouts in this run measure this machine as much as the "
        "emulated network: run fewer instances, or on more cores."
    ]
