"""Sync service benchmark: barrier release latency, pub/sub delivery latency and throughput.

The server runs in this process (Trio, and the collector's setting, of the supervisor); N
clients run in other processes (2 by default, each pinned to a core of its own,
`_cores.py`) over the Unix socket, as
instances would (their imports frozen out of the collector, as the process host leaves
them). Both read CLOCK_MONOTONIC, which every process on the host shares, so latencies are
measured across the process boundary.

The peer: redis-server (Testground's sync service was built on Redis), started by this
script on a Unix socket, measured in the same run by the same client processes, right after
ours, with the same steps: a barrier is SUBSCRIBE to its release channel, INCR of its
counter, and PUBLISH of the release by the client whose INCR reached N; fan-out is PUBLISH
to N SUBSCRIBEd connections (each client has a command connection and a subscriber one).
The Redis client (benchmarks/_resp.py) runs on the same event loop as the sync client.

    python benchmarks/bench_sync.py [--sizes 100 1000] [--procs 2] [--no-redis]

Targets on a 2-core machine: barrier release p50 <= 2 ms at N = 100, fan-out p50 <= 1 ms at
N = 100 and <= 10 ms at N = 1000, >= 20,000 delivered messages/s. (Testground's sync service
delivers on a 100 ms tick.) Each size also prints the fan-out's floors on this machine
(`_fanout_floor.py`: the same subscribers as raw sockets, written to by the publisher
itself, and through a relay process as a service would be). Writes
its figures to outputs/bench/sync.json (_figures.py).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import shutil
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

from _cores import pin_to_core
from _fanout_floor import floor
from _figures import Figure, write
from _resp import Resp

from harness import fewer_collections
from harness.sync import SyncServer, SyncState, connect_unix

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


async def redis_clients(
    path: str, n: int, k: int, procs: int, burst: int, pace: float
) -> dict[str, Any]:
    """The same steps as `clients`, through redis-server (the peer)."""
    out: dict[str, Any] = {"barrier": [], "latency": [], "burst_end": 0.0, "burst_start": None,
                           "barrier_last": {}, "p2p": []}
    mine = range(k, n, procs)
    cmds = [await Resp.connect(path) for _ in mine]
    subs = [await Resp.connect(path) for _ in mine]
    for r in range(BARRIER_ROUNDS):
        released: list[float] = []

        async def one(cmd: Resp, sub: Resp, r: int = r, released: list[float] = released) -> None:
            channel = f"done:round-{r}"
            await sub.command("SUBSCRIBE", channel)
            if await cmd.command("INCR", f"round-{r}") == n:
                out["barrier_last"][r] = time.monotonic()
                await cmd.command("PUBLISH", channel, "1")
            else:
                await sub.read()  # the release
            released.append(time.monotonic())
            await sub.command("UNSUBSCRIBE", channel)

        async with anyio.create_task_group() as rn:
            for cmd, sub in zip(cmds, subs, strict=True):
                rn.start_soon(one, cmd, sub)
        out["barrier"].append(released)

    async def subscriber(cmd: Resp, sub: Resp, topic: str, count: int,
                         sink: list[float] | None) -> None:
        await sub.command("SUBSCRIBE", topic)
        await cmd.command("INCR", f"subscribed-{topic}")
        for _ in range(count):
            message = await sub.read()  # [b"message", topic, payload]
            if sink is not None:
                sink.append(time.monotonic() - float(message[2]))
        out["burst_end"] = max(out["burst_end"], time.monotonic())
        await sub.command("UNSUBSCRIBE", topic)

    publisher = await Resp.connect(path)
    for topic, count, gap in (("lat", LATENCY_MESSAGES, pace), ("burst", burst, 0.0)):
        sink: list[float] = []
        async with anyio.create_task_group() as sn:
            for cmd, sub in zip(cmds, subs, strict=True):
                sn.start_soon(subscriber, cmd, sub, topic, count, sink if topic == "lat" else None)
            if k == 0:
                # Set-up, not measured: a poll will do.
                while int(await publisher.command("GET", f"subscribed-{topic}") or 0) < n:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                if topic == "burst":
                    out["burst_start"] = time.monotonic()
                for _ in range(count):
                    await publisher.command("PUBLISH", topic, repr(time.monotonic()))
                    if gap:
                        await anyio.sleep(gap)
        if topic == "lat":
            out["latency"] = sink
    if k == 0:
        await subs[0].command("SUBSCRIBE", "p2p")
        for _ in range(LATENCY_MESSAGES):
            await cmds[0].command("PUBLISH", "p2p", repr(time.monotonic()))
            out["p2p"].append(time.monotonic() - float((await subs[0].read())[2]))
    for conn in [*cmds, *subs, publisher]:
        await conn.aclose()
    return out


async def both(sock: str, redis: str, n: int, k: int, procs: int, burst: int,
               pace: float) -> dict[str, Any]:
    """Ours, then the peer's (if `redis` is a socket path, not "-"), in this one process."""
    cpu0 = time.process_time()
    ours = await clients(sock, n, k, procs, burst, pace)
    cpu1 = time.process_time()
    ours["cpu"] = cpu1 - cpu0
    peer = None if redis == "-" else await redis_clients(redis, n, k, procs, burst, pace)
    if peer is not None:
        peer["cpu"] = time.process_time() - cpu1
    return {"ours": ours, "redis": peer}


