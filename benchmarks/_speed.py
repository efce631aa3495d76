"""How fast this machine runs a fixed Python workload now (bench_calibrate.py's figure).

Each figures file carries it as measured when written (`_figures.write`), so the report can
tell a figure that got worse from a machine that got slower: on the shared VM the
benchmarks run on, the same workload took 0.14 s of CPU at the start of one `nox -s bench`
and the simulation's figures, half an hour later, were 30 % worse on unchanged code.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time


def workload() -> int:
    """A fixed amount of work; returns a checksum so none of it can be skipped."""
    total = 0
    rows = [{"i": i, "name": f"n{i % 97}", "v": (i * 7919) % 1000 / 7} for i in range(40_000)]
    for r in sorted(rows, key=lambda r: (r["name"], r["v"])):
        total += r["i"] % 13
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["name"]] = counts.get(r["name"], 0) + 1
    text = json.dumps(rows)
    total += len(json.loads(text))
    for i in range(20_000):
        total += hashlib.sha256(i.to_bytes(4, "little")).digest()[0]
    return total + len(counts)


def timings(rounds: int) -> list[float]:
    """The CPU seconds of each of `rounds` runs of `workload` in this process."""
    times = []
    for _ in range(max(1, rounds)):
        t0 = time.process_time()
        workload()
        times.append(time.process_time() - t0)
    return times


def speed(rounds: int = 3) -> float:
    """The median of `timings`."""
    return statistics.median(timings(rounds))
