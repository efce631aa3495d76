"""Throughput and accuracy of the userspace shaping engine (C and Python), side by side.

A UDP sender in one host namespace offers N packets/s for some seconds to a receiver in
another, across a hub whose engine holds each packet for --delay-ms. The receiver takes
the kernel's receive timestamp (SO_TIMESTAMPNS) of each packet and subtracts the send
time written in it and the configured delay: that is the added error, end to end (it
includes the ~0.05 ms the path costs unshaped, shown as "base"). The engine's own view,
how late it let packets go past their due time, is printed too.

    sudo python benchmarks/bench_userspace_engine.py [--rates 10000,30000,50000]
        [--seconds 3] [--delay-ms 10] [--size 64] [--impl c,python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _figures import Figure, write

from netem import LinkShape
from netem._userspace import Engine, EngineError, Timing
from netem._userspace._testbed import Testbed

PORT = 9000

SENDER = textwrap.dedent(
    """
    import socket, struct, sys, time
    dst, rate, seconds, size = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    pad, addr, pack, now = bytes(max(0, size - 16)), (dst, 9000), struct.Struct("!QQ").pack, time.time_ns
    total, n, errors = int(rate * seconds), 0, 0
    start = time.monotonic_ns()
    while n < total:
        due = min(total, (time.monotonic_ns() - start) * rate // 1_000_000_000 + 1)
        if n >= due:
            time.sleep(0.0002)
            continue
        while n < due:
            try:
                s.sendto(pack(n, now()) + pad, addr)
            except OSError:
                errors += 1
            n += 1
    print(n, errors, (time.monotonic_ns() - start) / 1e9)
    """
)

# The same sender in C, built when a compiler is there: a Python sender cannot
# offer much more than ~20,000 packets/s here, since each send carries the packet through
# the veth, the bridge and netfilter up to the queue in the sender's own time.
SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
static int64_t ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}
int main(int argc, char **argv) {
    if (argc != 5) return 2;
    long rate = atol(argv[2]), total = (long)(rate * atof(argv[3])), n = 0, errs = 0;
    int size = atoi(argv[4]) < 16 ? 16 : atoi(argv[4]), sb = 8 << 20;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9000)};
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    connect(s, (struct sockaddr *)&a, sizeof a);
    static char buf[65536];
    int64_t start = ns(CLOCK_MONOTONIC);
    while (n < total) {
        long due = (long)((ns(CLOCK_MONOTONIC) - start) * (double)rate / 1e9) + 1;
        if (due > total) due = total;
        if (n >= due) {
            struct timespec t = {0, 50000};
            nanosleep(&t, 0);
            continue;
        }
        for (; n < due; n++) {  /* stamped just before its own send: no batch to wait in */
            uint64_t seq = htobe64(n), t = htobe64(ns(CLOCK_REALTIME));
            memcpy(buf, &seq, 8);
            memcpy(buf + 8, &t, 8);
            if (send(s, buf, size, 0) < 0) errs++;
        }
    }
    printf("%ld %ld %f\n", n, errs, (ns(CLOCK_MONOTONIC) - start) / 1e9);
    return 0;
}
"""

RECEIVER = textwrap.dedent(
    """
    import json, socket, struct, sys
    ip, expected, delay_ns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 64 << 20)
    r.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
    r.bind((ip, 9000))
    print("listening", flush=True)
    r.settimeout(30)
    unpack, ts = struct.Struct("!QQ").unpack_from, struct.Struct("qq").unpack
    errors, seen, first, last = [], set(), None, None
    while len(seen) < expected:
        try:
            data, anc, _, _ = r.recvmsg(2048, 64)
        except socket.timeout:
            break
        r.settimeout(2)
        sec, nsec = ts(anc[0][2][:16])
        rx = sec * 1_000_000_000 + nsec
        seq, sent = unpack(data)
        seen.add(seq)
        errors.append(rx - sent - delay_ns)
        first = rx if first is None else first
        last = rx
    errors.sort()
    q = lambda p: errors[min(len(errors) - 1, int(p * len(errors)))] / 1e6 if errors else None
    print(json.dumps({"received": len(seen), "copies": len(errors), "p50_ms": q(0.5),
                      "p99_ms": q(0.99), "max_ms": q(1.0), "min_ms": q(0.0),
                      "span_s": (last - first) / 1e9 if errors else 0}))
    """
)


def engine_cpu_s(engine: Engine) -> float:
    """CPU seconds the engine process has used (user + system)."""
    fields = Path(f"/proc/{engine.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_sender(directory: Path) -> list[str]:
    """argv prefix of the fastest sender available: C if it compiles, else Python."""
    src, binary = directory / "sender.c", directory / "sender"
    src.write_text(SENDER_C)
    proc = subprocess.run(
        ["cc", "-O2", "-o", str(binary), str(src)], capture_output=True, check=False
    )
    return [str(binary)] if proc.returncode == 0 else [sys.executable, "-c", SENDER]


def run_flow(
    tb: Testbed, sender: list[str], rate: int, seconds: float, size: int, delay_ms: float
) -> dict[str, float]:
    expected = int(rate * seconds)
    receiver = tb.popen(
        tb.hosts[1],
        [sys.executable, "-c", RECEIVER, str(tb.ips[1]), str(expected), str(int(delay_ms * 1e6))],
        stdout=subprocess.PIPE,
    )
    try:
        assert receiver.stdout is not None
        receiver.stdout.readline()  # listening
        sent_by = tb.exec(
            tb.hosts[0],
            [*sender, str(tb.ips[1]), str(rate), str(seconds), str(size)],
        )
        sent, send_errors, duration = sent_by.stdout.split()
        result: dict[str, float] = json.loads(receiver.stdout.readline())
    finally:
        receiver.kill()
        receiver.wait()
    result.update(sent=int(sent), send_errors=int(send_errors), send_s=float(duration))
    return result


def print_row(
    impl: str, rate: int, r: dict[str, float], timing: Timing | None, cpu_us: float | None
) -> None:
    through = r["received"] / r["send_s"]
    loss = 100 * (1 - r["received"] / max(1, r["sent"]))
    engine = (
        f"{timing.p50_us / 1000:>8.3f} {timing.p99_us / 1000:>8.3f} {cpu_us:>7.1f}"
        if timing is not None and cpu_us is not None
        else f"{'-':>8} {'-':>8} {'-':>7}"
    )
    print(
        f"{impl:<7} {rate:>9} {through:>9.0f} {loss:>6.2f} "
        f"{r['p50_ms'] or 0:>8.3f} {r['p99_ms'] or 0:>8.3f} {r['max_ms'] or 0:>8.3f} {engine}",
        flush=True,
    )


def _figures(impl: str, rate: int, r: dict[str, float], floor: dict[str, float] | None,
             cpu_us: float) -> list[Figure]:
    """The engine's throughput, added error (p50 and p99: a median alone hides a tail of
    tens of ms) and CPU per packet at one offered rate; the peer is the same path with no
    engine, at the same rate, in the same run (the noise floor)."""
    def through(x: dict[str, float]) -> float:
        return x["received"] / x["send_s"]

    def error(q: str) -> Figure:
        return Figure(f"userspace engine ({impl}): error {q} at {rate:,}/s", r[f"{q}_ms"] or 0.0,
                      "ms", peer, (floor[f"{q}_ms"] or 0.0) if floor else None)

    peer = "no engine (the path alone)" if floor is not None else None
    return [
        Figure(f"userspace engine ({impl}): through at {rate:,}/s offered", through(r),
               "pkts/s", peer, through(floor) if floor else None),
        error("p50"),
        error("p99"),
        Figure(f"userspace engine ({impl}): CPU per packet at {rate:,}/s", round(cpu_us, 1),
               "us"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10000,30000,50000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=64, help="UDP payload bytes")
    parser.add_argument(
        "--impl", default="none,c,python", help="none = no engine, the unshaped path's own error"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_userspace_engine: skipped, needs root (network namespaces, NFQUEUE)")
        return 0
    rates = [int(r) for r in args.rates.split(",")]
    with Testbed("uebench", hosts=2) as tb, tempfile.TemporaryDirectory() as tmp:
        a, b = tb.ips
        sender = build_sender(Path(tmp))
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        print(
            f"delay {args.delay_ms} ms, {args.size}-byte UDP payloads, {args.seconds} s a run, "
            f"{'C' if len(sender) == 1 else 'Python'} sender"
        )
        header = (
            f"{'engine':<7} {'offered/s':>9} {'through/s':>9} {'loss%':>6} "
            f"{'err p50':>8} {'err p99':>8} {'err max':>8} {'late p50':>8} {'late p99':>8} "
            f"{'cpu us':>7}"
        )
        print(header)
        figures: list[Figure] = []
        floor: dict[int, dict[str, float]] = {}  # rate -> the unshaped path's figures
        for impl in args.impl.split(","):
            for rate in rates:
                if impl == "none":  # the path itself at this rate, unshaped: the noise floor
                    r = run_flow(tb, sender, rate, args.seconds, args.size, 0.0)
                    print_row(impl, rate, r, None, None)
                    floor[rate] = r
                    continue
                try:
                    engine = Engine(tb.hub, seed=1, implementation=impl)  # type: ignore[arg-type]
                    engine.start()
                except EngineError as exc:
                    print(f"{impl:<7} unavailable: {exc}")
                    break
                try:
                    engine.update(
                        {(IPv4Address(a), IPv4Address(b)): LinkShape(latency_ms=args.delay_ms)}
                    )
                    r = run_flow(tb, sender, rate, args.seconds, args.size, args.delay_ms)
                    timing = engine.timing()
                    cpu_us = engine_cpu_s(engine) * 1e6 / max(1, r["sent"])
                finally:
                    engine.stop()
                print_row(impl, rate, r, timing, cpu_us)
                figures += _figures(impl, rate, r, floor.get(rate), cpu_us)
                time.sleep(0.5)
        print("err: received - sent - delay (ms, kernel rx timestamps); "
              "late: engine release - due (ms); "
              "cpu us: engine CPU time per packet (user + system, incl. the re-injection)")  # fmt: skip
    write("userspace_engine", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
