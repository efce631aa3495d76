"""A client instance: publish with acknowledgements through every fault, then check.

It keeps every acknowledged (stream sequence, payload), reports the stream's leader on
`nats:leader` (and the other servers on `nats:followers`, `nats:follower`) for faults to
target, and signals `published-<k>` every `milestone` acknowledgements, `outage-<n>` when
its publishes stop being acknowledged and `recovered-<n>` when one is again. It fails if
an outage lasts longer than `max_outage`, if the replicas do not all catch up by the end,
or if an acknowledged message is not in the stream, read back through NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from harness import sdk
from scenarios.nats import _names
from scenarios.nats._check import lost_messages, summarize

T = TypeVar("T")
SUBJECTS = "harness.>"
TRANSIENT = (nats.errors.Error, TimeoutError, OSError)
"""What a faulty cluster answers with: timeouts, no responders, 503s, lost connections."""


class Cluster:
    """One connection to the cluster, replaced (to the next server) when it stops serving."""

    def __init__(self, urls: list[str], timeout: float) -> None:
        self.urls = urls
        self.timeout = timeout
        self.turn = 0
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None

    async def connect(self) -> JetStreamContext:
        """The JetStream context, connecting (starting at the next server) if need be."""
        if self.js is not None:
            return self.js
        order = self.urls[self.turn:] + self.urls[:self.turn]
        self.turn = (self.turn + 1) % len(self.urls)

        async def quiet(*_: Any) -> None:
            return None  # nats-py logs every error itself otherwise; we count them

        # max_reconnect_attempts=-1 also makes nats-py's first connect try forever: with
        # every server gone for good the client hung to the run's timeout, never reaching
        # its max_outage check. A round over the servers is bounded here instead.
        self.nc = await asyncio.wait_for(nats.connect(
            servers=order, dont_randomize=True, connect_timeout=self.timeout,
            max_reconnect_attempts=-1, reconnect_time_wait=0.5, ping_interval=2,
            max_outstanding_pings=2, error_cb=quiet, disconnected_cb=quiet,
            reconnected_cb=quiet, closed_cb=quiet), self.timeout * (len(self.urls) + 1))
        self.js = self.nc.jetstream(timeout=self.timeout)
        return self.js

    async def reset(self) -> None:
        """Drop the connection: the next `connect` goes to another server first."""
        nc, self.nc, self.js = self.nc, None, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), self.timeout)
            except (*TRANSIENT, asyncio.CancelledError):
                pass

    async def close(self) -> None:
        """Close the connection."""
        await self.reset()


class Publisher:
    """What one client does and remembers."""

    def __init__(self, env: sdk.RunEnv, cluster: Cluster, servers: list[str]) -> None:
        self.env = env
        self.p = env.params
        self.cluster = cluster
        self.servers = servers
        self.stream = str(self.p["stream"])
        self.subject = f"harness.c{env.global_seq}"
        # (stream seq, payload) of every acknowledgement: not a map by sequence, where a
        # stream that lost messages and numbered new ones alike would hide the lost ones
        self.acked: list[tuple[int, str]] = []
        self.outages: list[float] = []
        self.failures = 0  # consecutive failed attempts

    async def retry(self, what: str, call: Callable[[JetStreamContext], Awaitable[T]],
                    within: float) -> T:
        """`call` until it succeeds, reconnecting to another server after a few failures;
        TestFailure naming `what` and the last error after `within` seconds."""
        deadline = time.monotonic() + within
        failures = 0
        while True:
            try:
                return await call(await self.cluster.connect())
            except TRANSIENT as e:
                failures += 1
                if time.monotonic() >= deadline:
                    raise sdk.TestFailure(f"{what}: no success within {within:.0f}s "
                                          f"(last error: {type(e).__name__}: {e})") from None
                if failures % 3 == 0:
                    await self.cluster.reset()
                await asyncio.sleep(0.2)

    async def create_stream(self) -> None:
        """Create the stream (3 replicas); the other client's identical create succeeds."""
        replicas = min(3, len(self.servers))

        async def create(js: JetStreamContext) -> None:
            await js.add_stream(name=self.stream, subjects=[SUBJECTS],
                                num_replicas=replicas)

        await self.retry(f"creating stream {self.stream} with {replicas} replicas", create,
                         float(self.p["startup_timeout"]))

    async def publish_all(self) -> None:
        """Publish `messages` messages at `rate`, each until acknowledged."""
        total, rate = int(self.p["messages"]), float(self.p["rate"])
        milestone, bound = int(self.p["milestone"]), float(self.p["max_outage"])
        timeout = float(self.p["publish_timeout"])
        sync, start = self.env.sync, time.monotonic()
        last_ack, outage_started = start, None
        slot = start
        for i in range(total):
            payload = f"{self.env.instance_id}#{i}"
            while True:
                try:
                    js = await self.cluster.connect()
                    ack = await js.publish(self.subject, payload.encode(), timeout=timeout,
                                           headers={"Nats-Msg-Id": payload})
                    break
                except TRANSIENT as e:
                    now = time.monotonic()
                    if not self.acked:  # a new stream's first write may wait for its leader
                        if now - start > float(self.p["startup_timeout"]):
                            raise sdk.TestFailure(
                                f"no publish acknowledged within startup_timeout="
                                f"{self.p['startup_timeout']:.0f}s (last error: "
                                f"{type(e).__name__}: {e})") from None
                    elif outage_started is None:
                        outage_started = last_ack
                        await sync.signal_entry(_names.outage(len(self.outages) + 1))
                    if outage_started is not None and now - last_ack > bound:
                        raise sdk.TestFailure(
                            f"the cluster did not serve again: no publish acknowledged for "
                            f"{now - last_ack:.1f}s (bound max_outage={bound:.0f}s), outage "
                            f"{len(self.outages) + 1}, at message {i} "
                            f"(last error: {type(e).__name__}: {e})") from None
                    self.failures += 1
                    if self.failures % 3 == 0:
                        await self.cluster.reset()
                    await asyncio.sleep(0.2)
            now = time.monotonic()
            self.failures = 0
            self.acked.append((ack.seq, payload))
            if outage_started is not None:
                self.outages.append(now - outage_started)
                n = len(self.outages)
                await sync.signal_entry(_names.recovered(n))
                await self.env.record_message(
                    f"recovered from outage {n}: {self.outages[-1]:.1f}s without an "
                    f"acknowledgement")
                outage_started = None
            last_ack = now
            if (i + 1) % milestone == 0:
                await sync.signal_entry(_names.published(i + 1))
            slot = max(slot + 1 / rate, now)  # after an outage: on at `rate`, no burst
            if slot > time.monotonic():
                await asyncio.sleep(slot - time.monotonic())

    async def report_leader(self, stop: asyncio.Event) -> None:
        """Publish the stream leader's instance id on `nats:leader` whenever it changes.

        After `stop`, it keeps asking (for up to three `publish_timeout`s) until it has
        seen a leader once: a loaded cluster may not have answered a run's first polls."""
        leader = None
        poll, give_up = float(self.p["leader_poll"]), None
        while True:
            try:
                js = await self.cluster.connect()
                info = await js.stream_info(self.stream)
                now = info.cluster.leader if info.cluster else None
            except TRANSIENT:
                now = None
            if now and now != leader and now in self.servers:
                leader = now
                followers = sorted(s for s in self.servers if s != now)
                sync = self.env.sync
                await sync.publish(_names.LEADER_TOPIC, now)
                await sync.publish(_names.FOLLOWERS_TOPIC, followers)
                if followers:
                    await sync.publish(_names.FOLLOWER_TOPIC, followers[0])
                await self.env.record_message(f"stream leader: {now}")
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll)
                continue
            if leader is not None:
                return
            if give_up is None:
                give_up = time.monotonic() + 3 * float(self.p["publish_timeout"])
            elif time.monotonic() >= give_up:
                await self.env.record_message("stream leader: never seen (the cluster did "
                                              "not answer a stream info request naming one)")
                return
            await asyncio.sleep(poll)

    async def settle(self) -> None:
        """Wait until the stream has a leader and every replica is current and online."""
        within = float(self.p["settle_timeout"])
        deadline = time.monotonic() + within
        seen = "no answer"
        while True:
            try:
                js = await self.cluster.connect()
                info = await js.stream_info(self.stream)
                cluster = info.cluster
                replicas = (cluster.replicas or []) if cluster else []
                lagging = [r.name for r in replicas if not r.current or r.offline]
                if cluster and cluster.leader and not lagging and \
                        len(replicas) + 1 >= min(3, len(self.servers)):
                    return
                seen = (f"leader {cluster.leader if cluster else None}, "
                        f"not current: {lagging}")
            except TRANSIENT as e:
                seen = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                raise sdk.TestFailure(f"the stream's replicas did not all catch up within "
                                      f"{within:.0f}s ({seen})")
            await asyncio.sleep(0.5)

    async def read_back(self) -> dict[int, str | None]:
        """Every acknowledged sequence as the stream holds it now (None: not there)."""
        within = float(self.p["settle_timeout"])
        read: dict[int, str | None] = {}
        seqs = sorted({seq for seq, _ in self.acked})
        for seq in seqs:

            async def get(js: JetStreamContext, seq: int = seq) -> str | None:
                try:
                    msg = await js.get_msg(self.stream, seq)
                except nats.js.errors.NotFoundError:
                    return None
                return (msg.data or b"").decode(errors="replace")

            read[seq] = await self.retry(f"reading stream seq {seq}", get, within)
        if self.p["lose_one"] and self.acked:  # test hook: the check must catch a loss
            read[seqs[len(seqs) // 2]] = None
        return read


async def _servers(env: sdk.RunEnv) -> dict[str, str]:
    """Every server's instance id -> its client URL, from the launchers' topic."""
    wanted, within = int(env.params["servers"]), float(env.params["startup_timeout"])
    found: dict[str, str] = {}
    try:
        async with asyncio.timeout(within):
            async with env.sync.subscribe(_names.SERVERS_TOPIC) as items:
                async for item in items:
                    found[item["id"]] = f"nats://{item['ip']}:{item['port']}"
                    if len(found) >= wanted:
                        break
    except TimeoutError:
        raise sdk.TestFailure(f"only {len(found)} of {wanted} servers published their "
                              f"address within {within:.0f}s") from None
    return found


async def run(env: sdk.RunEnv) -> None:
    """The client role's test function."""
    try:
        await _run(env)
    finally:
        await env.sync.signal_entry(_names.CLIENTS_DONE)  # the servers may stop now


async def _run(env: sdk.RunEnv) -> None:
    servers = await _servers(env)
    cluster = Cluster(list(servers.values()), float(env.params["publish_timeout"]))
    me = Publisher(env, cluster, sorted(servers))
    stop = asyncio.Event()
    reporter: asyncio.Task[None] | None = None
    try:
        await me.create_stream()
        await env.sync.signal_entry(_names.STREAM_READY)
        if env.global_seq == int(env.params["servers"]):  # the first client reports
            reporter = asyncio.create_task(me.report_leader(stop))
        await me.publish_all()
        await env.record_message(f"{len(me.acked)} messages acknowledged through "
                                 f"{len(me.outages)} outage(s)")
        if env.params["check_replicas"]:
            await me.settle()
        problems = lost_messages(me.acked, await me.read_back())
        if problems:
            raise sdk.TestFailure(summarize(problems, len(me.acked)))
        await env.record_message(f"all {len(me.acked)} acknowledged messages are in the "
                                 f"stream")
    finally:
        stop.set()
        if reporter is not None:
            await reporter
        await cluster.close()
