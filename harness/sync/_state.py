"""The sync service's state: topics, signal counts and barriers, free of any I/O.

Replies leave through `Reply` callbacks that must not block (the server queues them on the
connection). Everything is event-driven: a barrier is checked when its state is signalled or
when an instance ends, never on a tick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Container, Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import orjson

Reply = Callable[[bytes], None]
"""Takes one encoded frame for the requesting connection; never blocks."""

Recorder = Callable[[dict[str, Any]], None]
"""Receives every event worth keeping (events.jsonl, progress, outcomes)."""

class Backlogged(Protocol):
    """A subscription's backlog still being sent by its connection."""

    def extend(self, seq: int) -> bool:
        """Take item `seq` into the backlog; False once it is all sent: from then on each
        item is a reply of its own."""

    def stop(self) -> None:
        """Send nothing more of it (the subscription has ended)."""

    def close_with(self, frame: bytes) -> bool:
        """Send `frame` once what it holds so far is sent, and take no more (the
        subscription ended with an error its items so far must not be overtaken by);
        False if it is all sent already (then `frame` is a reply like any other)."""


Idle = Callable[[], bool]
"""Whether nothing waits for a connection's socket: a reply now would be written at once."""

Backlog = Callable[[bytes, list[bytes], int, int, Container[int]], "Backlogged | None"]
"""Sends a subscription's items from the topic instead of one reply per item: the frame
prefix, the topic's encoded payloads (shared, append-only), the 0-based first and the end
of those to send, and the 1-based positions among them to leave out (a live set); returns
the backlog, to extend with the items published while it is sent (they are in the topic
already: a reader taking a long backlog is not made to hold the live items behind it too).
A new subscription's items so far go so, and each live one while its connection is not
`Idle`, or that is large: a subscriber that does not read falls behind, and holds nothing
in the service."""


_STAMPS = ("ts", "mono")  # what the run's record stamps every event with


def frame_prefix(request_id: Any) -> bytes:
    """The start of every frame that answers `request_id`."""
    return b'{"id":' + orjson.dumps(request_id)


def _error_frame(request_id: Any, reason: str) -> bytes:
    """The frame that fails request `request_id` for `reason`."""
    return orjson.dumps({"id": request_id, "error": reason}) + b"\n"


def item_tail(seq: int, encoded: bytes) -> bytes:
    """The rest of a subscription item frame after its prefix."""
    return b',"seq":%d,"item":%b}\n' % (seq, encoded)


SHARED = 1 << 16
"""A frame part this long goes to each connection as it is, not copied into a frame of
the connection's own: 40 slow readers of one 15 MiB item held 600 MB of copies."""


_T = TypeVar("_T", "_Subscriber", "_Waiter")
TURN = 32
"""Replies a client process gets in a row before the next process's turn (`in_turns`)."""
_TOPICS_NAMED = 3  # of an instance's subscriptions, in a run's timeout reason


