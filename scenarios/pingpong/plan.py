"""The pingpong plan: addresses over pub/sub, TCP pings between instances, a barrier."""

from __future__ import annotations

import dataclasses
import os
import time

import trio

from harness import sdk


@dataclasses.dataclass
class Peer:
    """An instance's address, as published on the `peers` topic."""

    seq: int
    ip: str
    port: int
    latency: float = 0.0
    """Seconds its own links add to what it sends (a composition's groups may differ)."""


PEERS = sdk.Topic("peers", Peer)


async def _serve(ip: str, port: int, task_status: trio.TaskStatus[None]) -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            async for data in stream:
                await stream.send_all(data)

    listeners = await trio.open_tcp_listeners(port, host=ip)
    async with trio.open_nursery() as nursery:
        task_status.started()
        await trio.serve_listeners(echo, listeners, handler_nursery=nursery)


async def _ping(peer: Peer, rounds: int, max_rtt: float) -> list[float]:
    """`rounds` RTTs to `peer`; TestFailure naming it if it does not answer (its TCP
    handshake, one round trip too, included) within `max_rtt`."""
    rtts = []
    stream: trio.SocketStream | None = None
    with trio.move_on_after(max_rtt):
        stream = await trio.open_tcp_stream(peer.ip, peer.port)
    if stream is None:
        raise sdk.TestFailure(f"peer {peer.seq} ({peer.ip}:{peer.port}) did not accept a "
                              f"connection within max_rtt={max_rtt:g}s")
    async with stream:
        for i in range(rounds):
            payload = f"ping {i}\n".encode()
            t0 = time.monotonic()
            await stream.send_all(payload)
            got = b""
            with trio.move_on_after(max_rtt):
                while len(got) < len(payload):
                    chunk = await stream.receive_some(64)
                    if not chunk:
                        raise sdk.TestFailure(f"peer {peer.seq} closed the connection")
                    got += chunk
            if len(got) < len(payload):
                raise sdk.TestFailure(f"peer {peer.seq} did not echo ping {i} within "
                                      f"max_rtt={max_rtt:g}s")
            if got != payload:
                raise sdk.TestFailure(f"peer {peer.seq} echoed {got!r}, not {payload!r}")
            rtts.append(time.monotonic() - t0)
    return rtts


async def ping(env: sdk.RunEnv) -> None:
    """Publish, learn every peer, ping the next `fanout` of them, meet at 'pinged'."""
    n = env.instance_count
    port, rounds = env.params["port"], env.params["rounds"]
    ip = env.data_ip or "127.0.0.1"
    await env.network.wait_initialized()
    latency = float(env.params["latency"]) if env.network.configurable else 0.0
    await env.network.shape_and_wait(sdk.LinkShape(latency_ms=latency * 1000) if latency
                                     else None)
    async with trio.open_nursery() as nursery:
        await nursery.start(_serve, ip, port)
        await PEERS.publish(env.sync, Peer(env.global_seq, ip, port, latency))
        # Fails at once, naming it, if an instance ends without publishing its address.
        peers = sorted(await PEERS.collect(env.sync, n, one_per_instance=True),
                       key=lambda p: p.seq)
        if [p.seq for p in peers] != list(range(n)):
            raise sdk.TestFailure(f"peer list is not one per instance: {[p.seq for p in peers]}")
        targets = [peers[(env.global_seq + k) % n] for k in range(1, min(env.params["fanout"], n - 1) + 1)]
        rtts: list[float] = []
        for peer in targets:
            peer_rtts = await _ping(peer, rounds, env.params["max_rtt"])
            for rtt in peer_rtts:  # the report plots them; the aggregated /metrics serves them
                env.metrics.histogram("ping_rtt_ms", rtt * 1000, peer=str(peer.seq))
            # A round trip crosses this instance's shaped egress and the peer's.
            if min(peer_rtts) < latency + peer.latency:
                raise sdk.TestFailure(
                    f"fastest ping to peer {peer.seq} took {min(peer_rtts) * 1000:.1f} ms, "
                    f"less than the {latency * 1000:g} + {peer.latency * 1000:g} ms latency "
                    "of the two ends' links: the links are not shaped")
            rtts += peer_rtts
        rtts.sort()
        env.log.info("pinged", peers=len(targets), rtt_p50_ms=round(rtts[len(rtts) // 2] * 1000, 3),
                     rtt_max_ms=round(rtts[-1] * 1000, 3))
        await env.sync.signal_and_wait("pinged", n)
        nursery.cancel_scope.cancel()


async def crash(env: sdk.RunEnv) -> None:
    """As `ping`, but the last instance dies hard at once; the others wait for its address."""
    if env.global_seq == env.instance_count - 1:
        await trio.sleep(0.2)
        os._exit(13)
    await ping(env)
