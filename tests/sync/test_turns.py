"""Replies to many clients take turns by client process: a fan-out or a barrier's release
reaches every process's first clients before any process's next ones. Most tests here use
turns of one reply (TURN = 1) to keep the orders short."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
import trio

from harness.sync import SyncServer, SyncState, _state, connect_unix
from harness.sync._state import in_turns

from ._util import serving

# Clients of processes a (three), b (two) and one whose process is not known (None), in the
# order they subscribed; in turns: the first of each, the second of each, then the third.
PEERS = ["a", "a", "a", "b", "b", None]
IN_TURNS = [0, 3, 5, 1, 4, 2]


@pytest.fixture
def turns_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_state, "TURN", 1)


def _subscribed(state: SyncState, topic: str, peers: list[Any]) -> list[int]:
    """Who got each reply to a publish on `topic` (indexes into `peers`)."""
    got: list[int] = []
    for i, peer in enumerate(peers):
        state.subscribe(topic, i, lambda frame, i=i: got.append(i), peer=peer)
    got.clear()  # the subscriptions' own replies
    state.publish(topic, "x")
    return got


@pytest.mark.usefixtures("turns_of_one")
def test_a_publish_replies_in_turns_by_process() -> None:
    state = SyncState()
    assert _subscribed(state, "t", PEERS) == IN_TURNS
    # without known processes: as they subscribed
    assert _subscribed(state, "u", [None] * 4) == [0, 1, 2, 3]


@pytest.mark.usefixtures("turns_of_one")
def test_the_turns_follow_subscriptions_that_come_and_go() -> None:
    state = SyncState()
    got: list[int] = []
    replies = {i: (lambda frame, i=i: got.append(i)) for i in range(4)}
    for i, peer in enumerate(["a", "a", "b", "b"]):
        state.subscribe("t", i, replies[i], peer=peer)
    state.publish("t", 1)
    assert state.unsubscribe(2, replies[2])  # b's first leaves: b's second moves up
    state.subscribe("t", 4, lambda frame: got.append(4), peer="c")
    got.clear()
    state.publish("t", 2)
    assert got == [0, 3, 4, 1]


@pytest.mark.usefixtures("turns_of_one")
def test_a_barrier_releases_in_turns_by_process() -> None:
    state = SyncState()
    got: list[int] = []
    for i, peer in enumerate(PEERS):
        state.barrier("s", len(PEERS), i, lambda frame, i=i: got.append(i), peer=peer)
    for _ in PEERS:
        state.signal_entry("s", None)
    assert got == IN_TURNS


@pytest.mark.usefixtures("turns_of_one")
def test_in_turns_keeps_each_process_own_order_and_everyone() -> None:
    class Item:
        def __init__(self, peer: Any) -> None:
            self.peer = peer

    items = [Item(p) for p in ["x", "y", "x", None, "y", "x", "z"]]
    out = in_turns(items)  # type: ignore[type-var]
    assert sorted(map(id, out)) == sorted(map(id, items))
    for peer in ("x", "y"):
        assert [i for i in out if i.peer == peer] == [i for i in items if i.peer == peer]
    assert [i.peer for i in out] == ["x", "y", None, "z", "x", "y", "x"]


def test_a_process_gets_a_turn_of_replies_in_a_row() -> None:
    """40 clients in each of two processes: 32 of a's, 32 of b's, then the rest of each;
    every process's within them in the order they subscribed."""
    peers = ["a"] * 40 + ["b"] * 40
    assert _state.TURN == 32
    assert _subscribed(SyncState(), "t", peers) == [
        *range(32), *range(40, 72), *range(32, 40), *range(72, 80)]
    assert _subscribed(SyncState(), "t", peers[:30] + peers[40:70]) == list(range(60))


def test_a_unix_connection_knows_its_client_process() -> None:
    """SO_PEERCRED: this process's own client, and another process's."""

    async def main() -> None:
        server = SyncServer(SyncState())
        async with serving(server) as path:
            async with connect_unix(path):
                await trio.sleep(0.05)
                (conn,) = server._connections
                assert conn.peer == os.getpid()
            with trio.fail_after(30):
                while server._connections:  # noqa: ASYNC110 (until the service saw it go)
                    await trio.sleep(0.02)
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-c", "import socket, sys, time; s = socket.socket("
                     "socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(30)", path])
                try:
                    while not server._connections:  # noqa: ASYNC110
                        await trio.sleep(0.02)
                    (conn,) = server._connections
                    assert conn.peer == proc.pid
                finally:
                    proc.kill()
                    await proc.wait()

    trio.run(main)
