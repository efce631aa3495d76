"""Waiting for a quiet machine before a benchmark: `python benchmarks/_quiet.py`.

A benchmark measured while the one before it is still winding down (a thousand processes
exiting, the kernel freeing their namespaces) measures that too. The load average cannot
say when it is over: it decays over a minute after the machine is idle again. This samples
the CPU's busy share from /proc/stat instead and returns once one second of it is below
QUIET, or after PATIENCE seconds, saying which.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

QUIET = 0.15
"""Busy share of all CPUs (0..1) under which the machine counts as quiet."""
PATIENCE = 90.0
"""Seconds to wait at most; then the benchmark runs anyway, and says so."""


def cpu_times(stat: str) -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs from /proc/stat's text (idle includes iowait)."""
    fields = [int(x) for x in stat.split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time (0..1) that was not idle between two `cpu_times`."""
    total = after[1] - before[1]
    return 0.0 if total <= 0 else 1.0 - (after[0] - before[0]) / total


def _read() -> tuple[int, int]:
    with open("/proc/stat") as f:
        return cpu_times(f.read())


def wait_quiet(
    quiet: float = QUIET,
    patience: float = PATIENCE,
    sample: Callable[[], tuple[int, int]] = _read,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, float, float]:
    """Wait for a second below `quiet`; (quiet or not, seconds waited, last busy share)."""
    waited, share = 0.0, 1.0
    while True:
        before = sample()
        sleep(1.0)
        waited += 1.0
        share = busy_share(before, sample())
        if share < quiet or waited >= patience:
            return share < quiet, waited, share


def main() -> None:
    """Wait, then say how it went (one line)."""
    ok, waited, share = wait_quiet()
    state = "quiet" if ok else f"still busy after {waited:.0f} s; measuring anyway"
    print(f"machine {state} ({share:.0%} busy over the last second, waited {waited:.0f} s)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
