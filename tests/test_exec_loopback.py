"""local:exec gives each run a loopback block of its own: two runs at once whose plans
listen on a fixed port collided on 127.18.0.x ("Address already in use")."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, only_run_dir


def test_runs_at_once_hold_different_blocks_and_free_them_at_their_end() -> None:
    from harness.runners._exec import claim_loopback

    first, held = claim_loopback()
    second, also = claim_loopback()
    assert first != second and first.prefixlen == second.prefixlen == 16
    assert first.subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))
    held.close()
    again, third = claim_loopback()  # the first one's block, free again
    assert again == first
    also.close()
    third.close()


def test_two_pingpong_runs_at_once_both_pass(tmp_path: Path) -> None:
    """pingpong's instances listen on port 7777 each: at once, the second run's crashed."""
    runs = [subprocess.Popen([sys.executable, "-m", "harness", "run", "pingpong", "-i", "3",
                              "--runner", "local:exec", "--outputs", str(tmp_path / str(i)),
                              "-q", "--metrics-listen", "off"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=ROOT) for i in range(2)]  # fmt: skip
    outputs = [r.communicate(timeout=180)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    addresses = [{i["ip"] for i in json.loads((only_run_dir(tmp_path / str(n)) / "run.json")
                                              .read_text())["instances"]} for n in range(2)]
    assert len(addresses[0]) == len(addresses[1]) == 3 and not addresses[0] & addresses[1]