def in_turns(items: Sequence[_T]) -> Sequence[_T]:
    """`items` (each with a `peer`: the client process, None if not known) with the peers
    taking turns of `TURN` items: each peer's first `TURN`, then each one's next... A
    process holding many clients then gets its first replies as early as one holding a
    few, instead of waiting until another process's clients have all had theirs, and the
    receivers of a fan-out work in parallel. Turns of one reply each wake every process
    once per reply, which cost more than it saved when each holds only tens of clients.
    In benchmarks/bench_sync.py (1,000 clients in 2 processes, on 2 cores) the fan-out's
    median delivery came 1.1 ms sooner on average (docs/benchmarks.md)."""
    turn: dict[Hashable, int] = {}
    ranks = []
    for item in items:
        if item.peer is None:
            ranks.append(0)
        else:
            n = turn.get(item.peer, 0)
            ranks.append(n // TURN)
            turn[item.peer] = n + 1
    if not any(ranks):
        return items
    return [items[i] for i in sorted(range(len(items)), key=ranks.__getitem__)]


@dataclasses.dataclass(eq=False)
class _Subscriber:
    request_id: Any
    reply: Reply
    prefix: bytes
    expect: int | None = None
    instance: str | None = None
    peer: Hashable | None = None
    backlog: Backlogged | None = None  # while its backlog is being sent
    publishers: frozenset[str] | None = None  # who may publish what it expects (None: all)
    take: Backlog | None = None  # how its connection sends items from the topic
    idle: Idle | None = None  # whether its connection would write a reply at once

    def skipped(self, t: _Topic) -> Container[int]:
        """The items it is not sent: an instance's second and later, when it expects one
        per instance."""
        return t.repeats if self.expect is not None else ()

    def end(self) -> None:
        """The subscription has ended: nothing more of its backlog goes out."""
        if self.backlog is not None:
            self.backlog.stop()


@dataclasses.dataclass
class _Topic:
    payloads: list[bytes] = dataclasses.field(default_factory=list)  # encoded once
    subscribers: list[_Subscriber] = dataclasses.field(default_factory=list)
    published_by: set[str] = dataclasses.field(default_factory=set)
    # Items (1-based) of an instance that had published here before (its test function
    # run again by a restart): a subscription that expects one item per instance skips them.
    repeats: set[int] = dataclasses.field(default_factory=set)
    expecting: list[_Subscriber] = dataclasses.field(default_factory=list)  # not yet met
    _turns: Sequence[_Subscriber] | None = None  # `subscribers` in turns, until they change

    @property
    def firsts(self) -> int:
        """The items that are no instance's repeat: what an expecting subscription counts."""
        return len(self.payloads) - len(self.repeats)

    def changed(self) -> None:
        """`subscribers` changed."""
        self._turns = None

    def in_turns(self) -> Sequence[_Subscriber]:
        """The subscribers in the order a publish replies to them (`in_turns`)."""
        if self._turns is None:
            self._turns = in_turns(self.subscribers)
        return self._turns


@dataclasses.dataclass(eq=False)
class _Waiter:
    request_id: Any
    target: int
    reply: Reply
    instance: str | None
    seq: int | None = None  # set for signal_and_wait
    peer: Hashable | None = None


@dataclasses.dataclass
class _State:
    count: int = 0
    signalled_by: dict[str, int] = dataclasses.field(default_factory=dict)  # their seq
    # Instances that waited here saying they will not signal this state themselves (a
    # server watching its clients arrive): they are not counted among those who can come.
    watchers: set[str] = dataclasses.field(default_factory=set)
    waiters: list[_Waiter] = dataclasses.field(default_factory=list)
    # The smallest target among `waiters` (or lower, once some have left): an arrival below
    # it releases nobody, and costs no pass over the waiters (N arrivals at a barrier of N
    # waiters would otherwise cost N^2 / 2 looks).
    lowest: int = 0


class SyncState:
    """Topics, states and barriers of one run.

    `instances` are the ids expected to take part; with them the state can tell when a
    barrier can no longer be met. Without (None), barriers only wait. `roles`: each
    instance's role, for subscriptions that expect items from some roles only.
    """

    def __init__(self, instances: Collection[str] | None = None, record: Recorder | None = None,
                 roles: Mapping[str, str] | None = None):
        self._topics: dict[str, _Topic] = {}
        self._states: dict[str, _State] = {}
        self._running: set[str] | None = set(instances) if instances is not None else None
        self._roles = dict(roles or {})
        self._total = len(self._running or ())
        self._ended: dict[str, str] = {}
        self._record = record or (lambda event: None)

    # -- signals and barriers ------------------------------------------------------------

    def signal_entry(self, state: str, instance: str | None) -> int:
        """Count one arrival at `state`; returns the 1-based arrival number. An instance
        arrives once: signalling again (its test function run again by a restart, or a
        wait it gave up on tried again) counts for nothing and gets its first number back;
        counted twice, it released barriers before every instance had come."""
        st = self._states.setdefault(state, _State())
        if instance is not None and (first := st.signalled_by.get(instance)) is not None:
            self._record({"kind": "signal", "state": state, "seq": first,
                          "instance": instance, "again": True})
            return first
        st.count += 1
        if instance is not None:
            st.signalled_by[instance] = st.count
        self._record({"kind": "signal", "state": state, "seq": st.count, "instance": instance})
        if st.waiters and st.count >= st.lowest:
            self._release(state, st)
        return st.count

    def barrier(
        self,
        state: str,
        target: int,
        request_id: Any,
        reply: Reply,
        instance: str | None = None,
        seq: int | None = None,
        peer: Hashable | None = None,
        watch: bool = False,
    ) -> None:
        """Reply once `state` has `target` arrivals, or fail as soon as it cannot. `peer`:
        the requesting client's process, if known (replies to many take turns by it).
        `watch`: `instance` will not signal `state`, so it is not one who can still come."""
        st = self._states.setdefault(state, _State())
        if watch and instance is not None:
            st.watchers.add(instance)
        waiter = _Waiter(request_id, target, reply, instance, seq, peer)
        if st.count >= target:
            self._succeed(waiter)
            return
        reason = self._barrier_unmeetable(state, st, target)
        if reason:
            self._fail(waiter, reason)
            return
        st.lowest = target if not st.waiters else min(st.lowest, target)
        st.waiters.append(waiter)
        self._record({"kind": "barrier", "state": state, "target": target, "status": "waiting",
                      "instance": instance, "count": st.count})

    def cancel_barrier(self, request_id: Any, reply: Reply) -> bool:
        """Drop a pending barrier of this connection; True if there was one."""
        for st in self._states.values():
            for waiter in st.waiters:
                if waiter.request_id == request_id and waiter.reply is reply:
                    st.waiters.remove(waiter)
                    self._fail(waiter, "cancelled", record=False)
                    return True
        return False

    def instance_ended(self, instance: str, how: str) -> None:
        """`instance` stopped (`how` says why); barriers that needed it fail at once, and
        so do subscriptions that expected more items than can still come."""
        if self._running is None or instance not in self._running:
            return
        self._running.discard(instance)
        self._ended[instance] = how
        for state, st in self._states.items():
            if not st.waiters:
                continue
            for waiter in list(st.waiters):
                reason = self._barrier_unmeetable(state, st, waiter.target)
                if reason:
                    st.waiters.remove(waiter)
                    self._fail(waiter, reason)
        for name, t in self._topics.items():
            if t.expecting:
                t.expecting = [s for s in t.expecting if not self._check_expectation(name, t, s)]

    def instance_revived(self, instance: str) -> None:
        """`instance` runs again (restarted by a fault): it counts as able to arrive."""
        if self._running is not None and instance in self._ended:
            del self._ended[instance]
            self._running.add(instance)

    def serves(self, reply: Reply) -> bool:
        """Whether a connection (its `reply`) waits at a barrier or holds a subscription."""
        return any(w.reply is reply for st in self._states.values() for w in st.waiters) or any(
            s.reply is reply for t in self._topics.values() for s in t.subscribers)

    def drop_connection(self, reply: Reply) -> None:
        """Forget the waiters and subscriptions of a closed connection."""
        for st in self._states.values():
            st.waiters = [w for w in st.waiters if w.reply is not reply]
        for topic in self._topics.values():
            topic.subscribers = [s for s in topic.subscribers if s.reply is not reply]
            topic.changed()
            topic.expecting = [s for s in topic.expecting if s.reply is not reply]

    def _barrier_unmeetable(self, state: str, st: _State, target: int) -> str | None:
        return self._unmeetable(f"barrier {state!r}", st.count, "arrived",
                                st.signalled_by.keys() | st.watchers, "signalling", target)

    def _unmeetable(
        self, what: str, count: int, counted: str, done_by: set[str], doing: str, target: int,
        among: frozenset[str] | None = None,
    ) -> str | None:
        """Why `target` can no longer be reached, or None: `count` so far, plus at most
        one more from each running instance (of `among`, if given) not in `done_by`, is too
        few."""
        if self._running is None:
            return None
        running = self._running if among is None else self._running & among
        can_still_come = len(running - done_by)
        if count + can_still_come >= target:
            return None
        why = (
            f"{what} can no longer reach {target}: {count} {counted}, at most "
            f"{can_still_come} more can"
        )
        total = self._total if among is None else len(among)
        if target > total:  # a plan's mistake, not an instance that ended
            why += (f"; the run has only {total} instances" if among is None
                    else f"; only {total} instances may publish it")
        gone = sorted(i for i in self._ended
                      if i not in done_by and (among is None or i in among))
        if gone:
            why += f"; ended without {doing}: " + "; ".join(
                f"{i} ({self._ended[i]})" for i in gone[:10]
            )
            why += f" and {len(gone) - 10} more" if len(gone) > 10 else ""
        return why

    def _release(self, state: str, st: _State) -> None:
        keep, going = [], []
        released: dict[int, int] = {}  # target -> waiters released: one event each, not N
        for waiter in st.waiters:
            if st.count >= waiter.target:
                going.append(waiter)
                released[waiter.target] = released.get(waiter.target, 0) + 1
            else:
                keep.append(waiter)
        for waiter in in_turns(going):
            self._succeed(waiter)
        st.waiters = keep
        st.lowest = min((w.target for w in keep), default=0)
        for target, waiters in released.items():
            self._record({"kind": "barrier", "state": state, "target": target,
                          "status": "released", "waiters": waiters})

    @staticmethod
    def _succeed(waiter: _Waiter) -> None:
        tail = b',"ok":true}\n' if waiter.seq is None else b',"ok":true,"seq":%d}\n' % waiter.seq
        waiter.reply(frame_prefix(waiter.request_id) + tail)

    @staticmethod
    def _fail_reply(reply: Reply, request_id: Any, reason: str) -> None:
        reply(_error_frame(request_id, reason))

    def _fail(self, waiter: _Waiter, reason: str, record: bool = True) -> None:
        self._fail_reply(waiter.reply, waiter.request_id, reason)
        if record:
            self._record({"kind": "barrier", "target": waiter.target, "status": "failed",
                          "instance": waiter.instance, "reason": reason})

    # -- pub/sub -------------------------------------------------------------------------

    def publish(self, topic: str, payload: Any, instance: str | None = None) -> int:
        """Append to `topic`, deliver to its subscribers; returns the 1-based position."""
        t = self._topics.setdefault(topic, _Topic())
        # A copy to keep: orjson (3.12+) hands back bytes over a buffer of at least 4 KiB,
        # so a topic of 100,000 small items held 400 MB.
        encoded = bytes(memoryview(orjson.dumps(payload)))
        t.payloads.append(encoded)
        seq = len(t.payloads)
        repeat = instance is not None and instance in t.published_by
        if repeat:
            t.repeats.add(seq)
        elif instance is not None:
            t.published_by.add(instance)
        tail = item_tail(seq, encoded)
        for sub in t.in_turns():
            if sub.backlog is not None:
                if sub.backlog.extend(seq):
                    continue
                sub.backlog = None  # for good: a later item must not pass this one
            if repeat and sub.expect is not None:
                continue
            small = len(tail) < SHARED
            if sub.take is not None and not (small and sub.idle is not None and sub.idle()):
                # Sent from the topic as the socket takes it, not queued: a reader taking a
                # burst of large items, each in turn, was dropped as one that did not read.
                sub.backlog = sub.take(sub.prefix, t.payloads, seq - 1, seq, sub.skipped(t))
            elif small:
                sub.reply(sub.prefix + tail)
            else:  # two replies in a row: the same bytes on the wire, the tail shared
                sub.reply(sub.prefix)
                sub.reply(tail)
        self._record({"kind": "publish", "topic": topic, "seq": seq, "instance": instance})
        return seq

    def subscribe(
        self,
        topic: str,
        request_id: Any,
        reply: Reply,
        *,
        expect: int | None = None,
        instance: str | None = None,
        backlog: Backlog | None = None,
        idle: Idle | None = None,
        peer: Hashable | None = None,
        roles: Collection[str] | None = None,
    ) -> None:
        """Send every message of `topic` so far, in order, then each new one.

        With `expect`, the subscription waits for that many items and fails with an error
        reply as soon as they can no longer come: the items published so far plus one from
        each running instance (of `roles`, if given) that has not published to `topic` yet
        are too few (as a barrier fails). `backlog`, if given, takes the items so far in
        one call. `peer`: the subscribing client's process, if known (a publish's replies
        take turns by it)."""
        t = self._topics.setdefault(topic, _Topic())
        sub = _Subscriber(request_id, reply, frame_prefix(request_id), expect, instance, peer)
        if roles is not None and self._running is not None:
            unknown = sorted(set(roles) - set(self._roles.values()))
            if unknown:
                known = ", ".join(sorted(set(self._roles.values()) - {""})) or "none"
                self._fail_reply(reply, request_id, (
                    f"subscription to {topic!r}: no instance has the role "
                    f"{', '.join(map(repr, unknown))} (the run's roles: {known})"))
                return
            sub.publishers = frozenset(i for i, role in self._roles.items() if role in roles)
        if expect is not None and t.firsts < expect and self._check_expectation(
            topic, t, sub
        ):
            return  # failed
        reply(sub.prefix + b',"ok":true}\n')
        sub.take, sub.idle = backlog, idle
        skipped = sub.skipped(t)
        if backlog is not None:
            sub.backlog = backlog(sub.prefix, t.payloads, 0, len(t.payloads), skipped)
        else:
            for seq, encoded in enumerate(t.payloads, 1):
                if seq not in skipped:
                    reply(sub.prefix + item_tail(seq, encoded))
        t.subscribers.append(sub)
        t.changed()
        if expect is not None and t.firsts < expect:
            t.expecting.append(sub)

    def _check_expectation(self, topic: str, t: _Topic, sub: _Subscriber) -> bool:
        """True if `sub` is done expecting: met, or failed just now (and told so)."""
        assert sub.expect is not None
        if t.firsts >= sub.expect:
            return True
        reason = self._unmeetable(
            f"subscription to {topic!r}", t.firsts, "published", t.published_by,
            "publishing", sub.expect, sub.publishers,
        )
        if reason is None:
            return False
        if sub in t.subscribers:
            t.subscribers.remove(sub)
            t.changed()
        error = _error_frame(sub.request_id, reason)
        # After the items it was sent so far: they count among those published.
        if sub.backlog is None or not sub.backlog.close_with(error):
            sub.reply(error)
        self._record({"kind": "subscription", "topic": topic, "expect": sub.expect,
                      "status": "failed", "instance": sub.instance, "reason": reason})
        return True

    def last_item(self, topic: str) -> Any:
        """The latest item published on `topic` (None if nothing was)."""
        t = self._topics.get(topic)
        return orjson.loads(t.payloads[-1]) if t is not None and t.payloads else None

    def subscribers(self, topic: str) -> int:
        """How many subscriptions `topic` has now (a closed connection's are gone)."""
        t = self._topics.get(topic)
        return len(t.subscribers) if t is not None else 0

    def unsubscribe(self, request_id: Any, reply: Reply) -> bool:
        """End a subscription of this connection; True if there was one."""
        for t in self._topics.values():
            for sub in t.subscribers:
                if sub.request_id == request_id and sub.reply is reply:
                    t.subscribers.remove(sub)
                    t.changed()
                    sub.end()
                    if sub in t.expecting:
                        t.expecting.remove(sub)
                    return True
        return False

    # -- events --------------------------------------------------------------------------

    def signal_event(self, instance: str | None, event: dict[str, Any]) -> None:
        """Record an instance's event (start, message, success, failure, crash, metric);
        its times are the service's, whatever the event says."""
        self._record({**{k: v for k, v in event.items() if k not in _STAMPS},
                      "kind": "event", "instance": instance})

    def connection_event(self, status: str, reason: str, instance: str | None) -> None:
        """Record what happened to a connection the service closed or lost (and why)."""
        self._record({"kind": "connection", "status": status, "instance": instance,
                      "reason": reason})

    def waiting_at(self, instance: str, ignore: Callable[[str], bool] | None = None
                   ) -> str | None:
        """Where `instance` waits now, if at a barrier: its state and how many arrived; else
        the topics it holds subscriptions to (it may be waiting for their next item), each
        with how many items it has (of how many it expects), but those `ignore` says are not
        its own (a cluster pod's agent and shaper connect under its name too)."""
        for name, st in self._states.items():
            for w in st.waiters:
                if w.instance == instance:
                    return f"waiting at barrier {name!r} ({st.count} of {w.target} arrived)"
        topics = []
        for name, t in self._topics.items():
            if ignore is not None and ignore(name):
                continue
            for sub in t.subscribers:
                if sub.instance == instance:
                    expected = "" if sub.expect is None else f", {sub.expect} expected"
                    topics.append(f"{name!r} ({len(t.payloads)} published{expected})")
                    break
        if not topics:
            return None
        more = f" and {len(topics) - _TOPICS_NAMED} more" if len(topics) > _TOPICS_NAMED else ""
        plural = "s" if len(topics) > 1 else ""
        return f"subscribed to topic{plural} {', '.join(topics[:_TOPICS_NAMED])}{more}"

    def snapshot(self) -> dict[str, int]:
        """Arrival counts per state (for progress and reports)."""
        return {name: st.count for name, st in self._states.items()}
