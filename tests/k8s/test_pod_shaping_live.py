"""A pod's shaping as its sidecar does it, live: the shaper's userspace mode (netem's engine
on the namespace's own OUTPUT hook, no setns) run inside one host of a throw-away pair of
namespaces, measured with ping; the same code the pods run under `nox -s k8s`. Needs root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from netem._userspace._testbed import Testbed

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parents[2]

POD = textwrap.dedent("""
    import subprocess, sys
    from ipaddress import IPv4Address
    from harness.runners.k8s.shaper import egress_for
    me, peer, latency = IPv4Address(sys.argv[1]), IPv4Address(sys.argv[2]), float(sys.argv[3])
    with egress_for("userspace", me) as egress:
        egress.hosts.update({me: 0, peer: 1})
        egress.apply()
        if latency:
            egress.request({"default": {"latency_ms": latency}})
        ping = subprocess.run(["ping", "-n", "-q", "-c", "5", "-i", "0.2", str(peer)],
                              capture_output=True, text=True, check=True)
        print(ping.stdout)
    print(subprocess.run(["iptables-save"], capture_output=True, text=True).stdout)
""")


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Testbed]:
    if os.geteuid() != 0 or shutil.which("ping") is None:
        pytest.skip("needs root and ping (builds network namespaces and NFQUEUE rules)")
    bed = Testbed("k8sp", hosts=2)
    try:
        yield bed
    finally:
        bed.close()
    assert bed.leftovers() == []


def _in_pod(bed: Testbed, latency_ms: float) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["ip", "netns", "exec", bed.hosts[0], sys.executable, "-c", POD, str(bed.ips[0]),
         str(bed.ips[1]), str(latency_ms)],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"= ([0-9.]+)/", proc.stdout)
    assert found, proc.stdout
    return float(found.group(1)), proc.stdout


def test_the_pods_own_egress_is_delayed_and_the_rules_go_with_the_engine(bed: Testbed) -> None:
    fastest, out = _in_pod(bed, 30)
    # only this pod's egress is shaped here: one delay per round trip
    assert fastest >= 30, out
    assert "NETEM" not in out.split("rtt")[-1]  # the engine's chain and hook are gone


def test_without_a_request_the_pod_is_not_delayed(bed: Testbed) -> None:
    fastest, out = _in_pod(bed, 0)
    assert fastest < 30, out
