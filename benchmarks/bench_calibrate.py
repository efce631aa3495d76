"""Calibration: how fast this machine runs a fixed Python workload, forks and faults, now.

    python benchmarks/bench_calibrate.py [--rounds 5]

The same code took 4.4 s one hour and 7.0 s the next on the shared VM these benchmarks
were written on. This figure lets a reader compare two reports: if the calibration took
30 % longer, so will every CPU-bound figure beside it. The workload is pure Python of the
kinds the harness runs (dicts, lists, sorting, JSON, hashing), single-threaded; the
figure is the median of `--rounds` timings of it (CPU time of this process).

Two more figures follow the kernel's memory work, which this CPU figure misses and which
moved by 2x between VMs that ran it alike: a fork + exit of this process (what each
instance start and each report worker pays) and a first write to a fresh page (a
copy-on-write fault in a forked instance costs about as much; so does every page a
simulation's growing state touches). No targets.
Writes outputs/bench/calibrate.json (_figures.py).
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _figures import Figure, write
from _speed import timings


def fork_exit(count: int = 200) -> float:
    """Seconds per fork of this process whose child exits at once, waited for."""
    t0 = time.perf_counter()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - t0) / count


def page_fault(pages: int = 16_384) -> float:
    """Seconds per first write to a fresh anonymous page (less the same writes again,
    which fault no more: the loop's own cost)."""
    size = mmap.PAGESIZE
    with mmap.mmap(-1, pages * size) as mem:
        passes = []
        for _ in range(2):
            t0 = time.perf_counter()
            for offset in range(0, pages * size, size):
                mem[offset] = 1
            passes.append(time.perf_counter() - t0)
    return max(0.0, passes[0] - passes[1]) / pages


def main() -> None:
    """Time the workload `--rounds` times; print and write the median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # Forks first, while this process is small (about 10 MB): the workload grows it.
    forks = statistics.median(fork_exit() for _ in range(max(1, args.rounds)))
    faults = statistics.median(page_fault() for _ in range(max(1, args.rounds)))
    times = timings(args.rounds)
    median = statistics.median(times)
    print("calibration: a fixed Python workload took", " ".join(f"{t:.3f}" for t in times),
          f"s of CPU (median {median:.3f} s)")
    print(f"calibration: fork + exit {forks * 1e3:.2f} ms, a first-touch page fault "
          f"{faults * 1e6:.2f} us (medians)")
    write("calibrate", [
        Figure("calibration: a fixed Python workload (CPU)", median, "s", better="none"),
        Figure("calibration: fork + exit of a 10 MB Python process", forks * 1e3, "ms",
               better="none"),
        Figure("calibration: a first-touch page fault", faults * 1e6, "us", better="none"),
    ])


if __name__ == "__main__":
    main()
