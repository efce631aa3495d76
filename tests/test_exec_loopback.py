"""local:exec gives each run a loopback block of its own: two runs at once whose plans
listen on a fixed port collided on 127.18.0.x ("Address already in use")."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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


LISTEN = """
name = "listen"
[defaults]
runner = "local:exec"
[[testcases]]
name = "hold"
instances = { min = 1, max = 4, default = 3 }
entrypoint = "listen.plan:hold"
"""
LISTEN_CODE = """
import socket
import trio

async def hold(env):
    with socket.socket() as s:
        s.bind((env.data_ip, 7777))  # every instance of every run: the same port
        s.listen()
        await env.sync.signal_entry("listening")
        await trio.sleep(120)
"""


def test_two_runs_at_once_whose_instances_listen_on_one_port_both_do(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path
) -> None:
    """pingpong's instances listen on port 7777 each: at once, the second run's crashed
    ("Address already in use"). The second run starts while the first one's instances
    listen (two pingpong runs started together had, on a loaded machine, not overlapped)."""
    root = make_plan("listen", LISTEN, LISTEN_CODE)
    runs: list[subprocess.Popen[str]] = []
    try:
        for n in range(2):
            runs.append(subprocess.Popen(
                [sys.executable, "-m", "harness", "run", "listen:hold", "--plans", str(root),
                 "--outputs", str(tmp_path / str(n)), "-q", "--metrics-listen", "off"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT))
            _wait_for_listening(tmp_path / str(n), runs[-1])
        assert all(r.poll() is None for r in runs)  # both at once, each instance listening
    finally:
        for r in runs:
            r.send_signal(signal.SIGTERM)
            r.communicate(timeout=60)
    addresses = [{i["ip"] for i in json.loads((only_run_dir(tmp_path / str(n)) / "run.json")
                                              .read_text())["instances"]} for n in range(2)]
    assert len(addresses[0]) == len(addresses[1]) == 3 and not addresses[0] & addresses[1]


def _wait_for_listening(out: Path, run: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120  # a guard against a hang, not a timing
    while time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()[0]
        events = [json.loads(line) for f in out.glob("*/events.jsonl")
                  for line in f.read_text().splitlines()]
        if sum(e.get("state") == "listening" for e in events) == 3:
            return
        time.sleep(0.05)
    raise AssertionError(f"the instances of the run in {out} never all listened")
