"""The userspace backend: htb caps plus the NFQUEUE engine, started only when needed,
with the caps put back when the engine refuses a change (live; needs root)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from netem import Host, LinkShape, Network, NetworkError, UserspaceBackend


def classes(netns: str, ifname: str) -> str:
    return subprocess.run(
        ["tc", "-n", netns, "class", "show", "dev", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def net(prefix: str, live: None) -> Iterator[Network]:
    try:
        import netem._userspace  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the userspace engine has not landed: {exc}")
    with Network(prefix=prefix, backend=UserspaceBackend(seed=1)) as network:
        network.build(2)
        yield network


def answers(src: Host, dst: Host) -> bool:
    return subprocess.run(
        ["ip", "netns", "exec", src.netns, "ping", "-n", "-c", "1", "-W", "1", str(dst.ip)],
        capture_output=True,
    ).returncode == 0


def _backend(net: Network) -> UserspaceBackend:
    assert isinstance(net.backend, UserspaceBackend)
    return net.backend


def test_caps_alone_never_start_the_engine(net: Network) -> None:
    a, b = net.hosts
    net.set_rule(a, b, LinkShape(bandwidth_bps=3_000_000))
    assert _backend(net).engine is None
    assert "rate 3Mbit" in classes(a.netns, a.ifname)
    net.set_rule(a, b, LinkShape(latency_ms=5, bandwidth_bps=3_000_000))
    engine = _backend(net).engine
    assert engine is not None and engine.pid is not None


def test_engine_refusal_puts_the_caps_back(net: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    from netem._userspace import EngineError

    a, b = net.hosts
    net.set_rule(a, b, LinkShape(latency_ms=5, bandwidth_bps=3_000_000))
    engine = _backend(net).engine
    assert engine is not None
    before = classes(a.netns, a.ifname)

    def refuse(matrix: object) -> None:
        raise EngineError("queue is gone")

    monkeypatch.setattr(engine, "update", refuse)
    with pytest.raises(NetworkError, match="refused the shapes: queue is gone") as info:
        net.set_rule(a, b, LinkShape(latency_ms=9, bandwidth_bps=7_000_000))
    assert "\n" not in str(info.value)
    assert classes(a.netns, a.ifname) == before
    assert net.matrix()[(a.ip, b.ip)] == LinkShape(latency_ms=5, bandwidth_bps=3_000_000)


def test_missing_engine_is_a_one_line_error(net: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = net.hosts
    monkeypatch.setitem(sys.modules, "netem._userspace", None)
    with pytest.raises(NetworkError, match="userspace engine is not available"):
        net.set_rule(a, b, LinkShape(latency_ms=5, bandwidth_bps=1_000_000))
    # the cap that came with the refused shape was taken back
    assert "rate 1Mbit" not in classes(a.netns, a.ifname)


def test_stats_merge_engine_and_caps(net: Network) -> None:
    a, b = net.hosts
    net.set_rule(a, b, LinkShape(latency_ms=10, bandwidth_bps=20_000_000))
    net.set_rule(b, a, LinkShape(bandwidth_bps=20_000_000))
    subprocess.run(
        ["ip", "netns", "exec", a.netns, "ping", "-n", "-c", "5", "-i", "0.02", str(b.ip)],
        capture_output=True,
        check=True,
    )
    stats = _backend(net).stats()
    held = stats[(a.ip, b.ip)]
    assert held.packets >= 5 and held.queue_delay_ms is not None
    assert 9.5 <= held.queue_delay_ms <= 20
    capped = stats[(b.ip, a.ip)]
    assert capped.packets >= 5 and capped.queue_delay_ms is None


def _kill_engine(net: Network) -> None:
    """SIGKILL the network's engine and wait until the backend knows it died."""
    engine = _backend(net).engine
    assert engine is not None and engine.pid is not None
    os.kill(engine.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while engine.exit_status() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _backend(net).failure() is not None


def test_a_dead_engine_fails_only_the_changes_that_need_it(net: Network) -> None:
    """Every change sends the whole matrix, so with the engine killed (a run with
    --allow-unshaped goes on) every later change failed, partitions and cuts included."""
    a, b = net.hosts
    net.set_rule(a, b, LinkShape(latency_ms=30))
    _kill_engine(net)
    net.partition([a], [b])  # iptables only
    assert not answers(a, b)
    net.heal()
    net.cut([(b, a)])
    net.uncut([(b, a)])
    net.apply_request(b, {"rules": [{"peers": [str(a.ip)], "drop": True}]}, asked_by="t")
    net.apply_request(b, {"default": {"bandwidth_bps": 3_000_000}}, asked_by="t")  # a cap
    assert "rate 3Mbit" in classes(b.netns, b.ifname)
    assert answers(a, b)  # unshaped, with the engine gone (--queue-bypass)
    with pytest.raises(NetworkError, match="the engine has died") as info:
        net.set_rule(a, b, LinkShape(latency_ms=60))
    assert "\n" not in str(info.value)
    assert net.matrix()[(a.ip, b.ip)] == LinkShape(latency_ms=30)
    net.set_rule(a, b, None)  # nothing left to delay: its packets pass unshaped already
    assert (a.ip, b.ip) not in net.matrix()


def test_a_dead_engine_lets_the_cap_of_a_delayed_pair_change(net: Network) -> None:
    """A cap is htb's: changing only the cap of a pair that is also delayed told the
    engine again, so with the engine dead the change failed ("the engine has died")."""
    a, b = net.hosts
    net.set_rule(a, b, LinkShape(latency_ms=30, bandwidth_bps=1_000_000))
    _kill_engine(net)
    net.set_rule(a, b, LinkShape(latency_ms=30, bandwidth_bps=3_000_000))
    assert "rate 3Mbit" in classes(a.netns, a.ifname)
    assert net.matrix()[(a.ip, b.ip)] == LinkShape(latency_ms=30, bandwidth_bps=3_000_000)


def test_a_dead_engine_leaves_the_caps_counters(net: Network) -> None:
    """The caps still work once the engine has died, but reading any counter failed ("the
    engine has died"), so a run's telemetry recorded no link at all from then on."""
    a, b = net.hosts
    net.set_rule(a, b, LinkShape(latency_ms=10))
    net.set_rule(b, a, LinkShape(bandwidth_bps=20_000_000))
    _kill_engine(net)
    assert answers(a, b)
    stats = net.link_stats()
    assert set(stats) == {(b.ip, a.ip)} and stats[(b.ip, a.ip)].packets >= 1
