"""The userspace engine live: a throw-away hub (bridge) with hosts in namespaces, the engine
queueing in the hub, measured with ping. Needs root; skips with the reason otherwise."""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netem import LinkShape
from netem._userspace import Engine, EngineError, _rules
from netem._userspace._testbed import Testbed

from ._timing import remeasured

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parents[2]


def _live_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (builds network namespaces and NFQUEUE rules)"
    for tool in ("ip", "iptables-restore", "iptables-save", "nsenter", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
        return "br_netfilter is not loaded (bridged traffic would not reach iptables)"
    return None


@pytest.fixture
def tb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Testbed]:
    problem = _live_problem()
    if problem:
        pytest.skip(problem)
    monkeypatch.setenv("NETEM_USERSPACE_CACHE", str(tmp_path / "cache"))
    bed = Testbed("uet", hosts=2)
    try:
        yield bed
    finally:
        bed.close()
    assert bed.leftovers() == []


EngineFactory = Callable[..., Engine]


@pytest.fixture
def make_engine(tb: Testbed) -> Iterator[EngineFactory]:
    made: list[Engine] = []

    def make(implementation: str = "c", **kwargs: object) -> Engine:
        if implementation == "python":
            pytest.importorskip("netfilterqueue", reason="the Python engine needs NetfilterQueue")
        engine = Engine(tb.hub, implementation=implementation, seed=42, **kwargs)  # type: ignore[arg-type]
        made.append(engine)
        engine.start()
        return engine

    yield make
    for engine in made:
        engine.stop()


@dataclass
class Ping:
    rtts: dict[int, float]  # icmp_seq -> first reply's RTT (ms)
    dup_rtts: list[float]
    sent: int
    received: int
    duplicates: int


