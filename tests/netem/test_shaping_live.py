"""Live: shapes measured against what was configured, with every available backend.

Each test builds its own `netem.Network` (unique prefix, removed afterwards) and measures
with ping and iperf3 inside its namespaces only. The kernel backend needs sch_netem (run
these through `python -m tests.kernelvm` on a machine without it); the userspace backend
needs its engine (C build or NetfilterQueue) and NFQUEUE.

Tolerances, stated where they are used:
- latency: a packet is never early (min RTT >= configured - 0.3 ms); it is late by at most
  LATE_MS at the median (on this machine), or at the minimum inside the emulated VM, where
  timer resolution and a slow CPU inflate the spread.
- loss: within 4.5 standard deviations of the binomial count.
- bandwidth: TCP goodput between 80% (headers, slow start) and 102% of the cap.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

import netem
from netem import Host, LinkShape, Network, topology

from ._timing import remeasured

pytestmark = pytest.mark.live

IN_VM = os.environ.get("KERNELVM") == "1"
LATE_MS = 25.0 if IN_VM else 6.0


def backend_problem(name: str) -> str | None:
    """Why `name` cannot shape here, or None."""
    if name == "kernel":
        probe = netem.probe_all()[0]
        if not probe.ok:
            return (
                f"sch_netem is missing ({probe.detail}); "
                "run through `python -m tests.kernelvm -- python -m pytest ...`"
            )
        return None
    try:
        from netem._userspace import BuildError, build_engine
    except ImportError as exc:
        return f"the userspace engine has not landed ({exc})"
    try:
        build_engine()
    except BuildError as exc:
        try:
            import netfilterqueue  # noqa: F401
        except ImportError:
            return f"no userspace engine: {exc}; and NetfilterQueue is not installed"
    nfq = next(p for p in netem.probe_all() if p.name == "nfqueue")
    if not nfq.ok:
        return f"NFQUEUE does not work here ({nfq.detail})"
    return None


@pytest.fixture(params=["kernel", "userspace"])
def backend(request: pytest.FixtureRequest, live: None) -> str:
    name: str = request.param
    problem = backend_problem(name)
    if problem:
        pytest.skip(f"{name} backend: {problem}")
    return name


@pytest.fixture
def network(backend: str, prefix: str) -> Iterator[Network]:
    with Network(prefix=prefix, backend=backend) as net:
        yield net


# -- measuring ---------------------------------------------------------------------------

_TIME = re.compile(r"time=([\d.]+) ms")


def ping_rtts(src: Host, dst: Host, count: int = 20, interval: float = 0.02) -> list[float]:
    """The RTTs (ms) of `count` pings from src to dst; lost ones are left out."""
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            src.netns,
            "ping",
            "-n",
            "-c",
            str(count),
            "-i",
            str(interval),
            "-W",
            "2",
            str(dst.ip),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return [float(x) for x in _TIME.findall(proc.stdout)]


def assert_rtt(rtts: list[float], configured_ms: float, what: str) -> None:
    assert len(rtts) >= 5, f"{what}: only {len(rtts)} replies"
    low = min(rtts)
    typical = low if IN_VM else statistics.median(rtts)
    assert low >= configured_ms - 0.3, f"{what}: min RTT {low:.2f} < configured {configured_ms}"
    assert typical <= configured_ms + LATE_MS, (
        f"{what}: {'min' if IN_VM else 'median'} RTT {typical:.2f} ms, "
        f"configured {configured_ms} ms (+{LATE_MS} allowed)"
    )


def _listens(host: Host, port: int) -> bool:
    out = subprocess.run(["ip", "netns", "exec", host.netns, "ss", "-Hltn"],
                         capture_output=True, text=True, check=False, timeout=30).stdout
    return any(line.split()[3].endswith(f":{port}") for line in out.splitlines()
               if len(line.split()) > 3)


@contextlib.contextmanager
def iperf_server(host: Host) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, "iperf3", "-s", "-1", "-B", str(host.ip)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # listening: a fixed wait was too short when the emulated VM stalled
        deadline = time.monotonic() + 30
        while not _listens(host, 5201):
            assert proc.poll() is None, "iperf3 -s ended before it listened"
            assert time.monotonic() < deadline, "iperf3 -s did not listen within 30 s"
            time.sleep(0.05)
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def goodput_bps(src: Host, dst: Host, seconds: int = 3) -> float:
    """TCP goodput from src to dst as iperf3's receiver measured it."""
    with iperf_server(dst):
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                src.netns,
                "iperf3",
                "-J",
                "-c",
                str(dst.ip),
                "-t",
                str(seconds),
                "-O",
                "1",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 60,
        )
    assert proc.returncode == 0, f"iperf3 failed: {proc.stdout[-500:]} {proc.stderr[-500:]}"
    result = json.loads(proc.stdout)
    return float(result["end"]["sum_received"]["bits_per_second"])


