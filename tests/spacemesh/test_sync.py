"""Sync from genesis: a node that joins long after genesis gets the whole history."""

from __future__ import annotations

from typing import Any

import pytest

from scenarios.spacemesh import MeshParams, memory_cluster

pytestmark = pytest.mark.anyio
PARAMS = MeshParams(layers_per_epoch=3, pow_bits=4, window=6, hdist=2)
JOIN = 24


async def test_late_joiner_syncs_layers_atxs_and_txs_from_genesis() -> None:
    async with memory_cluster(miners=4, seed=9, layer_duration=2.0, params=PARAMS) as c:
        gw = c.gateways[0]
        late = [i for i, p in c.processes.items() if p.role == "miner"][-1]
        c.kill(late)  # it never ran: it starts long after genesis, with nothing
        await c.clock.sleep_until(gw.layer_start(JOIN))
        await c.start(late)
        await c.clock.sleep_until(gw.layer_start(JOIN + 3) + 0.5)
        joiner: Any = c.processes[late].part
        others = [n for n in c.nodes if n is not joiner]
        mine = [(s.hash, s.state_root) for s in joiner.layers()[:JOIN]]
        theirs = [[(s.hash, s.state_root) for s in n.layers()[:JOIN]] for n in others]
        old_atxs = {i for i, a in gw.mesh.atxs.items() if a["target_epoch"] <= 2}
        first = min((int(p["layer"]) for p in joiner.mesh.proposals.values()), default=None)
    assert all(t == theirs[0] for t in theirs) and len(theirs[0]) == JOIN
    assert mine == theirs[0]
    assert old_atxs and old_atxs <= set(joiner.mesh.atxs)
    assert first is not None and first <= PARAMS.layers_per_epoch + 1


async def test_a_hook_adds_messages_to_the_sync() -> None:
    async with memory_cluster(miners=1, seed=2, layer_duration=2.0, params=PARAMS) as c:
        gw = c.gateways[0]
        proof = {"smesher": "ab", "kind": "atx"}
        gw.syncer.add_source("malfeasance", lambda: {"p1": ("malfeasance", proof)})
        digests = gw.syncer.digests()
        held = gw.syncer.holdings("malfeasance")
    assert "malfeasance" in digests and held == [("malfeasance", proof)]


async def test_cached_digests_always_equal_a_fresh_hash() -> None:
    """Digests are cached by what each key's messages depend on; at any moment each must
    still be the hash of what the node holds under the key (else a gap is never healed)."""
    from scenarios.spacemesh._codec import hash_json

    async with memory_cluster(miners=3, seed=4, layer_duration=2.0, params=PARAMS) as c:
        node: Any = c.nodes[-1]
        checked = 0
        # Cut the node off for a while: what it missed (past layers' proposals and
        # certificates) arrives late, by sync, under keys whose digests it already holds.
        side_a = [node.config.listen]
        side_b = [n.config.listen for n in c.nodes if n is not node]
        for step in range(40):
            if step in (8, 20):
                c.net.partition(side_a, side_b, cut=step == 8)
            await c.clock.sleep_until(c.clock.now() + 0.3 + 0.1 * (step % 3))
            for key, digest in node.syncer.digests().items():
                assert digest == hash_json(sorted(node.syncer._messages(key))), (step, key)
                checked += 1
    assert checked > 40 * 10


async def test_the_recent_txs_digest_is_cached_and_follows_proposals_and_txs() -> None:
    """``txs:recent`` was hashed anew at every exchange; cached, it must still change when
    a proposal of the window names a tx, or a named tx's body arrives."""
    from scenarios.spacemesh._codec import hash_json
    from scenarios.spacemesh._keys import Signer
    from scenarios.spacemesh._txs import address_of, spawn_tx, spend_tx

    alice = Signer("alice")
    a, b = address_of(alice.public_hex), address_of(Signer("bob").public_hex)
    params = MeshParams(layers_per_epoch=3, pow_bits=4, genesis_accounts=((a, 1_000_000),))
    async with memory_cluster(miners=3, seed=3, layer_duration=2.0, params=params) as c:
        node: Any = c.nodes[-1]
        await c.clock.sleep_until(node.layer_start(4))
        fresh = {hash_json(sorted(node.syncer._messages("txs:recent")))}
        c.gateways[0].submit_tx(spawn_tx(alice, 0, 100))
        c.gateways[0].submit_tx(spend_tx(alice, b, 10, 1, 5))
        for _ in range(30):
            await c.clock.sleep_until(c.clock.now() + 0.25)
            held = node.syncer._messages("txs:recent")
            assert node.syncer.digests()["txs:recent"] == hash_json(sorted(held))
            fresh.add(hash_json(sorted(held)))
        asked: list[str] = []
        messages = node.syncer._messages
        node.syncer._messages = lambda key: asked.append(key) or messages(key)
        node.syncer.digests()  # nothing changed since the last exchange: nothing hashed
    assert "txs:recent" not in asked
    assert len(fresh) > 1  # the txs arrived within the window: the digest changed


async def test_a_new_tx_leaves_the_digests_of_complete_history_chunks_cached() -> None:
    """A history chunk's digest depended on the mempool's size: every tx that arrived made
    every chunk be hashed again, certificates included (a cost growing with the history).
    Once the txs a chunk's proposals name are all held, a new tx changes nothing there."""
    from scenarios.spacemesh._codec import hash_json
    from scenarios.spacemesh._keys import Signer
    from scenarios.spacemesh._txs import address_of, parse_tx, spawn_tx, spend_tx

    alice = Signer("alice")
    a, b = address_of(alice.public_hex), address_of(Signer("bob").public_hex)
    params = MeshParams(layers_per_epoch=3, pow_bits=4, window=6, hdist=2,
                        genesis_accounts=((a, 1_000_000),))  # fmt: skip
    async with memory_cluster(miners=3, seed=3, layer_duration=2.0, params=params) as c:
        node: Any = c.nodes[-1]
        gateway = c.gateways[0]
        await c.clock.sleep_until(node.layer_start(3))
        gateway.submit_tx(spawn_tx(alice, 0, 100))
        for nonce in range(1, 6):  # txs in the layers that become history
            await c.clock.sleep_until(c.clock.now() + 2.0)
            gateway.submit_tx(spend_tx(alice, b, 10, nonce, 5))
        await c.clock.sleep_until(node.layer_start(params.window + 12))
        digests = node.syncer.digests()
        history = [k for k in digests if k.startswith("history:")]
        named = {t for p in node.mesh.proposals.values()
                 if int(p["layer"]) < node.current_layer() - params.window
                 for t in p.get("txs", [])}  # fmt: skip
        node.mempool.add(parse_tx(spend_tx(alice, b, 10, 6, 5))[1])  # a tx arrives
        asked: list[str] = []
        messages = node.syncer._messages
        node.syncer._messages = lambda key: asked.append(key) or messages(key)
        after = node.syncer.digests()
        node.syncer._messages = messages
        fresh = {k: hash_json(sorted(messages(k))) for k in history}
    assert history and named  # the history holds proposals that carry txs
    assert len(node.mempool.txs) == 7
    assert not [k for k in asked if k.startswith("history:")], asked
    assert {k: after[k] for k in history} == fresh