def ping(tb: Testbed, host: int, dst: int, count: int, interval: float = 0.01) -> Ping:
    proc = subprocess.run(
        ["ip", "netns", "exec", tb.hosts[host], "ping", "-n", "-c", str(count), "-i",
         str(interval), "-W", "2", str(tb.ips[dst])],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    return parse_ping(proc.stdout)


def parse_ping(out: str) -> Ping:
    rtts: dict[int, float] = {}
    dups: list[float] = []
    for m in re.finditer(r"icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms( \(DUP!\))?", out):
        if m.group(3):
            dups.append(float(m.group(2)))
        else:
            rtts[int(m.group(1))] = float(m.group(2))
    summary = re.search(r"(\d+) packets transmitted, (\d+) received(?:, \+(\d+) duplicates)?", out)
    assert summary, out
    sent, received, duplicates = (int(g or 0) for g in summary.groups())
    return Ping(rtts, dups, sent, received, duplicates)


def iptables_save(tb: Testbed) -> str:
    out = tb.exec(tb.hub, ["iptables-save"]).stdout
    return "\n".join(ln for ln in out.splitlines() if not ln.startswith("#"))


@remeasured
@pytest.mark.parametrize("implementation", ["c", "python"])
def test_rtt_holds_the_set_latency_both_ways(
    tb: Testbed, make_engine: EngineFactory, implementation: str
) -> None:
    a, b = tb.ips
    engine = make_engine(implementation)
    engine.update({(a, b): LinkShape(latency_ms=20), (b, a): LinkShape(latency_ms=20)})
    for src, dst in ((0, 1), (1, 0)):
        result = ping(tb, src, dst, 40)
        rtts = list(result.rtts.values())
        assert result.received == 40
        # never early, and at most ~1 ms late over the two held legs
        assert min(rtts) >= 40.0
        assert statistics.median(rtts) <= 41.0, rtts
        # a shared CI machine may stall any process for a moment: allow a few outliers
        assert statistics.quantiles(rtts, n=10)[-1] <= 42.0, (rtts, engine.timing())
    stats = engine.stats()
    for pair in ((a, b), (b, a)):
        assert stats[pair].packets == 80 and stats[pair].drops == 0
        assert stats[pair].queue_delay_ms == pytest.approx(20.0, abs=0.5)
    # Held packets leave on time: the median well within the 1 ms target (the Python
    # engine's wakeups are coarser). The tail is not asserted here: over 160 packets p99
    # is the worst one or two, and one stall of a shared CI machine (16 ms seen) delays
    # every packet held across it. The RTT quantiles above bound the bulk; the max only
    # catches gross lateness (a wrong unit would hold a packet for seconds); the benchmark
    # (bench_userspace_engine.py) shows p99 over thousands of packets.
    timing = engine.timing()
    assert timing.count >= 80
    assert timing.p50_us < (300 if implementation == "c" else 1000), timing
    assert timing.max_us < 250_000, timing


@remeasured
def test_jitter_spreads_within_bounds(tb: Testbed, make_engine: EngineFactory) -> None:
    a, b = tb.ips
    engine = make_engine()
    engine.update({(a, b): LinkShape(latency_ms=20, jitter_ms=5)})
    rtts = list(ping(tb, 0, 1, 200, 0.005).rtts.values())
    assert len(rtts) == 200
    # never early; a busy shared machine may delay a few replies, so the upper bound and
    # the spread are checked on quantiles, not on the extremes
    q = statistics.quantiles(rtts, n=20)
    assert min(rtts) >= 15.0 and q[-1] <= 26.0, (min(rtts), q)
    assert min(rtts) < 16.0 and q[-1] > 23.0  # the whole range is used
    iqr = q[14] - q[4]  # uniform over 15..25 ms: 5 ms
    assert 4.0 <= iqr <= 6.0, q


def test_loss_rate(tb: Testbed, make_engine: EngineFactory) -> None:
    a, b = tb.ips
    engine = make_engine()
    engine.update({(a, b): LinkShape(latency_ms=1, loss_pct=30)})
    result = ping(tb, 0, 1, 400, 0.002)
    lost = result.sent - result.received
    assert 88 <= lost <= 152, lost  # 120 expected, sd 9.2
    stats = engine.stats()[(a, b)]
    assert stats.drops == lost and stats.packets == 400


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_duplicates_arrive_delayed(
    tb: Testbed, make_engine: EngineFactory, implementation: str
) -> None:
    a, b = tb.ips
    engine = make_engine(implementation)
    engine.update({(a, b): LinkShape(latency_ms=5, duplicate_pct=50)})
    result = ping(tb, 0, 1, 100)
    assert result.received == 100
    assert 32 <= result.duplicates <= 68, result.duplicates  # 50 expected, sd 5
    assert min(result.dup_rtts) >= 5.0


def test_corrupted_packets_fail_the_receivers_checksum(
    tb: Testbed, make_engine: EngineFactory
) -> None:
    a, b = tb.ips

    def csum_errors() -> int:
        snmp = tb.exec(tb.hosts[1], ["cat", "/proc/net/snmp"]).stdout.splitlines()
        names, values = [ln.split() for ln in snmp if ln.startswith("Icmp:")][:2]
        return int(values[names.index("InCsumErrors")])

    engine = make_engine()
    engine.update({(a, b): LinkShape(latency_ms=1, corrupt_pct=100)})
    before = csum_errors()
    result = ping(tb, 0, 1, 20)
    assert result.received == 0
    assert csum_errors() - before == 20
    assert engine.stats()[(a, b)].drops == 0  # not lost by the engine: spoiled


@remeasured
def test_reorder_sends_a_share_without_delay(tb: Testbed, make_engine: EngineFactory) -> None:
    a, b = tb.ips
    engine = make_engine()
    engine.update({(a, b): LinkShape(latency_ms=30, reorder_pct=50)})
    rtts = list(ping(tb, 0, 1, 200, 0.005).rtts.values())
    fast = sum(r < 15 for r in rtts)
    assert len(rtts) == 200 and 70 <= fast <= 130, fast
    # A delayed packet is never early. The band between the shares holds no packet, save the
    # odd unshaped one a stalled shared host made late (a quantile, not an extreme).
    between = sorted(r for r in rtts if 5 <= r < 30)
    assert len(between) <= 4, between


@remeasured
def test_a_change_mid_run_takes_effect(tb: Testbed, make_engine: EngineFactory) -> None:
    a, b = tb.ips
    engine = make_engine()
    pid = engine.pid
    engine.update({(a, b): LinkShape(latency_ms=10)})
    proc = tb.popen(
        tb.hosts[0],
        ["ping", "-n", "-c", "100", "-i", "0.02", str(b)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        engine.update({(a, b): LinkShape(latency_ms=50)})
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    result = parse_ping(out)
    early = [rtt for seq, rtt in result.rtts.items() if seq <= 30]
    late = [rtt for seq, rtt in result.rtts.items() if seq >= 70]
    assert len(early) >= 25 and len(late) >= 25
    assert min(early) >= 10 and 10 <= statistics.median(early) <= 11, early
    assert min(late) >= 50 and 50 <= statistics.median(late) <= 51, late
    assert sum(r <= 12 for r in early) >= 0.75 * len(early), early
    assert engine.pid == pid  # changed in place, not restarted


@pytest.mark.parametrize("preexisting", [False, True], ids=["fresh-hub", "hub-with-rules"])
def test_stop_removes_rules_and_process(
    tb: Testbed, make_engine: EngineFactory, preexisting: bool
) -> None:
    a, b = tb.ips
    if preexisting:  # as netem.Network leaves it: a drop chain first in FORWARD
        tb.exec(tb.hub, ["iptables", "-N", "NETEM-DROP"])
        tb.exec(tb.hub, ["iptables", "-I", "FORWARD", "1", "-j", "NETEM-DROP"])
    before = iptables_save(tb)
    engine = make_engine()
    pid = engine.pid
    assert pid is not None
    engine.update({(a, b): LinkShape(latency_ms=30), (b, a): LinkShape(latency_ms=30)})
    assert "NFQUEUE" in iptables_save(tb)
    forward = [ln for ln in iptables_save(tb).splitlines() if ln.startswith("-A FORWARD")]
    # first: the drops judge the packets it lets go (marked, skipping it), at their due time
    assert "-j NETEM-QUEUE" in forward[0]
    assert ("-A FORWARD -j NETEM-DROP" in forward) == preexisting
    assert "netem-copies" in tb.exec(tb.hub, ["ip", "-br", "link"]).stdout
    engine.stop()
    engine.stop()
    assert iptables_save(tb) == before
    assert "netem-copies" not in tb.exec(tb.hub, ["ip", "-br", "link"]).stdout
    assert not Path(f"/proc/{pid}").exists()
    # the median: one late echo on a busy host is not a shape left behind (that adds 60 ms)
    assert statistics.median(ping(tb, 0, 1, 5).rtts.values()) < 10  # unshaped again


def test_the_engine_dies_with_its_parent_and_traffic_still_flows(tb: Testbed) -> None:
    a, b = tb.ips
    script = textwrap.dedent(
        f"""
        import sys, time
        from ipaddress import IPv4Address as A
        from netem import LinkShape
        from netem._userspace import Engine
        e = Engine({tb.hub!r}, seed=1)
        e.start()
        e.update({{(A({str(a)!r}), A({str(b)!r})): LinkShape(latency_ms=20)}})
        print(e.pid, flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert min(ping(tb, 0, 1, 3).rtts.values()) >= 20
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}").exists() else ""
        if "State:\tZ" in status:
            break
        time.sleep(0.05)
    status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}").exists() else ""
    assert status == "" or "State:\tZ" in status, status
    # its rules are still there, but --queue-bypass lets the traffic through unshaped
    assert "NFQUEUE" in iptables_save(tb)
    result = ping(tb, 0, 1, 5)
    assert result.received == 5 and max(result.rtts.values()) < 10


def test_a_ctrl_c_for_the_program_does_not_end_the_engine(tb: Testbed) -> None:
    """The terminal sends Ctrl-C to its whole foreground process group: the engine, in its
    parent's group, exited, and an interrupted harness run noted it had died."""
    a, b = tb.ips
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from ipaddress import IPv4Address as A
        from netem import LinkShape
        from netem._userspace import Engine
        e = Engine({tb.hub!r}, seed=1)
        e.start()
        e.update({{(A({str(a)!r}), A({str(b)!r})): LinkShape(latency_ms=20)}})
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the program handles its own Ctrl-C
        os.killpg(0, signal.SIGINT)
        time.sleep(0.5)
        print(e.exit_status(), flush=True)
        e.stop()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
        start_new_session=True, check=True,
    ).stdout
    assert out.strip() == "None"


def test_a_queue_held_by_another_engine_is_a_clear_error(
    tb: Testbed, make_engine: EngineFactory
) -> None:
    make_engine()
    before = iptables_save(tb)
    second = Engine(tb.hub, seed=1, implementation="c")
    with pytest.raises(EngineError, match="cannot bind queue 0"):
        second.start()
    assert second.pid is None
    assert iptables_save(tb) == before


def test_failed_rules_leave_the_previous_state_whole(
    tb: Testbed, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tb.ips
    engine = make_engine()
    engine.update({(a, b): LinkShape(latency_ms=20)})
    rules = iptables_save(tb)

    def refuse(netns: str, text: str) -> None:
        raise _rules.RulesError("iptables-restore in the hub: refused for the test")

    monkeypatch.setattr(_rules, "restore", refuse)
    with pytest.raises(EngineError, match="refused for the test"):
        engine.update({(a, b): LinkShape(latency_ms=50), (b, a): LinkShape(latency_ms=50)})
    monkeypatch.undo()
    assert iptables_save(tb) == rules
    assert set(engine.stats()) == {(a, b)}
    rtts = list(ping(tb, 0, 1, 10).rtts.values())
    assert min(rtts) >= 20 and statistics.median(rtts) <= 21  # 20 ms one way, as before


@remeasured
def test_a_full_matrix_of_many_hosts(tb: Testbed, make_engine: EngineFactory) -> None:
    hosts = [IPv4Address("198.18.0.0") + i for i in range(1, 61)]
    matrix = {(s, d): LinkShape(latency_ms=1 + i % 9) for i, (s, d) in
              enumerate((s, d) for s in hosts for d in hosts if s != d)}  # fmt: skip
    before = iptables_save(tb)
    engine = make_engine()
    engine.update(matrix)
    saved = iptables_save(tb)
    assert saved.count("-j NFQUEUE") == 60 * 59 and saved.count(":NETEM-Q-") == 60
    assert len(engine.stats()) == 60 * 59
    a, b = tb.ips
    expected = matrix[(a, b)].latency_ms + matrix[(b, a)].latency_ms
    rtts = list(ping(tb, 0, 1, 10).rtts.values())
    assert min(rtts) >= expected and statistics.median(rtts) <= expected + 1
    engine.update({})
    assert "NFQUEUE" not in iptables_save(tb)
    engine.stop()
    assert iptables_save(tb) == before


def test_a_killed_engine_is_reported_and_stop_still_cleans_up(
    tb: Testbed, make_engine: EngineFactory
) -> None:
    a, b = tb.ips
    before = iptables_save(tb)
    engine = make_engine()
    engine.update({(a, b): LinkShape(latency_ms=20)})
    assert engine.pid is not None
    os.kill(engine.pid, signal.SIGKILL)
    time.sleep(0.2)
    assert statistics.median(ping(tb, 0, 1, 3).rtts.values()) < 10  # fail-open: --queue-bypass
    with pytest.raises(EngineError, match="the engine has died"):
        engine.update({(a, b): LinkShape(latency_ms=30)})
    engine.stop()
    assert iptables_save(tb) == before


def test_a_reply_given_up_on_is_not_taken_for_the_next(
    tb: Testbed, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine that answers a commit after the timeout: its late "ok" was read as the
    reply to the next request (stats came back empty, and every reply after was the one
    before's), and the table it was refused stayed in force."""
    import netem._userspace._engine as engine_module

    a, b = tb.ips
    engine = make_engine()
    engine.update({(a, b): LinkShape(latency_ms=10)})
    assert engine.pid is not None
    monkeypatch.setattr(engine_module, "_REPLY_TIMEOUT", 0.5)
    os.kill(engine.pid, signal.SIGSTOP)
    try:
        with pytest.raises(EngineError, match="did not answer"):
            engine.update({(a, b): LinkShape(latency_ms=40), (b, a): LinkShape(latency_ms=40)})
    finally:
        os.kill(engine.pid, signal.SIGCONT)
    assert set(engine.stats()) == {(a, b)}  # the table the rules match, committed again
    assert statistics.median(ping(tb, 0, 1, 5).rtts.values()) < 30
    engine.update({(a, b): LinkShape(latency_ms=20)})
    assert engine.stats()[(a, b)].packets >= 5
    assert engine.timing().count >= 5


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_max_queue_caps_the_packets_held(
    tb: Testbed, make_engine: EngineFactory, implementation: str
) -> None:
    """The Python engine held every packet: it bound its queue at 65,536 whatever
    `max_queue` said."""
    a, b = tb.ips
    engine = make_engine(implementation, max_queue=5)
    engine.update({(a, b): LinkShape(latency_ms=500)})
    result = ping(tb, 0, 1, 20, interval=0.01)
    assert 3 <= result.received <= 7, result


def test_testbed_hosts_know_each_other_without_arp(tb: Testbed) -> None:
    """Permanent entries, as netem.Network's hosts get: the live tests do not depend on the
    kernel's neighbour table, which every namespace shares (a big run beside may fill it)."""
    from netem._names import host_mac

    for host, peer in ((0, 1), (1, 0)):
        out = tb.exec(tb.hosts[host], ["ip", "neigh", "show", str(tb.ips[peer])]).stdout
        assert f"lladdr {host_mac(tb.ips[peer])} PERMANENT" in out, out
