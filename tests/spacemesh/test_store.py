"""Persistence: a node with a data directory resumes after a restart, and keeps its ATX;
a PoET with one closes the rounds it had open."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import sqlite3
from typing import Any

import pytest

from scenarios.spacemesh import MeshParams, _cluster, memory_cluster
from scenarios.spacemesh._codec import hash_json
from scenarios.spacemesh._poet_store import PoetStore
from scenarios.spacemesh._store import FLUSH_ROWS, FLUSH_S, Store
from scenarios.spacemesh.node import data_dir
from scenarios.spacemesh.node import main as node_main
from scenarios.spacemesh.poet import main as poet_main

PARAMS = MeshParams(layers_per_epoch=3, pow_bits=4)


def test_store_keeps_messages_in_order_and_own_atxs(tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path / "d"))
    store.add_message("atx", {"a": 1})
    store.add_message("proposal", {"b": 2})
    store.add_message("atx", {"a": 1})
    store.keep_own_atx(3, {"x": 1})
    store.keep_own_atx(3, {"x": 2})  # a second ATX for the same epoch never replaces the first
    store.save_accounts(7, {"ab": (5, 1, "k")})
    store.close()
    again = Store(str(tmp_path / "d"))
    assert list(again.messages()) == [("atx", {"a": 1}), ("proposal", {"b": 2})]
    assert again.own_atxs() == {3: {"x": 1}}
    assert again.load_accounts() == (7, {"ab": (5, 1, "k")})


def test_store_keeps_the_address_book_it_was_last_given(tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path / "d"))
    assert store.peers() == ([], [])
    store.save_peers({"a:1", "b:1", "c:1"}, {"b:1"})
    store.save_peers({"b:1", "c:1", "d:1"}, {"c:1", "d:1"})  # replaces, not adds
    store.close()
    assert Store(str(tmp_path / "d")).peers() == (["b:1", "c:1", "d:1"], ["c:1", "d:1"])


def _committed(directory: pathlib.Path) -> int:
    """The messages another process would see in a store's database."""
    db = sqlite3.connect(directory / "state.sqlite")
    try:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        db.close()


def test_kept_messages_are_committed_together(tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path))
    try:
        store.add_message("atx", {"a": 1})
        store.add_message("proposal", {"b": 2})
        assert _committed(tmp_path) == 0
        store.flush()
        assert _committed(tmp_path) == 2
        for i in range(FLUSH_ROWS):  # a full batch is committed without waiting for a flush
            store.add_message("hare", {"i": i})
        assert _committed(tmp_path) == 2 + FLUSH_ROWS
        store.add_message("atx", {"a": 1})  # kept already: still one row
        store.flush()
        assert _committed(tmp_path) == 2 + FLUSH_ROWS
    finally:
        store.close()


def test_unusable_data_dir_is_a_value_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="unusable"):
        Store(str(tmp_path / "file"))


@pytest.mark.anyio
async def test_restarted_node_resumes_its_mesh_and_accounts(tmp_path: pathlib.Path) -> None:
    async with memory_cluster(miners=3, seed=4, layer_duration=2.0, params=PARAMS,
                              data_root=str(tmp_path)) as c:
        miner = next(i for i, p in c.processes.items() if p.role == "miner")
        await c.clock.sleep_until(c.gateways[0].layer_start(9) + 0.1)
        before = c.processes[miner].part
        assert before is not None and not isinstance(before, _cluster.PoetService)
        layers = [(s.hash, s.state_root) for s in before.layers()]
        accounts = before.accounts()
        # Killed right after a commit: a kill loses what came since the last one (up to
        # FLUSH_S, `test_a_node_commits_what_it_kept_within_the_flush_interval`), and
        # whether a layer's certificate came in that last second is the run's luck.
        assert before.store is not None
        before.store.flush()
        c.kill(miner)
        await c.start(miner)  # no time passes: nothing could come from peers yet
        after = c.processes[miner].part
        assert after is not None and after is not before
        resumed = [(s.hash, s.state_root) for s in after.layers()]  # type: ignore[union-attr]
        resumed_accounts = after.accounts()  # type: ignore[union-attr]
    assert len(layers) >= 8 and resumed == layers
    assert accounts and resumed_accounts == accounts


