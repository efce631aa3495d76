"""The floor under `bench_sync.py`'s fan-out figure on this machine: no service, no JSON.

One socket pair per subscriber; N Trio tasks in `procs` processes (as `bench_sync.py`
spreads its clients, each process pinned to a core of its own) each wait until their socket
is readable and read it; this process stamps CLOCK_MONOTONIC and writes the stamp to every
socket, one publish every `pace` seconds. The delivery latency of such a fan-out has nothing
in it but the kernel's wake-ups and Trio's scheduling. `bench_sync.py` measures it beside
each of its sizes.

With `relay`, the stamp goes first to a relay process (a blocking read, then the same
writes), as a publish goes through a service's process: the wake-up of that process, idle
between publishes, is in the figure too. No service whose publisher is another process can
deliver faster on the same machine.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time

import trio
from _cores import pin_to_core


def _subscribers(k: int, socks: list[socket.socket], publishes: int,
                 out: multiprocessing.Queue[list[float]]) -> None:
    pin_to_core(k)

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


def _fan_out(fds: list[int], stamp: bytes) -> None:
    for fd in fds:
        os.write(fd, stamp)


def _relay(source: socket.socket, socks: list[socket.socket], publishes: int) -> None:
    fds = [s.fileno() for s in socks]
    with source:
        relayed = 0
        while relayed < publishes:
            stamps = source.recv(65536)
            _fan_out(fds, stamps)
            relayed += stamps.count(b"\n")


def floor(n: int, procs: int, pace: float, publishes: int, relay: bool = False) -> list[float]:
    """Every delivery's latency in seconds in a raw fan-out to `n` subscribers, straight
    from this process or, with `relay`, through a relay process."""
    pairs = [socket.socketpair() for _ in range(n)]
    fds = [ours.fileno() for ours, _theirs in pairs]
    out: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
    children = [multiprocessing.Process(
        target=_subscribers,
        args=(k, [pairs[i][1] for i in range(k, n, procs)], publishes, out),
        daemon=True)
        for k in range(procs)]
    to_relay, relay_end = socket.socketpair()
    if relay:
        children.append(multiprocessing.Process(
            target=_relay, args=(relay_end, [ours for ours, _theirs in pairs], publishes),
            daemon=True))
    for p in children:
        p.start()
    time.sleep(1.0)  # every subscriber waits on its socket
    for _ in range(publishes):
        stamp = b"%.9f\n" % time.monotonic()
        if relay:
            to_relay.sendall(stamp)
        else:
            _fan_out(fds, stamp)
        time.sleep(pace)
    latencies = [x for _ in range(procs) for x in out.get()]
    for p in children:
        p.join()
    for a, b in [*pairs, (to_relay, relay_end)]:
        a.close()
        b.close()
    return latencies