# -- tests -------------------------------------------------------------------------------


@remeasured
def test_latency_each_direction(network: Network) -> None:
    a, b, c = network.build(3)
    network.set_rule(a, b, LinkShape(latency_ms=30))
    network.set_rule(b, a, LinkShape(latency_ms=10))
    network.set_rule(a, c, LinkShape(latency_ms=20))  # c -> a stays unshaped
    assert_rtt(ping_rtts(a, b), 40, "a->b->a")
    assert_rtt(ping_rtts(b, a), 40, "b->a->b")
    assert_rtt(ping_rtts(a, c), 20, "a->c->a")
    assert_rtt(ping_rtts(c, a), 20, "c->a->c")
    # b <-> c is not shaped at all
    # the median: one late echo on a busy host is not a shape (the nearest adds 10 ms)
    assert statistics.median(ping_rtts(b, c, count=5)) < (20 if IN_VM else 5)


@remeasured
def test_default_shape_and_stats(network: Network) -> None:
    a, b, c = network.build(3)
    network.set_default(a, LinkShape(latency_ms=15))
    assert_rtt(ping_rtts(a, b, count=10), 15, "a->b")
    assert_rtt(ping_rtts(a, c, count=10), 15, "a->c")
    stats = network.backend.stats()
    assert stats[(a.ip, b.ip)].packets >= 10
    assert stats[(a.ip, c.ip)].packets >= 10
    assert (b.ip, a.ip) not in stats


def test_loss_rate(network: Network) -> None:
    a, b = network.build(2)
    network.set_rule(a, b, LinkShape(latency_ms=1, loss_pct=20))
    n = 500
    received = len(ping_rtts(a, b, count=n, interval=0.004))
    lost = n - received
    sd = (n * 0.2 * 0.8) ** 0.5
    assert abs(lost - n * 0.2) <= 4.5 * sd, f"lost {lost} of {n}, expected {n * 0.2:.0f}"
    drops = network.backend.stats()[(a.ip, b.ip)].drops
    assert abs(drops - lost) <= 5, f"backend counted {drops} drops, ping saw {lost} lost"


@remeasured
def test_bandwidth_cap(network: Network) -> None:
    a, b = network.build(2)
    cap = 10_000_000
    network.set_rule(a, b, LinkShape(latency_ms=2, bandwidth_bps=cap))
    measured = goodput_bps(a, b, seconds=8 if IN_VM else 3)  # a stall of the VM is lost time
    assert 0.80 * cap <= measured <= 1.02 * cap, f"goodput {measured / 1e6:.2f} Mbit/s, cap 10"
    # the other direction is not capped
    network.set_rule(a, b, None)
    assert goodput_bps(b, a, seconds=4 if IN_VM else 2) > 3 * cap


@remeasured
def test_four_hosts_each_pair_its_own_latency(network: Network) -> None:
    hosts = network.build(4)
    one_way = {}
    for i, src in enumerate(hosts):
        for j, dst in enumerate(hosts):
            if i != j:
                # distinct round trips for every unordered pair: 2^i + 2^j style sums
                one_way[(i, j)] = float(4 * (i + 1) + 11 * (j + 1))
                network.set_rule(src, dst, LinkShape(latency_ms=one_way[(i, j)]))
    pairs = [(i, j) for i in range(4) for j in range(4) if i < j]
    procs = {
        (i, j): subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                hosts[i].netns,
                "ping",
                "-n",
                "-c",
                "10",
                "-i",
                "0.05",
                "-W",
                "2",
                str(hosts[j].ip),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, j in pairs
    }
    for (i, j), proc in procs.items():
        out, _ = proc.communicate(timeout=60)
        rtts = [float(x) for x in _TIME.findall(out)]
        assert_rtt(rtts, one_way[(i, j)] + one_way[(j, i)], f"h{i + 1}<->h{j + 1}")


