"""Large items through the sync service between real instance processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .conftest import ROOT

MANIFEST = """
name = "big"
[defaults]
runner = "local:exec"
[[testcases]]
name = "pub"
instances = { min = 1, max = 4, default = 2 }
entrypoint = "big.plan:pub"
"""
PLAN = """
async def pub(env):
    await env.sync.publish("big", "x" * (10 << 20))
    async with env.sync.subscribe("big") as items:
        async for item in items:
            assert len(item) == 10 << 20
            break
"""


def test_a_subscriber_that_reads_is_not_dropped_for_items_larger_than_the_bound(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path
) -> None:
    """Two instances publish 10 MB each, then read an item: a live item that came while the
    backlog's was being written put 20 MB behind the connection, past its 8 MiB bound, and
    the reader was dropped as one that does not read (exit code 3, in 3 runs of 3)."""
    plans = make_plan("big", MANIFEST, PLAN)
    for _ in range(3):
        r = subprocess.run(
            [sys.executable, "-m", "harness", "run", "big", "--plans", str(plans), "-q",
             "--outputs", str(tmp_path / "out"), "--metrics-listen", "off", "--json"],
            capture_output=True, text=True, timeout=120, cwd=ROOT)
        run = json.loads(r.stdout)
        assert r.returncode == 0, run["reason"]
    drops = [line for p in (tmp_path / "out").glob("*/events.jsonl")
             for line in p.read_text().splitlines() if '"dropped"' in line]
    assert drops == []
