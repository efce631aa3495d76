"""The htb shaper's housekeeping: room for its sockets, and one socket per namespace."""

from __future__ import annotations

import os
from ipaddress import IPv4Address

import pytest

from netem import LinkShape, Network, NetworkError
from netem._backends import _tc_netlink as tcn


def test_soft_file_limit_is_raised_when_the_sockets_would_not_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    open_now = len(os.listdir("/proc/self/fd"))
    calls: list[tuple[int, int]] = []

    def getrlimit(_: int) -> tuple[int, int]:
        return (open_now + 100, 100_000)

    def setrlimit(_: int, limits: tuple[int, int]) -> None:
        calls.append(limits)

    monkeypatch.setattr("netem._backends._tc_netlink.resource.getrlimit", getrlimit)
    monkeypatch.setattr("netem._backends._tc_netlink.resource.setrlimit", setrlimit)
    tcn._ensure_fd_room(4)  # fits, with the 64 spare
    assert calls == []
    tcn._ensure_fd_room(400)
    assert len(calls) == 1
    soft, hard = calls[0]
    assert soft >= open_now + 400 and hard == 100_000


def test_a_hard_limit_too_low_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def getrlimit(_: int) -> tuple[int, int]:
        return (50, 60)

    def setrlimit(_: int, limits: tuple[int, int]) -> None:
        pytest.fail("the limit must not change")

    monkeypatch.setattr("netem._backends._tc_netlink.resource.getrlimit", getrlimit)
    monkeypatch.setattr("netem._backends._tc_netlink.resource.setrlimit", setrlimit)
    with pytest.raises(NetworkError, match="hard limit is 60") as info:
        tcn._ensure_fd_room(4000)
    assert "\n" not in str(info.value)


def test_one_socket_per_host_and_all_closed_after(prefix: str, live: None) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with Network(prefix=prefix, backend="none") as net:
        hosts = net.build(5)
        shaper = tcn.HtbShaper(leaves=False)
        during = len(os.listdir("/proc/self/fd"))
        shaper.attach([h.info() for h in hosts])
        assert len(os.listdir("/proc/self/fd")) - during <= tcn._FDS_PER_HOST * 5
        shaper.attach([h.info() for h in hosts])  # again: nothing new
        assert len(os.listdir("/proc/self/fd")) - during <= tcn._FDS_PER_HOST * 5
        shaper.apply({(hosts[0].ip, hosts[1].ip): LinkShape(bandwidth_bps=1_000_000)})
        assert {h.name for h in shaper.hosts} == {h.name for h in hosts}
        shaper.close()
        shaper.close()
        assert len(os.listdir("/proc/self/fd")) == during
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_host_is_opened_only_when_a_shape_needs_it_and_keeps_its_layout_after(
    prefix: str, live: None
) -> None:
    """Attaching 1,000 hosts opened 1,000 namespaces and put a layout on each, for a run
    that never shapes: now a host costs nothing until a shape of its own needs it."""
    with Network(prefix=prefix, backend="none") as net:
        hosts = net.build(3)
        a, b, c = (h.ip for h in hosts)
        shaper = tcn.HtbShaper(leaves=False)
        during = len(os.listdir("/proc/self/fd"))
        shaper.attach([h.info() for h in hosts])
        shaper.apply({})
        assert len(os.listdir("/proc/self/fd")) == during  # nothing opened
        assert {h.name for h in shaper.hosts} == {h.name for h in hosts}
        cap = LinkShape(bandwidth_bps=1_000_000)
        shaper.apply({(a, b): cap})
        assert set(shaper._egress) == {a}  # the shaped source only
        assert shaper.stats().keys() == {(a, b)}
        shaper.apply({(c, a): cap})  # a goes back to its empty layout, c is opened
        assert set(shaper._egress) == {a, c}
        assert shaper.stats().keys() == {(c, a)}
        with pytest.raises(Exception, match="not an attached host"):
            shaper.apply({(a, IPv4Address("198.51.100.1")): cap})
        assert shaper.stats().keys() == {(c, a)}  # refused whole: nothing changed
        shaper.close()
        assert len(os.listdir("/proc/self/fd")) == during
