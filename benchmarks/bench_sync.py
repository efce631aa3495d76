"""Sync service benchmark: barrier release latency, pub/sub delivery latency and throughput.

The server runs in this process (Trio, as in the supervisor); N clients run in a second
process over the Unix socket, as instances would. Both read CLOCK_MONOTONIC, which every
process on the host shares, so latencies are measured across the process boundary.

    python benchmarks/bench_sync.py [--sizes 100 1000]

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

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.sync import SyncServer, SyncState, connect_unix  # noqa: E402

BARRIER_ROUNDS = 20
LATENCY_MESSAGES = 200  # paced, for delivery latency
PACE_S = 0.002


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- the clients' process --------------------------------------------------------------


async def clients(path: str, n: int, burst: int) -> dict[str, Any]:
    out: dict[str, Any] = {"barrier": [], "latency": [], "burst": {}}
    async with trio.open_nursery() as nursery:
        conns = []
        for i in range(n):
            conns.append(await nursery.start(_hold, path, f"c/{i}"))

        # Barrier: every client signals and waits; each notes when it was released.
        for r in range(BARRIER_ROUNDS):
            released: list[float] = []

            async def one(c: Any, r: int = r, released: list[float] = released) -> None:
                await c.signal_and_wait(f"round-{r}", n)
                released.append(time.monotonic())

            async with trio.open_nursery() as rn:
                for c in conns:
                    rn.start_soon(one, c)
            out["barrier"].append(released)

        # Delivery latency: paced messages, each carrying its send time.
        async def subscriber(c: Any, topic: str, count: int, sink: list[float] | None,
                             ready: trio.Event, counter: list[int]) -> None:
            async with c.subscribe(topic) as sub:
                counter[0] += 1
                if counter[0] == n:
                    ready.set()
                for _ in range(count):
                    payload = await sub.__anext__()
                    if sink is not None:
                        sink.append(time.monotonic() - payload)

        for topic, count, pace in (("lat", LATENCY_MESSAGES, PACE_S), ("burst", burst, 0.0)):
            sink: list[float] = []
            ready, counter = trio.Event(), [0]
            async with trio.open_nursery() as sn:
                for c in conns:
                    sn.start_soon(subscriber, c, topic, count, sink if topic == "lat" else None,
                                  ready, counter)
                await ready.wait()
                publisher = conns[0]
                t0 = time.monotonic()
                for _ in range(count):
                    await publisher.publish(topic, time.monotonic())
                    if pace:
                        await trio.sleep(pace)
            elapsed = time.monotonic() - t0
            if topic == "lat":
                out["latency"] = sink
            else:
                out["burst"] = {"delivered": count * n, "seconds": elapsed}
        nursery.cancel_scope.cancel()
    return out


async def _hold(path: str, name: str, task_status: trio.TaskStatus[Any]) -> None:
    async with connect_unix(path, name) as c:
        task_status.started(c)
        await trio.sleep_forever()


# -- the server's process --------------------------------------------------------------


async def serve_and_measure(n: int, burst: int) -> dict[str, Any]:
    last_signal: dict[str, float] = {}

    def record(event: dict[str, Any]) -> None:
        if event.get("kind") == "signal" and event.get("seq") == n:
            last_signal[event["state"]] = time.monotonic()

    state = SyncState(None, record=record)
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "sync.sock"
        async with trio.open_nursery() as nursery:
            await nursery.start(SyncServer(state).serve_unix, sock)
            proc = await trio.run_process(
                [sys.executable, __file__, "--client", str(sock), str(n), str(burst)],
                capture_stdout=True, check=True,
            )
            nursery.cancel_scope.cancel()
    result = json.loads(proc.stdout)
    barrier = [
        t - last_signal[f"round-{r}"] for r, times in enumerate(result["barrier"]) for t in times
    ]
    return {"barrier": barrier, "latency": result["latency"], "burst": result["burst"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--client", nargs=3, metavar=("SOCK", "N", "BURST"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        sock, n, burst = args.client
        print(json.dumps(trio.run(clients, sock, int(n), int(burst))))
        return
    print("sync service: server in this process, N clients in another, over a Unix socket")
    header = (f"{'N':>6} {'barrier p50':>12} {'barrier p99':>12} {'deliver p50':>12} "
              f"{'deliver p99':>12} {'msgs/s':>10}")
    print(header)
    for n in args.sizes:
        burst = max(100, 100_000 // n)
        r = trio.run(serve_and_measure, n, burst)
        ms = 1000.0
        rate = r["burst"]["delivered"] / r["burst"]["seconds"]
        print(f"{n:>6} {pct(r['barrier'], .5) * ms:>10.3f}ms {pct(r['barrier'], .99) * ms:>10.3f}ms "
              f"{pct(r['latency'], .5) * ms:>10.3f}ms {pct(r['latency'], .99) * ms:>10.3f}ms "
              f"{rate:>10,.0f}")
        print(f"       ({len(r['barrier'])} barrier releases over {BARRIER_ROUNDS} rounds; "
              f"{len(r['latency'])} paced deliveries; {r['burst']['delivered']:,} burst "
              f"deliveries in {r['burst']['seconds']:.2f}s; mean barrier "
              f"{statistics.mean(r['barrier']) * ms:.3f}ms)")
    print("targets: barrier p50 <= 2 ms at N=100, delivery p50 <= 1 ms, >= 20,000 msgs/s; "
          "Testground's sync service delivers on a 100 ms tick")


if __name__ == "__main__":
    main()
