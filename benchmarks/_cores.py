"""Where a benchmark's client processes run."""

from __future__ import annotations

import os


def pin_to_core(k: int) -> None:
    """Pin this process, client process `k`, to one CPU: the `k`-th (round robin) of those it
    may use. Left to the scheduler, the two client processes of
    `bench_sync.py` shared one core in some runs and not in others, and the fan-out's
    median moved with that alone, between about 0.7 and 1.15 ms at N=100, for ours and for
    Redis alike (docs/benchmarks.md)."""
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[k % len(cpus)]})
