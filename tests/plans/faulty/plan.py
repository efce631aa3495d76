"""Instances for the harness's own fault tests: what they wrote shows what a fault did."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import trio
import trio.lowlevel

from harness import sdk


def _t0(env: sdk.RunEnv) -> float:
    """When this instance first started (a restart keeps it): its times count from there,
    not from the run's start, so that a slow start (an emulated VM's) does not eat them."""
    first = env.outputs_path / "first-start"
    if not first.exists():
        first.write_text(f"{time.time():.6f}")
    return float(first.read_text())


def _until(env: sdk.RunEnv) -> float:
    return _t0(env) + float(env.param("seconds"))


async def beat(env: sdk.RunEnv) -> None:
    """A line per 20 ms: wall time, restarts, data address; deaf to SIGTERM if asked."""
    if env.param("deaf"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    await _beat(env)


async def _beat(env: sdk.RunEnv) -> None:
    until = _until(env)
    restarts = int(os.environ.get("TEST_RESTARTS", "0"))
    with (env.outputs_path / "beats.log").open("a", buffering=1) as out:
        while time.time() < until:
            out.write(f"{time.time():.3f} {restarts} {env.data_ip}\n")
            await trio.sleep(0.02)


async def orphans(env: sdk.RunEnv) -> None:
    """Leave two processes out of this process's group, as servers and daemons do: a child
    in a session of its own, and a daemon (a shell's background child that calls setsid,
    the shell gone). Their pids go to orphans.log, after the incarnation's restarts. Fail if
    one an earlier incarnation left still runs; then beat as `beat` does."""
    log = env.outputs_path / "orphans.log"
    earlier = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    if left := [pid for n, pid in earlier if _runs(int(pid), env.run_id, int(n))]:
        raise RuntimeError(f"processes of an earlier incarnation still run: {left}")
    child = await trio.lowlevel.open_process(["sleep", "1000"], start_new_session=True)
    shell = await trio.run_process(
        ["sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"],
        capture_stdout=True)
    daemon = int(shell.stdout)
    with log.open("a") as out:
        out.write(f"{env.restarts} {child.pid}\n{env.restarts} {daemon}\n")
    await _beat(env)


def _runs(pid: int, run_id: str, restarts: int) -> bool:
    """Whether `pid` is alive (not a zombie) and was started by this run's instance in its
    incarnation `restarts` (a pid used again since is not)."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] == "Z":
            return False
        environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return False
    return {f"TEST_RUN={run_id}".encode(), f"TEST_RESTARTS={restarts}".encode()} <= environ


async def talk(env: sdk.RunEnv) -> None:
    """Answer UDP on the data address; ask every other instance every 20 ms, logging each
    answer: when, from whom, and the round trip in ms."""
    until = _until(env)
    await env.network.wait_initialized()
    await env.sync.publish("talk:address", {"id": env.instance_id, "ip": env.data_ip})
    peers: dict[str, str] = {}
    async with env.sync.subscribe("talk:address", expect=env.instance_count) as sub:
        async for item in sub:
            peers[item["id"]] = item["ip"]
            if len(peers) == env.instance_count:
                break
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((env.data_ip or "127.0.0.1", 7777))
    others = {i: ip for i, ip in peers.items() if i != env.instance_id}
    with (env.outputs_path / "talk.log").open("a", buffering=1) as out:
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                while True:
                    data, addr = await sock.recvfrom(512)
                    kind, _, rest = data.decode().partition(" ")
                    if kind == "ask":
                        await sock.sendto(f"ans {env.instance_id} {rest}".encode(), addr)
                    elif kind == "ans":
                        who, sent = rest.split()
                        rtt = (time.monotonic() - float(sent)) * 1000
                        out.write(f"{time.time():.3f} {who} {rtt:.1f}\n")

            nursery.start_soon(serve)
            while time.time() < until:
                for ip in others.values():
                    await sock.sendto(f"ask {time.monotonic():.6f}".encode(), (ip, 7777))
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    sock.close()


async def eat(env: sdk.RunEnv) -> None:
    """Busy-loop in slices, writing the CPU share of each 250 ms; allocate when told."""
    eat_at, until = _t0(env) + float(env.param("eat_at")), _until(env)
    hoard = []
    with (env.outputs_path / "cpu.log").open("a", buffering=1) as out:
        while time.time() < until:
            wall, cpu = time.monotonic(), time.process_time()
            while time.monotonic() - wall < 0.25:
                sum(range(2000))
            share = (time.process_time() - cpu) / (time.monotonic() - wall)
            out.write(f"{time.time():.3f} {share:.3f}\n")
            if time.time() >= eat_at and not hoard and env.param("megabytes"):
                hoard = [bytearray(2**20) for _ in range(int(env.param("megabytes")))]
                out.write(f"{time.time():.3f} ate {len(hoard)}\n")
            await trio.lowlevel.checkpoint()


async def sleeps(env: sdk.RunEnv) -> None:
    """A blocking `time.sleep`, which fails (EINVAL) under Debian's libfaketime."""
    time.sleep(0.2)  # noqa: ASYNC251 (the blocking call is the point)


async def clock(env: sdk.RunEnv) -> None:
    """Every 50 ms, how far `env.clock` is from the real time (measured from the monotonic
    clock, which no skew touches, and the wall clock at the start, before any fault)."""
    real0, mono0 = env.clock.time(), time.monotonic()
    with (env.outputs_path / "skew.log").open("a", buffering=1) as out:
        while time.time() < _until(env) + 5 and time.monotonic() - mono0 < float(
                env.param("seconds")):
            real = real0 + time.monotonic() - mono0
            out.write(f"{real:.3f} {env.clock.time() - real:.3f}\n")
            await trio.sleep(0.05)


async def meet(env: sdk.RunEnv) -> None:
    if env.global_seq == env.instance_count - 1:
        await trio.sleep(float(env.params["late"]))
    await env.sync.signal_and_wait("met", env.instance_count)


async def fragile(env: sdk.RunEnv) -> None:
    """Fail once started again (it would have lost its state); else beat as `beat` does."""
    if env.restarts:
        raise RuntimeError(f"started again ({env.restarts}): its state is lost")
    await _beat(env)