@pytest.mark.anyio
async def test_a_node_commits_what_it_kept_within_the_flush_interval(
    tmp_path: pathlib.Path,
) -> None:
    """A node killed with SIGKILL loses at most its last `FLUSH_S` of messages."""
    async with memory_cluster(miners=3, seed=4, layer_duration=2.0, params=PARAMS,
                              data_root=str(tmp_path)) as c:
        miner = next(i for i, p in c.processes.items() if p.role == "miner")
        node: Any = c.processes[miner].part
        directory = pathlib.Path(node.config.data_dir)
        for layer in (3, 5, 7):
            await c.clock.sleep_until(c.gateways[0].layer_start(layer) + 0.3)
            kept = _committed(directory) + len(node.store._pending)
            await c.clock.sleep_until(c.clock.now() + FLUSH_S + 0.01)
            assert _committed(directory) >= kept > 0


@pytest.mark.anyio
async def test_restart_in_the_same_epoch_does_not_build_a_second_atx(
    tmp_path: pathlib.Path,
) -> None:
    async with memory_cluster(miners=3, seed=6, layer_duration=2.0, params=PARAMS,
                              data_root=str(tmp_path)) as c:
        gw = c.gateways[0]
        miner = next(i for i, p in c.processes.items() if p.role == "miner")
        node: Any = c.processes[miner].part
        # Wait until the miner has published its ATX for the next epoch, mid-epoch.
        target = 0
        while target == 0:
            await c.clock.sleep_until(c.clock.now() + 0.2)
            epoch = PARAMS.epoch(gw.current_layer())
            if epoch >= 2 and epoch + 1 in node._atx_for_epoch:
                target = epoch + 1
        published = node._atx_for_epoch[target]
        c.kill(miner)
        await c.start(miner)
        node = c.processes[miner].part
        await c.clock.sleep_until(c.clock.now() + 0.1)
        # It gossips the ATX it kept, without registering a new challenge with the PoET.
        republished, challenge = node.atxs_published, node._challenge
        await c.clock.sleep_until(gw.layer_start(target * PARAMS.layers_per_epoch) + 0.5)
        mine = {i for i, a in gw.mesh.atxs.items() if a["smesher"] == node.smesher_id}
        theirs = node._atx_for_epoch.get(target)
        epoch_atxs = {i for i in mine if gw.mesh.atxs[i]["target_epoch"] == target}
        stored = Store(node.config.data_dir).own_atxs()
    assert republished == 1 and challenge == ""
    assert theirs == published and epoch_atxs == {published}
    assert hash_json(stored[target]) == published


@pytest.mark.anyio
async def test_a_restarted_gateway_dials_the_peers_its_address_book_kept(
    tmp_path: pathlib.Path,
) -> None:
    """The gateway has no bootnode, and the miners back off from it (their dials failed
    while it was down): only its kept address book gets it peers again at once."""
    async with memory_cluster(miners=3, seed=4, layer_duration=2.0, params=PARAMS,
                              data_root=str(tmp_path)) as c:
        gateway = next(i for i, p in c.processes.items() if p.role == "gateway")
        await c.clock.sleep_until(c.gateways[0].layer_start(3))
        before: Any = c.processes[gateway].part
        peers = set(before.gossip.peer_ids)
        c.kill(gateway)
        await c.clock.sleep_until(c.clock.now() + 2.0)
        await c.start(gateway)
        await c.clock.sleep_until(c.clock.now() + 1.0)
        after: Any = c.processes[gateway].part
        assert after is not before
        reconnected = set(after.gossip.peer_ids)
    assert len(peers) == 3
    assert reconnected == peers


