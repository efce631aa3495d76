"""The sync benchmark's raw fan-out floor counts every stamp, also when a slow subscriber
reads two at once (it used to count one read as one stamp and wait for ever)."""

from __future__ import annotations

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
