"""Calibration: how fast this machine runs a fixed Python workload, now.

    python benchmarks/bench_calibrate.py [--rounds 5]

The same code took 4.4 s one hour and 7.0 s the next on the shared VM these benchmarks
were written on. This figure lets a reader compare two reports: if the calibration took
30 % longer, so will every CPU-bound figure beside it. The workload is pure Python of the
kinds the harness runs (dicts, lists, sorting, JSON, hashing), single-threaded; the
figure is the median of `--rounds` timings of it (CPU time of this process). No target.
Writes outputs/bench/calibrate.json (_figures.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _figures import Figure, write


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


def main() -> None:
    """Time the workload `--rounds` times; print and write the median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times = []
    for _ in range(max(1, args.rounds)):
        t0 = time.process_time()
        workload()
        times.append(time.process_time() - t0)
    median = statistics.median(times)
    print("calibration: a fixed Python workload took", " ".join(f"{t:.3f}" for t in times),
          f"s of CPU (median {median:.3f} s)")
    write("calibrate", [Figure("calibration: a fixed Python workload (CPU)", median, "s")])


if __name__ == "__main__":
    main()