def test_poet_store_keeps_each_round_s_members_in_order_and_its_proofs(
    tmp_path: pathlib.Path,
) -> None:
    store = PoetStore(str(tmp_path))
    for r, m in ((1, b"b"), (1, b"a"), (2, b"c"), (1, b"b")):  # the second b is one member
        store.add_member(r, m)
    store.keep_proof(1, {"round": 1, "members": ["62", "61"]})
    store.close()
    again = PoetStore(str(tmp_path))
    assert again.members() == {1: [b"b", b"a"], 2: [b"c"]}
    assert again.proofs() == {1: {"round": 1, "members": ["62", "61"]}}


@pytest.mark.anyio
@pytest.mark.parametrize("down_past_the_round_end", [False, True])
async def test_a_restarted_poet_closes_the_round_it_had_open_with_its_members(
    tmp_path: pathlib.Path, down_past_the_round_end: bool
) -> None:
    async with memory_cluster(miners=3, seed=4, layer_duration=2.0, params=PARAMS,
                              data_root=str(tmp_path)) as c:  # fmt: skip
        (poet_id,) = (i for i, p in c.processes.items() if p.role == "poet")
        poet: Any = c.processes[poet_id].part
        while not poet._members.get(poet.open_round_id()):
            await c.clock.sleep_until(c.clock.now() + 0.1)
        round_id = poet.open_round_id()
        joined = [m.hex() for m in poet._members[round_id]]
        c.kill(poet_id)
        if down_past_the_round_end:
            await c.clock.sleep_until(poet.round_end(round_id) + 0.5)
        await c.start(poet_id)
        again: Any = c.processes[poet_id].part
        await c.clock.sleep_until(max(c.clock.now(), poet.round_end(round_id)) + 1.0)
        assert again is not poet and round_id not in poet.proofs
        proof = again.proofs.get(round_id)
    assert proof is not None and proof["members"][: len(joined)] == joined


@pytest.mark.parametrize(
    ("flag", "message"), [("--checkpoint", "checkpoint .*missing"), ("--data-dir", "unusable")]
)
def test_node_command_refuses_bad_state_paths(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], flag: str, message: str
) -> None:
    (tmp_path / "file").write_text("")
    path = str(tmp_path / ("missing" if flag == "--checkpoint" else "file"))
    base = ["--identity", "x", "--listen", "127.0.0.1:1", "--grpc", "127.0.0.1:2"]
    with pytest.raises(SystemExit) as exit_info:
        node_main([*base, flag, path])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(message, err)


def test_poet_command_refuses_an_unusable_data_dir(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        poet_main(["--listen", "127.0.0.1:1", "--data-dir", str(tmp_path / "file")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "unusable" in err


def test_data_dir_defaults_to_the_outputs_kept_across_restarts() -> None:
    assert data_dir(None, "/o") == "/o/data" and data_dir("/d", "/o") == "/d"
    assert data_dir(None, None) is None


def test_store_commits_without_an_fsync_per_message(tmp_path: pathlib.Path) -> None:
    """WAL with synchronous=NORMAL, as go-spacemesh: FULL (SQLite's default) flushes the
    disk at every message, which stalls the node's event loop."""
    store = Store(str(tmp_path / "d"))
    try:
        assert store._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert store._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    finally:
        store.close()


def test_a_killed_node_loses_none_of_the_messages_it_committed(tmp_path: pathlib.Path) -> None:
    """What a process committed survives its SIGKILL (the kernel holds the WAL's writes),
    which is what the kill and restart faults rely on; keeping its own ATX commits the
    messages kept before it."""
    directory = str(tmp_path / "d")
    pid = os.fork()
    if pid == 0:  # the node: keep messages, then die without closing anything
        try:
            store = Store(directory)
            for i in range(50):
                store.add_message("proposal", {"i": i})
            store.keep_own_atx(2, {"x": 1})
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    again = Store(directory)
    try:
        assert list(again.messages()) == [("proposal", {"i": i}) for i in range(50)]
        assert again.own_atxs() == {2: {"x": 1}}
    finally:
        again.close()