async def _hold(path: str, name: str, task_status: anyio.abc.TaskStatus[Any]) -> None:
    async with connect_unix(path, name) as c:
        task_status.started(c)
        await anyio.sleep_forever()


# -- the server's process --------------------------------------------------------------


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _start_redis(tmp: Path, nursery: trio.Nursery) -> tuple[str, int]:
    """redis-server on a Unix socket in `tmp` (no TCP, nothing saved): its socket path
    and pid."""
    server = shutil.which("redis-server")
    assert server is not None
    sock = tmp / "redis.sock"
    argv = [server, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", str(tmp), "--maxclients", "10000",
            # 1,000 clients connect at once: a backlog of 511 (the default) refuses some
            "--tcp-backlog", "4096"]
    proc = await nursery.start(functools.partial(trio.run_process, argv,
                                                 stdout=subprocess.DEVNULL, check=False))
    with trio.fail_after(10):
        while True:
            try:
                await (await trio.open_unix_socket(str(sock))).aclose()
                return str(sock), proc.pid
            except OSError:
                await trio.sleep(0.01)


def _summary(results: list[dict[str, Any]], last: dict[int, float], n: int,
             burst: int) -> dict[str, Any]:
    barrier = [t - last[r] for res in results for r, times in enumerate(res["barrier"])
               for t in times]
    start = next(r["burst_start"] for r in results if r["burst_start"] is not None)
    return {
        "barrier": barrier,
        "latency": [x for r in results for x in r["latency"]],
        "p2p": [x for r in results for x in r["p2p"]],
        "burst": {"delivered": burst * n, "seconds": max(r["burst_end"] for r in results) - start},
        "client_cpu": sum(r["cpu"] for r in results),
    }


async def serve_and_measure(
    n: int, procs: int, burst: int, pace: float, backend: str, redis: bool
) -> dict[str, Any]:
    last_signal: dict[int, float] = {}
    rounds = {f"round-{r}": r for r in range(BARRIER_ROUNDS)}

    def record(event: dict[str, Any]) -> None:
        if event.get("kind") == "signal" and event.get("seq") == n and event["state"] in rounds:
            last_signal[rounds[event["state"]]] = time.monotonic()

    state = SyncState(None, record=record)
    results: list[dict[str, Any]] = []
    server_cpu = redis_cpu = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "sync.sock"
        async with trio.open_nursery() as nursery:
            await nursery.start(SyncServer(state).serve_unix, sock)
            redis_sock, redis_pid = await _start_redis(Path(tmp), nursery) if redis else ("-", 0)
            redis_cpu0 = _proc_cpu(redis_pid) if redis else 0.0
            cpu0 = time.process_time()

            async def client_proc(k: int) -> None:
                proc = await trio.run_process(
                    [sys.executable, __file__, "--client", str(sock), redis_sock, str(n), str(k),
                     str(procs), str(burst), repr(pace), backend],
                    capture_stdout=True, check=True,
                )
                results.append(json.loads(proc.stdout))

            async with trio.open_nursery() as clients_nursery:
                for k in range(procs):
                    clients_nursery.start_soon(client_proc, k)
            # This process serves ours only (idle while the clients use Redis).
            server_cpu = time.process_time() - cpu0
            redis_cpu = _proc_cpu(redis_pid) - redis_cpu0 if redis else 0.0
            nursery.cancel_scope.cancel()
    ours = _summary([r["ours"] for r in results], last_signal, n, burst)
    ours["server_cpu"] = server_cpu
    if not redis:
        return {"ours": ours, "redis": None}
    peer = [r["redis"] for r in results]
    last = {int(r): t for res in peer for r, t in res["barrier_last"].items()}
    theirs = _summary(peer, last, n, burst)
    theirs["server_cpu"] = redis_cpu
    return {"ours": ours, "redis": theirs}


def _row(who: str, n: int, r: dict[str, Any]) -> str:
    ms = 1000.0
    rate = r["burst"]["delivered"] / r["burst"]["seconds"]
    return (f"{who:<6} {n:>6} {pct(r['barrier'], .5) * ms:>10.3f}ms "
            f"{pct(r['barrier'], .99) * ms:>10.3f}ms {pct(r['latency'], .5) * ms:>10.3f}ms "
            f"{pct(r['latency'], .99) * ms:>10.3f}ms {pct(r['p2p'], .5) * ms:>8.3f}ms "
            f"{pct(r['p2p'], .99) * ms:>8.3f}ms {rate:>10,.0f} "
            f"{r['server_cpu']:>7.2f}s {r['client_cpu']:>7.2f}s")


