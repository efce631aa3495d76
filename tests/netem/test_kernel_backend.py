"""The kernel backend's behaviour around the shaping itself: refusing without sch_netem,
validating before touching anything, and rolling back a change the kernel refuses.

The htb part works without sch_netem, so most of this runs live on any machine; the
measured shaping is in test_shaping_live.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address

import pytest

import netem
from netem import KernelBackend, LinkShape, Network, NetworkError, RequestError
from netem._backends import _kernel as kernel_module
from netem._backends import _tc_netlink
from netem._backends._tc_spec import DstFilter, Op, Request, request
from netem._probe import ProbeResult


def _no_netem() -> ProbeResult:
    return ProbeResult("sch_netem", False, "kernel refused it: No such file or directory")


def _netem_ok() -> ProbeResult:
    return ProbeResult("sch_netem", True)


def test_attach_without_sch_netem_is_one_line_and_touches_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kernel_module, "probe_sch_netem", _no_netem)
    backend = KernelBackend()
    host = netem.HostInfo("h1", "no-such-netns", IPv4Address("198.18.0.1"), "eth0", "p1")
    with pytest.raises(NetworkError) as info:
        backend.attach("no-such-hub", [host])
    message = str(info.value)
    assert "sch_netem" in message and "userspace" in message and "\n" not in message
    backend.close()  # nothing attached: still fine


def test_network_with_kernel_backend_fails_cleanly_without_sch_netem(
    prefix: str, host_state: Callable[[], dict[str, str]]
) -> None:
    if netem.has_sch_netem():
        pytest.skip("this kernel has sch_netem; the refusal is tested with a fake probe above")
    before = host_state()
    net = Network(prefix=prefix, backend="kernel")
    with pytest.raises(NetworkError, match="sch_netem"):
        net.build(2)
    net.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed
    assert host_state() == before


def classes(host: netem.Host) -> str:
    return subprocess.run(
        ["tc", "-n", host.netns, "class", "show", "dev", host.ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def filters(host: netem.Host) -> str:
    return subprocess.run(
        ["tc", "-n", host.netns, "filter", "show", "dev", host.ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def caps_network(
    prefix: str, live: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Network, KernelBackend]]:
    """Three hosts under a kernel backend told sch_netem exists; only rate caps are applied,
    which need htb alone, so this runs on any kernel."""
    monkeypatch.setattr(kernel_module, "probe_sch_netem", _netem_ok)
    backend = KernelBackend()
    with Network(prefix=prefix, backend=backend) as net:
        net.build(3)
        yield net, backend


def test_bad_matrix_is_refused_before_anything_changes(
    caps_network: tuple[Network, KernelBackend],
) -> None:
    net, backend = caps_network
    a, b, c = net.hosts
    backend.apply({(a.ip, b.ip): LinkShape(bandwidth_bps=1_000_000)})
    before = classes(a)
    stranger = IPv4Address("198.18.9.9")
    for matrix, message in [
        ({(a.ip, stranger): LinkShape(bandwidth_bps=8000)}, "not an attached host"),
        ({(a.ip, a.ip): LinkShape(bandwidth_bps=8000)}, "same host twice"),
        ({(a.ip, c.ip): "fast"}, "not a LinkShape"),
    ]:
        with pytest.raises(RequestError, match=message) as info:
            backend.apply(matrix)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
        assert classes(a) == before


def test_refused_change_is_rolled_back_on_every_host(
    caps_network: tuple[Network, KernelBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    net, backend = caps_network
    a, b, c = net.hosts
    backend.apply(
        {
            (a.ip, b.ip): LinkShape(bandwidth_bps=1_000_000),
            (b.ip, c.ip): LinkShape(bandwidth_bps=2_000_000),
        }
    )
    before = {h.name: (classes(h), filters(h)) for h in net.hosts}

    armed = [True]

    def failing(op: Op) -> Request:
        # the first filter added (c's, to b; a and b only change a rate) gets a parent
        # qdisc that does not exist, so the kernel refuses it; the rollback's adds pass
        command, kind, handle, kwargs = request(op)
        if armed[0] and op.action == "add" and isinstance(op.spec, DstFilter):
            armed[0] = False
            kwargs = {**kwargs, "parent": 0x50000}
        return command, kind, handle, kwargs

    monkeypatch.setattr(_tc_netlink, "request", failing)
    with pytest.raises(NetworkError) as info:
        backend.apply(
            {
                (a.ip, b.ip): LinkShape(bandwidth_bps=4_000_000),  # changed on a
                (b.ip, c.ip): LinkShape(bandwidth_bps=3_000_000),  # changed on b
                (c.ip, b.ip): LinkShape(bandwidth_bps=5_000_000),  # refused on c
            }
        )
    assert "failed" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setattr(_tc_netlink, "request", request)
    assert {h.name: (classes(h), filters(h)) for h in net.hosts} == before
    # and the backend still works from the restored state
    backend.apply({(c.ip, b.ip): LinkShape(bandwidth_bps=5_000_000)})
    assert "rate 5Mbit" in classes(c)
    assert "rate 1Mbit" not in classes(a)


def test_stats_count_the_class_traffic(caps_network: tuple[Network, KernelBackend]) -> None:
    net, backend = caps_network
    a, b, _ = net.hosts
    backend.apply({(a.ip, b.ip): LinkShape(bandwidth_bps=50_000_000)})
    subprocess.run(
        ["ip", "netns", "exec", a.netns, "ping", "-n", "-c", "7", "-i", "0.01", str(b.ip)],
        capture_output=True,
        check=True,
    )
    stats = backend.stats()
    assert set(stats) == {(a.ip, b.ip)}
    assert stats[(a.ip, b.ip)].packets >= 7  # ARP may add one
    assert stats[(a.ip, b.ip)].bytes >= 7 * 98
