"""A pod's shaping as its sidecar does it, live: the shaper's userspace mode (netem's engine
on the namespace's own OUTPUT hook, no setns) run inside one host of a throw-away pair of
namespaces, measured with ping; the same code the pods run under `nox -s k8s`. Needs root."""

from __future__ import annotations

import json
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
    import functools, json, subprocess, sys
    from ipaddress import IPv4Address
    import netem._userspace
    from harness.runners.k8s.shaper import egress_for
    me, peer, shape = IPv4Address(sys.argv[1]), IPv4Address(sys.argv[2]), json.loads(sys.argv[3])
    netem._userspace.Engine = functools.partial(netem._userspace.Engine, implementation=sys.argv[4])
    with egress_for("userspace", me) as egress:
        egress.hosts.update({me: 0, peer: 1})
        egress.apply()
        if shape:
            egress.request({"default": shape})
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


def _in_pod(bed: Testbed, latency_ms: float, implementation: str = "auto",
            **shape: float) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if latency_ms:
        shape["latency_ms"] = latency_ms
    proc = subprocess.run(
        ["ip", "netns", "exec", bed.hosts[0], sys.executable, "-c", POD, str(bed.ips[0]),
         str(bed.ips[1]), json.dumps(shape), implementation],
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


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_duplicates_reach_a_peer_whose_mac_the_kernel_knows(
    bed: Testbed, implementation: str
) -> None:
    """A pod's copies are routed by the kernel, which knows the next hop's MAC (a pod
    network's are not netem's 02:00:<address>): every echo request is duplicated, so every
    one is answered twice (the last one's second answer may come after ping has ended)."""
    other_mac = "02:42:ac:11:00:07"
    bed.exec(bed.hosts[1], ["ip", "link", "set", "eth0", "address", other_mac])
    bed.exec(bed.hosts[0], ["ip", "neigh", "replace", str(bed.ips[1]), "lladdr", other_mac,
                            "dev", "eth0", "nud", "permanent"])
    if implementation == "python":
        pytest.importorskip("netfilterqueue")
    _, out = _in_pod(bed, 5, implementation, duplicate_pct=100)
    found = re.search(r"5 received, \+(\d) duplicates", out)
    assert found and int(found.group(1)) >= 4, out
