"""The sync benchmark's raw fan-out floor counts every stamp, also when a slow subscriber
reads two at once (it used to count one read as one stamp and wait for ever)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _fanout_floor import floor


@pytest.mark.timeout(60)
@pytest.mark.parametrize("relay", [False, True])
def test_stamps_read_together_each_count(relay: bool) -> None:
    # No pace: the publishes come faster than the subscribers (and the relay) wake, so
    # reads hold several.
    latencies = floor(6, 2, 0.0, 50, relay)
    assert len(latencies) == 6 * 50
    assert all(0 <= x < 10 for x in latencies)


FORKSERVER = """
import multiprocessing, sys
sys.path.insert(0, sys.argv[1])
from _fanout_floor import floor
if __name__ == "__main__":
    multiprocessing.set_start_method("forkserver")  # Python 3.14's default on Linux
    print(len(floor(4, 2, 0.0, 20, relay=True)))
"""


def test_the_relay_works_where_children_do_not_inherit_file_descriptors() -> None:
    """The relay got fd numbers, which mean nothing to a forkserver's child: EBADF, and the
    floor waited for ever."""
    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    r = subprocess.run([sys.executable, "-c", FORKSERVER, benchmarks], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "80\n"), r.stderr