@remeasured
def test_shape_changed_mid_run_takes_effect(network: Network) -> None:
    a, b = network.build(2)
    network.set_rule(a, b, LinkShape(latency_ms=10))
    proc = subprocess.Popen(
        ["ip", "netns", "exec", a.netns, "ping", "-n", "-c", "60", "-i", "0.05", str(b.ip)],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    network.set_rule(a, b, LinkShape(latency_ms=60))
    out, _ = proc.communicate(timeout=60)
    rtts = [float(x) for x in _TIME.findall(out)]
    assert len(rtts) >= 50
    before, after = rtts[:15], rtts[-15:]
    assert_rtt(before, 10, "before the change")
    assert_rtt(after, 60, "after the change")


def _tc_json(host: Host, what: str) -> list[dict[str, object]]:
    out = subprocess.run(
        ["tc", "-n", host.netns, "-j", what, "show", "dev", host.ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: list[dict[str, object]] = json.loads(out)
    return result


_CLASS = re.compile(r"^class htb (\S+) .*? rate (\S+) ", re.MULTILINE)


def _tc_classes(host: Host) -> list[tuple[str, str]]:
    """(classid, rate as tc prints it) of every htb class; iproute2 6.1 prints htb classes
    as text even with -j, so this reads the text form."""
    out = subprocess.run(
        ["tc", "-n", host.netns, "class", "show", "dev", host.ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(_CLASS.findall(out))


def test_tc_structure_is_exactly_the_layout(network: Network, backend: str) -> None:
    a, b, c = network.build(3)
    network.set_rule(a, b, LinkShape(latency_ms=20, loss_pct=1, bandwidth_bps=5_000_000))
    network.set_rule(a, c, LinkShape(latency_ms=7))
    qdiscs = sorted((q["kind"], q["handle"], q.get("parent", "root")) for q in _tc_json(a, "qdisc"))
    classes = _tc_classes(a)
    # b is the second attached host (slot 0x11), c the third (0x12)
    if backend == "kernel":
        assert qdiscs == [
            ("htb", "1:", "root"),
            ("netem", "11:", "1:11"),
            ("netem", "12:", "1:12"),
        ]
        assert classes == [("1:1", "10Gbit"), ("1:11", "5Mbit"), ("1:12", "10Gbit")]
        netem_11 = next(q for q in _tc_json(a, "qdisc") if q["handle"] == "11:")
        options = netem_11["options"]
        assert isinstance(options, dict)
        assert options["delay"]["delay"] == pytest.approx(0.020)
        assert options["loss-random"]["loss"] == pytest.approx(0.01, abs=1e-4)
    else:
        assert qdiscs == [("htb", "1:", "root")]
        assert classes == [("1:1", "10Gbit"), ("1:11", "5Mbit")]
    # removing the shapes leaves the empty layout, not a trace of the old classes
    network.set_rule(a, b, None)
    network.set_rule(a, c, None)
    assert _tc_classes(a) == [("1:1", "10Gbit")]
    assert [q["kind"] for q in _tc_json(a, "qdisc")] == ["htb"]


def test_dropping_one_destinations_cap_keeps_the_others(network: Network) -> None:
    """Deleting one destination's u32 filter went out with prio 0, which the kernel reads
    as "every filter on the parent": the other destinations' caps stopped holding."""
    a, _, c = network.build(3)
    network.apply_request(a, {"default": {"bandwidth_bps": 5_000_000}}, asked_by="t")
    network.apply_request(
        a, {"rules": [{"peers": [str(c.ip)], "shape": {"bandwidth_bps": 3_000_000}}]},
        asked_by="t",
    )
    rules = [f["options"] for f in _tc_json(a, "filter") if "flowid" in f.get("options", {})]
    # c is the third attached host: slot 0x12, class 1:12
    assert [(r["flowid"], r["match"]["value"]) for r in rules] == [("1:12", f"{int(c.ip):08x}")]
    assert _tc_classes(a) == [("1:1", "10Gbit"), ("1:12", "3Mbit")]
    assert len(ping_rtts(a, c, count=5, interval=0.2)) == 5  # (ping waits 20 ms past the last)
    assert network.backend.stats()[(a.ip, c.ip)].packets >= 5  # through its class


def test_close_removes_everything(
    backend: str, prefix: str, host_state: Callable[[], dict[str, str]]
) -> None:
    before = host_state()
    net = Network(prefix=prefix, backend=backend)
    a, b = net.build(2)
    net.set_rule(a, b, LinkShape(latency_ms=5, bandwidth_bps=1_000_000))
    net.close()
    net.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed
    assert host_state() == before


@remeasured
def test_jitter_spreads_the_delay(network: Network) -> None:
    a, b = network.build(2)
    network.set_rule(a, b, LinkShape(latency_ms=20, jitter_ms=5))
    rtts = ping_rtts(a, b, count=100, interval=0.01)
    assert len(rtts) >= 90
    # uniform over 20 +- 5 ms in both backends: never below 15 ms, rarely near the ends
    assert min(rtts) >= 15 - 0.3, f"min {min(rtts)}"
    assert statistics.median(rtts) <= 20 + LATE_MS
    assert statistics.pstdev(rtts) >= 1.5, f"stdev {statistics.pstdev(rtts):.2f} ms: no jitter"
    if not IN_VM:
        # a busy host can hold back a sample or two; a jitter wider than configured moves many
        beyond = [r for r in rtts if r > 25 + LATE_MS]
        assert len(beyond) <= 3, f"{len(beyond)} RTTs above {25 + LATE_MS} ms: {sorted(beyond)}"


def test_duplicates(network: Network) -> None:
    a, b = network.build(2)
    network.set_rule(a, b, LinkShape(latency_ms=1, duplicate_pct=40))
    n = 200
    proc = subprocess.run(
        ["ip", "netns", "exec", a.netns, "ping", "-n", "-c", str(n), "-i", "0.005", str(b.ip)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    dups = proc.stdout.count("(DUP!)")
    sd = (n * 0.4 * 0.6) ** 0.5
    # each duplicated request gets its own reply: within 4.5 sd of 40%
    assert abs(dups - n * 0.4) <= 4.5 * sd, f"{dups} duplicates of {n}"


def test_corruption_loses_replies(network: Network) -> None:
    a, b = network.build(2)
    network.set_rule(a, b, LinkShape(latency_ms=1, corrupt_pct=30))
    n = 300
    lost = n - len(ping_rtts(a, b, count=n, interval=0.004))
    # a flipped bit breaks a checksum, so the request is dropped by b, but a bit may land
    # where nothing checks it (e.g. padding): between 15% and 40% lost
    assert 0.15 * n <= lost <= 0.40 * n, f"lost {lost} of {n}"


@remeasured
def test_reordering(network: Network) -> None:
    a, b = network.build(2)
    network.set_rule(a, b, LinkShape(latency_ms=20, reorder_pct=50))
    proc = subprocess.run(
        ["ip", "netns", "exec", a.netns, "ping", "-n", "-c", "200", "-i", "0.002", str(b.ip)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    seqs = [int(x) for x in re.findall(r"icmp_seq=(\d+)", proc.stdout)]
    assert len(seqs) >= 190
    late = sum(1 for prev, cur in itertools.pairwise(seqs) if cur < prev)
    # reordered packets skip the delay and overtake the ones held: a clear share arrive
    # before an earlier one
    assert late >= 0.15 * len(seqs), f"{late} of {len(seqs)} replies out of order"
    fast = [t for t in ping_rtts(a, b, count=50, interval=0.01) if t < 10]
    assert fast, "no packet skipped the delay"


@remeasured
def test_ring_topology_is_measured_as_its_shortest_paths(network: Network) -> None:
    hosts = network.build(5)
    graph = topology.ring(5, latency_ms=8)  # one-way per hop; opposite hosts are 2 hops
    matrix = topology.apply_topology(network, graph)
    for j in (1, 2):
        one_way = matrix.latency(0, j)
        assert one_way == 8 * j
        assert_rtt(ping_rtts(hosts[0], hosts[j], count=10), 2 * one_way, f"h1<->h{j + 1}")
