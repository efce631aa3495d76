"""A network's build returns once the hub's ports are up: the kernel enables a port (and
gives it a queue that does not drop) only when its link watcher gets to it, which can be
well after the build while another network is built or removed (no kernel needed here)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network

import pytest

import netem._build as build
from netem import Host, NetworkError
from netem._build import _netlink as nl

UP, DOWN = nl.IF_OPER_UP, 2


def _hosts(n: int) -> list[Host]:
    net = IPv4Network("198.18.0.0/24")
    return [Host(name=f"h{i}", number=i, netns=f"t-h{i}", ip=IPv4Address(f"198.18.0.{i}"),
                 network=net, ifname=f"t-h{i}", hub_ifname=f"t-p{i}") for i in range(1, n + 1)]


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    pauses: list[float] = []
    monkeypatch.setattr(build.time, "sleep", pauses.append)
    return pauses


def test_the_build_waits_until_every_hosts_port_is_up(
    slept: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = _hosts(3)
    ports = [build._hub_port(h) for h in hosts]
    answers = iter([{1: 0, ports[0]: UP, ports[1]: DOWN},  # one port not listed yet
                    {1: 0, ports[0]: UP, ports[1]: UP, ports[2]: DOWN},
                    {1: 0, **dict.fromkeys(ports, UP)}])
    monkeypatch.setattr(build.nl, "operstates", lambda sock: next(answers))
    with socket.socket() as hub:  # (never read: the dump is faked)
        build._wait_until_up(hub, hosts)
    assert len(slept) == 2 and next(answers, None) is None


def test_ports_that_never_come_up_fail_the_build_saying_how_many(
    slept: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = _hosts(4)
    states = {build._hub_port(h): UP for h in hosts[:1]}
    monkeypatch.setattr(build.nl, "operstates", lambda sock: states)
    with socket.socket() as hub, pytest.raises(
        NetworkError, match=r"^3 of 4 hosts' ports on the bridge were not up 0.2 s after their "
                            r"links were made$"):
        build._wait_until_up(hub, hosts, timeout=0.2)
    assert slept and max(slept) <= 0.05
