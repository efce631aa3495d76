"""The sync service's state: topics, signal counts and barriers, free of any I/O.

Replies leave through `Reply` callbacks that must not block (the server queues them on the
connection). Everything is event-driven: a barrier is checked when its state is signalled or
when an instance ends, never on a tick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import Any

import orjson

Reply = Callable[[bytes], None]
"""Takes one encoded frame for the requesting connection; never blocks."""

Recorder = Callable[[dict[str, Any]], None]
"""Receives every event worth keeping (events.jsonl, progress, outcomes)."""


def _frame_prefix(request_id: Any) -> bytes:
    return b'{"id":' + orjson.dumps(request_id)


@dataclasses.dataclass(eq=False)
class _Subscriber:
    request_id: Any
    reply: Reply
    prefix: bytes


@dataclasses.dataclass
class _Topic:
    payloads: list[bytes] = dataclasses.field(default_factory=list)  # encoded once
    subscribers: list[_Subscriber] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class _Waiter:
    request_id: Any
    target: int
    reply: Reply
    instance: str | None
    seq: int | None = None  # set for signal_and_wait


@dataclasses.dataclass
class _State:
    count: int = 0
    signalled_by: set[str] = dataclasses.field(default_factory=set)
    waiters: list[_Waiter] = dataclasses.field(default_factory=list)


class SyncState:
    """Topics, states and barriers of one run.

    `instances` are the ids expected to take part; with them the state can tell when a
    barrier can no longer be met. Without (None), barriers only wait.
    """

    def __init__(self, instances: Collection[str] | None = None, record: Recorder | None = None):
        self._topics: dict[str, _Topic] = {}
        self._states: dict[str, _State] = {}
        self._running: set[str] | None = set(instances) if instances is not None else None
        self._ended: dict[str, str] = {}
        self._record = record or (lambda event: None)

    # -- signals and barriers ------------------------------------------------------------

    def signal_entry(self, state: str, instance: str | None) -> int:
        """Count one arrival at `state`; returns the 1-based arrival number."""
        st = self._states.setdefault(state, _State())
        st.count += 1
        if instance is not None:
            st.signalled_by.add(instance)
        self._record({"kind": "signal", "state": state, "seq": st.count, "instance": instance})
        if st.waiters:
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
    ) -> None:
        """Reply once `state` has `target` arrivals, or fail as soon as it cannot."""
        st = self._states.setdefault(state, _State())
        waiter = _Waiter(request_id, target, reply, instance, seq)
        if st.count >= target:
            self._succeed(waiter)
            return
        reason = self._unmeetable(state, st, target)
        if reason:
            self._fail(waiter, reason)
            return
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
        """`instance` stopped (`how` says why); barriers that needed it fail at once."""
        if self._running is None or instance not in self._running:
            return
        self._running.discard(instance)
        self._ended[instance] = how
        for state, st in self._states.items():
            if not st.waiters:
                continue
            for waiter in list(st.waiters):
                reason = self._unmeetable(state, st, waiter.target)
                if reason:
                    st.waiters.remove(waiter)
                    self._fail(waiter, reason)

    def drop_connection(self, reply: Reply) -> None:
        """Forget the waiters and subscriptions of a closed connection."""
        for st in self._states.values():
            st.waiters = [w for w in st.waiters if w.reply is not reply]
        for topic in self._topics.values():
            topic.subscribers = [s for s in topic.subscribers if s.reply is not reply]

    def _unmeetable(self, state: str, st: _State, target: int) -> str | None:
        if self._running is None:
            return None
        can_still_come = len(self._running - st.signalled_by)
        if st.count + can_still_come >= target:
            return None
        why = (
            f"barrier {state!r} can no longer reach {target}: {st.count} arrived, at most "
            f"{can_still_come} more can"
        )
        gone = sorted(i for i in self._ended if i not in st.signalled_by)
        if gone:
            why += "; ended without signalling: " + "; ".join(
                f"{i} ({self._ended[i]})" for i in gone[:10]
            )
            why += f" and {len(gone) - 10} more" if len(gone) > 10 else ""
        return why

    def _release(self, state: str, st: _State) -> None:
        keep = []
        released: dict[int, int] = {}  # target -> waiters released: one event each, not N
        for waiter in st.waiters:
            if st.count >= waiter.target:
                self._succeed(waiter)
                released[waiter.target] = released.get(waiter.target, 0) + 1
            else:
                keep.append(waiter)
        st.waiters = keep
        for target, waiters in released.items():
            self._record({"kind": "barrier", "state": state, "target": target,
                          "status": "released", "waiters": waiters})

    @staticmethod
    def _succeed(waiter: _Waiter) -> None:
        tail = b',"ok":true}\n' if waiter.seq is None else b',"ok":true,"seq":%d}\n' % waiter.seq
        waiter.reply(_frame_prefix(waiter.request_id) + tail)

    def _fail(self, waiter: _Waiter, reason: str, record: bool = True) -> None:
        waiter.reply(orjson.dumps({"id": waiter.request_id, "error": reason}) + b"\n")
        if record:
            self._record({"kind": "barrier", "target": waiter.target, "status": "failed",
                          "instance": waiter.instance, "reason": reason})

    # -- pub/sub -------------------------------------------------------------------------

    def publish(self, topic: str, payload: Any, instance: str | None = None) -> int:
        """Append to `topic`, deliver to its subscribers; returns the 1-based position."""
        t = self._topics.setdefault(topic, _Topic())
        encoded = orjson.dumps(payload)
        t.payloads.append(encoded)
        seq = len(t.payloads)
        tail = b',"seq":%d,"item":%b}\n' % (seq, encoded)
        for sub in t.subscribers:
            sub.reply(sub.prefix + tail)
        self._record({"kind": "publish", "topic": topic, "seq": seq, "instance": instance})
        return seq

    def subscribe(self, topic: str, request_id: Any, reply: Reply) -> None:
        """Send every message of `topic` so far, in order, then each new one."""
        t = self._topics.setdefault(topic, _Topic())
        sub = _Subscriber(request_id, reply, _frame_prefix(request_id))
        reply(sub.prefix + b',"ok":true}\n')
        for seq, encoded in enumerate(t.payloads, 1):
            reply(sub.prefix + b',"seq":%d,"item":%b}\n' % (seq, encoded))
        t.subscribers.append(sub)

    def unsubscribe(self, request_id: Any, reply: Reply) -> bool:
        """End a subscription of this connection; True if there was one."""
        for t in self._topics.values():
            for sub in t.subscribers:
                if sub.request_id == request_id and sub.reply is reply:
                    t.subscribers.remove(sub)
                    return True
        return False

    # -- events --------------------------------------------------------------------------

    def signal_event(self, instance: str | None, event: dict[str, Any]) -> None:
        """Record an instance's event (start, message, success, failure, crash, metric)."""
        self._record({**event, "kind": "event", "instance": instance})

    def snapshot(self) -> dict[str, int]:
        """Arrival counts per state (for progress and reports)."""
        return {name: st.count for name, st in self._states.items()}