def _figures(n: int, ours: dict[str, Any], peer: dict[str, Any] | None,
             load: float) -> list[Figure]:
    """This size's figures for the report, each with Redis's from the same run."""
    def fig(name: str, unit: str, of: Any, target: str | None = None) -> Figure:
        return Figure(f"sync {name}, N={n}", of(ours), unit,
                      "Redis pub/sub" if peer is not None else None,
                      of(peer) if peer is not None else None, target=target, load=load)

    def rate(r: dict[str, Any]) -> float:
        return float(r["burst"]["delivered"] / r["burst"]["seconds"])

    fan_target = {100: "<= 1 ms", 1000: "<= 10 ms"}.get(n)
    return [
        fig("fan-out p50", "ms", lambda r: pct(r["latency"], .5) * 1000, fan_target),
        fig("fan-out p99", "ms", lambda r: pct(r["latency"], .99) * 1000),
        fig("barrier release p50", "ms", lambda r: pct(r["barrier"], .5) * 1000,
            "<= 2 ms" if n == 100 else None),
        fig("1:1 delivery p50", "ms", lambda r: pct(r["p2p"], .5) * 1000,
            "<= 1 ms" if n == 100 else None),
        fig("burst delivery", "msgs/s", rate, ">= 20,000 msgs/s"),
        fig("service CPU (user+sys)", "s", lambda r: r["server_cpu"]),
        fig("clients' CPU (user+sys)", "s", lambda r: r["client_cpu"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--procs", type=int, default=2,
                        help="client processes the N clients are spread over (default 2)")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio",
                        help="the clients' event loop (instances may use either)")
    parser.add_argument("--no-redis", action="store_true", help="leave the Redis peer out")
    parser.add_argument("--client", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        sock, redis, n, k, procs, burst, pace, backend = args.client
        pin_to_core(int(k))
        # As an instance starts: the process host froze what it imported before forking it
        # (runners/_forkserver.py), so the collector does not walk the imports.
        gc.collect()
        gc.freeze()
        print(json.dumps(anyio.run(both, sock, redis, int(n), int(k), int(procs), int(burst),
                                   float(pace), backend=backend)))
        return
    redis = not args.no_redis and shutil.which("redis-server") is not None
    print(f"sync service: server in this process (trio), N clients ({args.backend}) in "
          f"{args.procs} other processes, one per core, over a Unix socket; machine: "
          f"{os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    if not redis:
        print("peer: left out (" + ("--no-redis" if args.no_redis else
                                    "redis-server is not installed: apt-get install "
                                    "redis-server") + ")")
    print(f"{'':<6} {'N':>6} {'barrier p50':>12} {'barrier p99':>12} {'fan-out p50':>12} "
          f"{'fan-out p99':>12} {'1:1 p50':>10} {'1:1 p99':>10} {'msgs/s':>10} "
          f"{'srv cpu':>8} {'cli cpu':>8}")
    figures: list[Figure] = []
    for n in args.sizes:
        burst = max(100, 100_000 // n)
        pace = max(PACE_S, n / DELIVERY_RATE)
        load = os.getloadavg()[0]  # before: the clients' own load is not the machine's
        with fewer_collections():  # as the supervisor runs the service
            result = trio.run(serve_and_measure, n, args.procs, burst, pace, args.backend, redis)
        ours, peer = result["ours"], result["redis"]
        print(_row("ours", n, ours))
        if peer is not None:
            print(_row("redis", n, peer))
        figures += _figures(n, ours, peer, load)
        for f in figures[-7:]:
            if f.ratio is not None:
                print(f"       {f.name}: ours / Redis = {f.ratio:.2f}x")
        print(f"       ({len(ours['barrier'])} barrier releases over {BARRIER_ROUNDS} rounds; "
              f"{len(ours['latency'])} deliveries paced at one publish per {pace * 1000:g} ms "
              f"({n / pace:,.0f} deliveries/s); {ours['burst']['delivered']:,} burst deliveries "
              f"in {ours['burst']['seconds']:.2f}s; mean barrier "
              f"{statistics.mean(ours['barrier']) * 1000:.3f}ms)")
        # What the machine's wake-ups alone cost a fan-out: the lower bound of the figure.
        for relay, what in ((False, "no service"), (True, "through a relay process")):
            low = floor(n, args.procs, pace, max(20, 20_000 // n), relay)
            print(f"       raw fan-out floor ({what}, no JSON: _fanout_floor.py): p50 "
                  f"{pct(low, .5) * 1000:.3f}ms, p99 {pct(low, .99) * 1000:.3f}ms")
            figures.append(Figure(f"sync fan-out floor p50 (raw sockets, {what}), N={n}",
                                  round(pct(low, .5) * 1000, 3), "ms", load=load))
    print("fan-out: publish -> each of the N subscribers; 1:1: publish -> one subscriber while "
          "all N are connected")
    print("targets: barrier p50 <= 2 ms at N=100, fan-out p50 <= 1 ms at N=100 and <= 10 ms at "
          "N=1000, >= 20,000 msgs/s; Testground's sync service delivers on a 100 ms tick")
    write("sync", figures)


if __name__ == "__main__":
    main()
