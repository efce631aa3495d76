"""Live: a real network of namespaces (needs root; the `none` backend, so no shaping)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import netem
from netem import Network

pytestmark = pytest.mark.live


def ping(netns: str, target: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", "-n", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )


def in_ns(netns: str, *cmd: str) -> str:
    return subprocess.run(
        ["ip", "-n", netns, *cmd], capture_output=True, text=True, check=True
    ).stdout


def test_four_hosts_reach_each_other(prefix: str, host_state: Callable[[], dict[str, str]]) -> None:
    before = host_state()
    with Network(prefix=prefix, backend="none") as net:
        hosts = net.build(4)
        for src in hosts:
            for dst in hosts:
                if src != dst:
                    result = ping(src.netns, dst.ip)
                    assert result.returncode == 0, f"{src.name} -> {dst.name}: {result.stdout}"
        assert host_state() == before  # nothing appeared in our namespace while it lived
    assert host_state() == before


def test_layout_names_and_manifest(prefix: str, live: None) -> None:
    with Network(prefix=prefix, backend="none") as net:
        hosts = net.build(2)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        mine = sorted(line.split()[0] for line in listed.splitlines() if line.startswith(prefix))
        assert mine == sorted([f"{prefix}-hub", f"{prefix}-h1", f"{prefix}-h2"])
        hub_links = in_ns(net.hub_netns, "-o", "link")
        assert f"{prefix}-br" in hub_links and f"{prefix}-p1@" in hub_links
        assert f"master {prefix}-br" in hub_links
        host_addr = in_ns(hosts[0].netns, "-o", "-4", "addr")
        assert "inet 198.18.0.1/15" in host_addr and hosts[0].ifname in host_addr
        assert "inet6" not in in_ns(hosts[0].netns, "addr")
        with open(f"/run/netem/{prefix}.json") as f:
            manifest = json.load(f)
        assert manifest["pid"] == os.getpid() and manifest["prefix"] == prefix
        saved = subprocess.run(
            ["ip", "netns", "exec", net.hub_netns, "iptables-save"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        forward = [ln for ln in saved.splitlines() if ln.startswith("-A FORWARD")]
        assert forward[0] == "-A FORWARD -j NETEM-DROP"
        nf = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                net.hub_netns,
                "sysctl",
                "-n",
                "net.bridge.bridge-nf-call-iptables",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert nf == "1"
    assert not os.path.exists(f"/run/netem/{prefix}.json")
    assert not any(n.startswith(prefix) for n in os.listdir("/run/netns"))


def test_no_route_off_the_data_network(prefix: str, live: None) -> None:
    with Network(prefix=prefix, backend="none", subnet="198.19.0.0/24") as net:
        (host,) = net.build(1)
        routes = in_ns(host.netns, "-4", "route", "show", "table", "all")
        data_routes = [r for r in routes.splitlines() if "table local" not in r]
        assert data_routes == [
            f"198.19.0.0/24 dev {host.ifname} proto kernel scope link src 198.19.0.1 "
        ]
        result = ping(host.netns, "192.0.2.1")
        assert result.returncode != 0 and "unreachable" in (result.stdout + result.stderr).lower()
        get = subprocess.run(
            ["ip", "-n", host.netns, "route", "get", "1.1.1.1"], capture_output=True, text=True
        )
        assert get.returncode != 0 and "unreachable" in get.stderr.lower()


def test_processes_left_inside_are_killed_on_close(prefix: str, live: None) -> None:
    with Network(prefix=prefix, backend="none") as net:
        (host,) = net.build(1)
        sleeper = subprocess.Popen(["ip", "netns", "exec", host.netns, "sleep", "60"])
        inside = f"net:[{os.stat(host.netns_path).st_ino}]"
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{sleeper.pid}/ns/net") != inside:
            assert time.monotonic() < deadline, "sleep never entered the namespace"
            time.sleep(0.01)
    assert sleeper.wait(timeout=5) == -9


def test_bad_request_on_live_network_changes_nothing(prefix: str, live: None) -> None:
    with Network(prefix=prefix, backend="none") as net:
        net.build(3)
        net.partition(["h1"], ["h2"])

        def rules() -> str:
            return (
                subprocess.run(
                    ["ip", "netns", "exec", net.hub_netns, "iptables-save", "-t", "filter"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.split("\n", 1)[1]
                .rsplit("# Completed", 1)[0]
            )

        before = rules()
        bad = {
            "rules": [{"peers": ["198.18.0.3"], "drop": True}, {"peers": ["nope"], "drop": True}]
        }
        with pytest.raises(netem.RequestError, match="'nope' is not an IPv4 address"):
            net.apply_request("h1", bad, asked_by="t")
        assert rules() == before
        assert "-A NETEM-D-c6120001 -d 198.18.0.2/32 -j DROP" in before


def test_build_failure_leaves_nothing(
    prefix: str, host_state: Callable[[], dict[str, str]]
) -> None:
    before = host_state()
    squatter = f"/run/netns/{prefix}-h3"
    open(squatter, "w").close()  # a name in the way: the third namespace cannot be made
    try:
        net = Network(prefix=prefix, backend="none")
        with pytest.raises(netem.NetworkError, match=f"network namespace {prefix}-h3 exists"):
            net.build(5)
        assert sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix)) == [
            f"{prefix}-h3"
        ]
        assert not os.path.exists(f"/run/netem/{prefix}.json")
    finally:
        os.unlink(squatter)
    assert host_state() == before


def test_replay_into_a_live_network(prefix: str, live: None, tmp_path: Path) -> None:
    record = tmp_path / "network.jsonl"
    with Network(prefix=prefix, backend="none", record=record) as net:
        net.build(4)
        net.set_default("h1", netem.LinkShape(latency_ms=25))
        net.partition(["h1", "h2"], ["h4"])
        net.apply_request("h3", {"rules": [{"peers": ["198.18.0.1"], "drop": True}]}, "x")
        net.heal(["h2"])
        expected = (net.matrix(), net.drops())

    def drop_rules(hub: str) -> list[str]:
        saved = subprocess.run(
            ["ip", "netns", "exec", hub, "iptables-save", "-t", "filter"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sorted(ln for ln in saved.splitlines() if ln.startswith("-A NETEM-D"))

    with netem.replay(record, prefix=f"{prefix[:-1]}r") as again:
        assert (again.matrix(), again.drops()) == expected
        assert [(h.name, str(h.ip)) for h in again.hosts][-1] == ("h4", "198.18.0.4")
        assert drop_rules(again.hub_netns) == [
            "-A NETEM-D-c6120001 -d 198.18.0.4/32 -j DROP",
            "-A NETEM-D-c6120003 -d 198.18.0.1/32 -j DROP",
            "-A NETEM-D-c6120004 -d 198.18.0.1/32 -j DROP",
            "-A NETEM-DROP -s 198.18.0.1/32 -j NETEM-D-c6120001",
            "-A NETEM-DROP -s 198.18.0.3/32 -j NETEM-D-c6120003",
            "-A NETEM-DROP -s 198.18.0.4/32 -j NETEM-D-c6120004",
        ]


def test_hosts_know_each_other_without_arp(prefix: str, live: None) -> None:
    """Every host has a permanent neighbour entry for every other, with the MAC its peer
    really has, and the bridge knows every host's port: no ARP and no flooding, so the
    kernel's shared table of 1024 learned neighbours does not bound the run."""
    with Network(prefix=prefix, backend="none") as net:
        hosts = net.build(60)  # 60 * 59 = 3540 entries, well over the 1024 learnable
        macs = {
            str(h.ip): json.loads(in_ns(h.netns, "-j", "link", "show", h.ifname))[0]["address"]
            for h in hosts
        }
        for h in (hosts[0], hosts[-1]):
            neigh = json.loads(in_ns(h.netns, "-j", "neigh", "show"))
            assert {(n["dst"], n["lladdr"]) for n in neigh} == {
                (ip, mac) for ip, mac in macs.items() if ip != str(h.ip)
            }
            assert all(n["state"] == ["PERMANENT"] for n in neigh)
        fdb = json.loads(subprocess.run(
            ["ip", "netns", "exec", net.hub_netns, "bridge", "-j", "fdb", "show", "br",
             f"{prefix}-br"], capture_output=True, text=True, check=True,
        ).stdout)  # fmt: skip
        static = {(e["mac"], e["ifname"]) for e in fdb if "static" in e.get("state", "")}
        assert static == {(macs[str(h.ip)], h.hub_ifname) for h in hosts}
        assert ping(hosts[0].netns, hosts[-1].ip).returncode == 0
