"""Sync service benchmark: barrier release latency, pub/sub delivery latency and throughput.

The server runs in this process (Trio, as in the supervisor); N clients run in other
processes (2 by default, one per core) over the Unix socket, as instances would. Both read CLOCK_MONOTONIC, which every
process on the host shares, so latencies are measured across the process boundary.

    python benchmarks/bench_sync.py [--sizes 100 1000] [--procs 2]

Targets on a 2-core machine: barrier release p50 <= 2 ms at N = 100, delivery p50 <= 1 ms,
>= 20,000 delivered messages/s. (Testground's sync service delivers on a 100 ms tick.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.sync import SyncServer, SyncState, connect_unix  # noqa: E402

BARRIER_ROUNDS = 20
LATENCY_MESSAGES = 200  # paced, for delivery latency
PACE_S = 0.002
DELIVERY_RATE = 10_000  # deliveries/s while latency is measured: load, not saturation


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- the clients' processes -------------------------------------------------------------


async def clients(path: str, n: int, k: int, procs: int, burst: int, pace: float) -> dict[str, Any]:
    """Process k of `procs` holds every procs-th of the n clients; all coordinate through the
    sync service itself (barriers), as instances would."""
    out: dict[str, Any] = {"barrier": [], "latency": [], "burst_end": 0.0, "burst_start": None}
    mine = range(k, n, procs)
    async with anyio.create_task_group() as nursery:
        conns = [await nursery.start(_hold, path, f"c/{i}") for i in mine]

        # Barrier: every client signals and waits; each notes when it was released.
        for r in range(BARRIER_ROUNDS):
            released: list[float] = []

            async def one(c: Any, r: int = r, released: list[float] = released) -> None:
                await c.signal_and_wait(f"round-{r}", n)
                released.append(time.monotonic())

            async with anyio.create_task_group() as rn:
                for c in conns:
                    rn.start_soon(one, c)
            out["barrier"].append(released)

        # Delivery: paced messages carrying their send time (latency), then a burst.
        async def subscriber(c: Any, topic: str, count: int, sink: list[float] | None) -> None:
            async with c.subscribe(topic) as sub:
                await c.signal_entry(f"subscribed-{topic}")
                for _ in range(count):
                    payload = await sub.__anext__()
                    if sink is not None:
                        sink.append(time.monotonic() - payload)
                out["burst_end"] = max(out["burst_end"], time.monotonic())

        for topic, count, gap in (("lat", LATENCY_MESSAGES, pace), ("burst", burst, 0.0)):
            sink: list[float] = []
            async with anyio.create_task_group() as sn:
                for c in conns:
                    sn.start_soon(subscriber, c, topic, count, sink if topic == "lat" else None)
                if k == 0:
                    publisher = conns[0]
                    await publisher.barrier(f"subscribed-{topic}", n)
                    if topic == "burst":
                        out["burst_start"] = time.monotonic()
                    for _ in range(count):
                        await publisher.publish(topic, time.monotonic())
                        if gap:
                            await anyio.sleep(gap)
            if topic == "lat":
                out["latency"] = sink
        # One subscriber, one publisher, while all N stay connected: the service's own latency.
        out["p2p"] = []
        if k == 0:
            async with conns[0].subscribe("p2p") as sub:
                for _ in range(LATENCY_MESSAGES):
                    await conns[0].publish("p2p", time.monotonic())
                    out["p2p"].append(time.monotonic() - await sub.__anext__())
        nursery.cancel_scope.cancel()
    return out


async def _hold(path: str, name: str, task_status: anyio.abc.TaskStatus[Any]) -> None:
    async with connect_unix(path, name) as c:
        task_status.started(c)
        await anyio.sleep_forever()


# -- the server's process --------------------------------------------------------------


async def serve_and_measure(
    n: int, procs: int, burst: int, pace: float, backend: str
) -> dict[str, Any]:
    last_signal: dict[str, float] = {}

    def record(event: dict[str, Any]) -> None:
        if event.get("kind") == "signal" and event.get("seq") == n:
            last_signal[event["state"]] = time.monotonic()

    state = SyncState(None, record=record)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "sync.sock"
        async with trio.open_nursery() as nursery:
            await nursery.start(SyncServer(state).serve_unix, sock)

            async def client_proc(k: int) -> None:
                proc = await trio.run_process(
                    [sys.executable, __file__, "--client", str(sock), str(n), str(k), str(procs),
                     str(burst), repr(pace), backend],
                    capture_stdout=True, check=True,
                )
                results.append(json.loads(proc.stdout))

            async with trio.open_nursery() as clients_nursery:
                for k in range(procs):
                    clients_nursery.start_soon(client_proc, k)
            nursery.cancel_scope.cancel()
    barrier = [
        t - last_signal[f"round-{r}"]
        for res in results for r, times in enumerate(res["barrier"]) for t in times
    ]
    start = next(r["burst_start"] for r in results if r["burst_start"] is not None)
    return {
        "barrier": barrier,
        "latency": [x for r in results for x in r["latency"]],
        "p2p": [x for r in results for x in r["p2p"]],
        "burst": {"delivered": burst * n, "seconds": max(r["burst_end"] for r in results) - start},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--procs", type=int, default=2,
                        help="client processes the N clients are spread over (default 2)")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio",
                        help="the clients' event loop (instances may use either)")
    parser.add_argument("--client", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        sock, n, k, procs, burst, pace, backend = args.client
        print(json.dumps(anyio.run(clients, sock, int(n), int(k), int(procs), int(burst),
                                   float(pace), backend=backend)))
        return
    print(f"sync service: server in this process (trio), N clients ({args.backend}) in "
          f"{args.procs} other processes, over a Unix socket")
    print(f"{'N':>6} {'barrier p50':>12} {'barrier p99':>12} {'fan-out p50':>12} "
          f"{'fan-out p99':>12} {'1:1 p50':>10} {'1:1 p99':>10} {'msgs/s':>10}")
    for n in args.sizes:
        burst = max(100, 100_000 // n)
        pace = max(PACE_S, n / DELIVERY_RATE)
        r = trio.run(serve_and_measure, n, args.procs, burst, pace, args.backend)
        ms = 1000.0
        rate = r["burst"]["delivered"] / r["burst"]["seconds"]
        print(f"{n:>6} {pct(r['barrier'], .5) * ms:>10.3f}ms {pct(r['barrier'], .99) * ms:>10.3f}ms "
              f"{pct(r['latency'], .5) * ms:>10.3f}ms {pct(r['latency'], .99) * ms:>10.3f}ms "
              f"{pct(r['p2p'], .5) * ms:>8.3f}ms {pct(r['p2p'], .99) * ms:>8.3f}ms "
              f"{rate:>10,.0f}")
        print(f"       ({len(r['barrier'])} barrier releases over {BARRIER_ROUNDS} rounds; "
              f"{len(r['latency'])} deliveries paced at one publish per {pace * 1000:g} ms "
              f"({n / pace:,.0f} deliveries/s); {r['burst']['delivered']:,} burst deliveries "
              f"in {r['burst']['seconds']:.2f}s; mean barrier "
              f"{statistics.mean(r['barrier']) * ms:.3f}ms)")
    print("fan-out: publish -> each of the N subscribers; 1:1: publish -> one subscriber while "
          "all N are connected")
    print("targets: barrier p50 <= 2 ms at N=100, delivery p50 <= 1 ms, >= 20,000 msgs/s; "
          "Testground's sync service delivers on a 100 ms tick")


if __name__ == "__main__":
    main()
