"""The sync state's work grows linearly with the arrivals at a barrier, not with their square.

Counted in steps (looks at a waiter, frames built), never timed."""

from __future__ import annotations

from typing import Any

import orjson

from harness.sync import SyncState


class _Counting(list[Any]):
    """A waiter list that counts how often it is walked."""

    walks = 0

    def __iter__(self) -> Any:
        type(self).walks += 1
        return super().__iter__()


def test_arrivals_below_every_target_release_nobody_without_a_pass_over_the_waiters() -> None:
    state = SyncState()
    replies: list[bytes] = []
    n = 200
    for i in range(n):
        state.barrier("all", n, i, replies.append)
    waiters = state._states["all"]
    waiters.waiters = _Counting(waiters.waiters)
    _Counting.walks = 0
    for _ in range(n - 1):
        state.signal_entry("all", None)
    assert replies == []
    assert _Counting.walks == 0  # 199 arrivals, each below the target: no pass at all
    state.signal_entry("all", None)
    assert sorted(orjson.loads(r)["id"] for r in replies) == list(range(n))


def test_mixed_targets_release_in_order_also_after_the_lowest_waiter_leaves() -> None:
    state = SyncState()
    replies: list[bytes] = []
    reply = replies.append  # one callable: a connection is known by its reply's identity
    state.barrier("s", 2, "two", reply)
    state.barrier("s", 3, "three", reply)
    state.barrier("s", 5, "five", reply)
    assert state.cancel_barrier("two", reply)  # the lowest target leaves
    replies.clear()
    ids = []
    for _ in range(5):
        state.signal_entry("s", None)
        ids.append([orjson.loads(r)["id"] for r in replies])
        replies.clear()
    assert ids == [[], [], ["three"], [], ["five"]]
    state.barrier("s", 1, "late", reply)  # already met: at once
    assert [orjson.loads(r)["id"] for r in replies] == ["late"]


def test_a_topic_of_many_small_items_holds_their_size_not_a_buffer_each() -> None:
    """orjson 3.12+ returns each encoding over a buffer of 4 KiB or more: 100,000 items of
    15 bytes, kept for late subscribers, held 400 MB of the supervisor's memory."""
    import tracemalloc

    state = SyncState()
    tracemalloc.start()
    try:
        for i in range(20_000):
            state.publish("t", {"i": i, "who": 5})
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / 20_000 < 300, f"{held / 20_000:.0f} bytes an item"
