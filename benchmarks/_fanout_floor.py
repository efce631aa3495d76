"""The floor under `bench_sync.py`'s fan-out figure on this machine: no service, no JSON.

One socket pair per subscriber; N Trio tasks in `procs` processes (as `bench_sync.py`
spreads its clients) each wait until their socket is readable and read it; this process
stamps CLOCK_MONOTONIC and writes the stamp to every socket, one publish every `pace`
seconds. The delivery latency of such a fan-out has nothing in it but the kernel's
wake-ups and Trio's scheduling: a sync service, which adds the publisher's request and the
wake-up of its own process, cannot deliver faster on the same machine. `bench_sync.py`
measures it beside each of its sizes.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time

import trio


def _subscribers(socks: list[socket.socket], publishes: int,
                 out: multiprocessing.Queue[list[float]]) -> None:
    async def main() -> None:
        latencies: list[float] = []

        async def one(s: socket.socket) -> None:
            got = 0
            while got < publishes:
                await trio.lowlevel.wait_readable(s)
                data = os.read(s.fileno(), 65536)
                now = time.monotonic()
                # A subscriber late by a whole pace reads two stamps at once: each counts.
                for stamp in data.split():
                    latencies.append(now - float(stamp))
                    got += 1

        async with trio.open_nursery() as nursery:
            for s in socks:
                nursery.start_soon(one, s)
        out.put(latencies)

    trio.run(main)


def floor(n: int, procs: int, pace: float, publishes: int) -> list[float]:
    """Every delivery's latency in seconds in a raw fan-out to `n` subscribers."""
    pairs = [socket.socketpair() for _ in range(n)]
    out: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
    children = [multiprocessing.Process(
        target=_subscribers, args=([pairs[i][1] for i in range(k, n, procs)], publishes, out),
        daemon=True)
        for k in range(procs)]
    for p in children:
        p.start()
    time.sleep(1.0)  # every subscriber waits on its socket
    for _ in range(publishes):
        stamp = b"%.9f\n" % time.monotonic()
        for ours, _theirs in pairs:
            os.write(ours.fileno(), stamp)
        time.sleep(pace)
    latencies = [x for _ in children for x in out.get()]
    for p in children:
        p.join()
    for a, b in pairs:
        a.close()
        b.close()
    return latencies
