"""Configured vs measured latency of each shaping backend, and how long a matrix takes to apply.

For each backend that works here (the userspace one on a kernel without sch_netem; the
kernel one where sch_netem exists, e.g. inside the kernel VM), two hosts are built and the
direction a -> b is given each latency in turn (b -> a unshaped); a UDP echo from a to b
measures each round trip in microseconds (ping prints whole milliseconds from 100 ms on and
tenths from 10 ms); the round trip is then the configured one-way latency plus the path's
own cost, the echo's included (the "unshaped" line).
Printed per latency: the RTT's min, p50, p99, p50 minus configured ("late"), and that less
the unshaped RTT's p50 ("added": what shaping adds; the figure).
Then a full pair matrix over --hosts hosts (every direction shaped differently) is applied
and changed, timed.

    sudo python benchmarks/bench_shaping_latency.py [--latencies 1,10,50,100] [--count 200]
        [--interval 0.01] [--hosts 10] [--backends userspace,kernel]
    sudo python -m tests.kernelvm -- python benchmarks/bench_shaping_latency.py --backends kernel
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _figures import Figure, write

from netem import LinkShape, Network, NetworkError, has_sch_netem, probe_all

ECHO_PORT = 9
_SERVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(64)
    s.sendto(data, peer)
"""
_PROBE = """
import socket, sys, time
dst, port, count, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, port))
s.settimeout(2.0)
for seq in range(count):
    sent = time.perf_counter_ns()
    s.send(b"%d" % seq)
    try:
        while int(s.recv(64)) != seq:  # a late reply to an earlier probe
            pass
    except TimeoutError:
        continue
    print((time.perf_counter_ns() - sent) / 1e6, flush=True)
    time.sleep(interval)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rtts(netns: str, dst: str, count: int, interval: float) -> list[float]:
    """Round trips in ms of `count` UDP probes from `netns` to the echo at `dst`, one every
    `interval` s after the last reply (a probe unanswered within 2 s is left out)."""
    cmd = ["ip", "netns", "exec", netns, sys.executable, "-c", _PROBE, dst, str(ECHO_PORT),
           str(count), str(interval)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return [float(x) for x in proc.stdout.split()]


@contextlib.contextmanager
def echo(netns: str) -> Iterator[None]:
    """A UDP echo on ECHO_PORT in `netns` while the block runs."""
    cmd = ["ip", "netns", "exec", netns, sys.executable, "-c", _SERVE, str(ECHO_PORT)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise NetworkError(f"the UDP echo in {netns} did not start")
        yield
    finally:
        server.kill()
        server.wait()


def latency_table(backend: str, latencies: list[float], count: int,
                  interval: float) -> list[Figure]:
    print(f"\n{backend} backend: RTT of a UDP echo a->b with a->b shaped (b->a unshaped)")
    print(f"{'configured ms':>14} {'n':>5} {'min':>8} {'p50':>8} {'p99':>8} {'late p50':>9} "
          f"{'added p50':>9}")
    figures = []
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(Network(prefix=f"bsl{backend[:2]}", backend=backend))
        a, b = net.build(2)
        stack.enter_context(echo(b.netns))
        base = rtts(a.netns, str(b.ip), count, interval)
        if not base:
            raise NetworkError("the UDP echo did not answer on the unshaped link")
        unshaped = statistics.median(base)
        print(f"{'unshaped':>14} {len(base):>5} {min(base):>8.3f} {unshaped:>8.3f} "
              f"{percentile(base, 99):>8.3f}")  # fmt: skip
        for lat in latencies:
            net.set_rule(a, b, LinkShape(latency_ms=lat))
            got = rtts(a.netns, str(b.ip), count, interval)
            if not got:
                print(f"{lat:>14g} no replies")
                continue
            p50 = statistics.median(got)
            # What shaping adds: the round trip less the configured latency and less the
            # unshaped round trip (the path's and the probe's own cost).
            added = p50 - lat - unshaped
            print(f"{lat:>14g} {len(got):>5} {min(got):>8.3f} {p50:>8.3f} "
                  f"{percentile(got, 99):>8.3f} {p50 - lat:>+9.3f} {added:>+9.3f}")  # fmt: skip
            figures.append(Figure(f"shaping ({backend}): RTT p50 over the configured {lat:g} ms "
                                  "and the unshaped RTT", added, "ms"))
    return figures


def apply_timing(backend: str, hosts: int) -> list[Figure]:
    with Network(prefix=f"bsa{backend[:2]}", backend=backend) as net:
        t0 = time.perf_counter()
        built = net.build(hosts)
        t_build = time.perf_counter() - t0
        pairs = [(s.ip, d.ip) for s in built for d in built if s != d]
        first = {p: LinkShape(latency_ms=1 + i % 50, bandwidth_bps=10_000_000 + i * 1000)
                 for i, p in enumerate(pairs)}  # fmt: skip
        t0 = time.perf_counter()
        net.backend.apply(first)
        t_first = time.perf_counter() - t0
        second = dict(first)
        for p in pairs[::10]:
            second[p] = LinkShape(latency_ms=77)
        t0 = time.perf_counter()
        net.backend.apply(second)
        t_change = time.perf_counter() - t0
        t0 = time.perf_counter()
        net.backend.apply(second)
        t_same = time.perf_counter() - t0
    print(f"\n{backend} backend, {hosts} hosts ({len(pairs)} directions):")
    print(f"  build incl. attach        {t_build * 1000:9.1f} ms")
    print(f"  apply full matrix         {t_first * 1000:9.1f} ms")
    print(f"  change 10% of directions  {t_change * 1000:9.1f} ms")
    print(f"  apply the same again      {t_same * 1000:9.1f} ms")
    return [Figure(f"shaping ({backend}): apply a full {hosts}-host matrix", t_first * 1000, "ms"),
            Figure(f"shaping ({backend}): change 10% of a {hosts}-host matrix", t_change * 1000,
                   "ms")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latencies", default="1,10,50,100")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--backends", default="userspace,kernel")
    args = parser.parse_args()
    try:
        latencies = [float(x) for x in args.latencies.split(",")]
    except ValueError:
        parser.error(f"--latencies is a comma-separated list of numbers, not {args.latencies!r}")
    figures: list[Figure] = []
    print("probes: " + ", ".join(f"{p.name}={'yes' if p.ok else 'no'}" for p in probe_all()))
    for backend in args.backends.split(","):
        if backend == "kernel" and not has_sch_netem():
            print("\nkernel backend: skipped, no sch_netem here (run it in the kernel VM)")
            continue
        try:
            figures += latency_table(backend, latencies, args.count, args.interval)
            figures += apply_timing(backend, args.hosts)
        except NetworkError as exc:
            print(f"\n{backend} backend: {exc}")
    write("shaping", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
