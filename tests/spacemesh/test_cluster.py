"""A whole network in one process (in-memory transport, virtual time) reaches agreement."""

from __future__ import annotations

import gc
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from scenarios.spacemesh import LayerStatus, MemoryLink, MeshParams, memory_cluster
from scenarios.spacemesh._codec import canonical

from .logs import EVENTS

pytestmark = pytest.mark.anyio

TARGET = 10


async def test_poet_gateway_and_four_miners_agree(logs: list[dict[str, Any]]) -> None:
    wall = time.perf_counter()
    params = MeshParams(layers_per_epoch=3, pow_bits=4)
    async with memory_cluster(miners=4, seed=11, layer_duration=2.0, params=params) as c:
        await c.clock.sleep_until(c.gateways[0].layer_start(TARGET + params.hdist) + 1.0)
        states = {n.node_id: n.layers() for n in c.nodes}
        statuses = [n.status() for n in c.nodes]
        smeshers = {m.smesher_id for m in c.miners}
        atx_sets = [{a["smesher"] for a in n.mesh.atxs.values()} for n in c.nodes]
        published = [m.atxs_published for m in c.miners]
        errors = [m.last_error for m in c.miners]
    print(f"in-process 6-node network, {TARGET + 3} layers: {time.perf_counter() - wall:.2f}s wall")
    for st in statuses:
        assert st["verified_layer"] >= TARGET and st["connected_peers"] >= 1
    hashes = [[s.hash for s in layers[: TARGET + 1]] for layers in states.values()]
    assert all(h == hashes[0] for h in hashes) and len(hashes[0]) == TARGET + 1
    reference = next(iter(states.values()))
    # Layers after the first epoch carry blocks with rewards: the network really ran.
    blocks = [s for s in reference[: TARGET + 1] if s.block is not None]
    assert len(blocks) >= TARGET - 2 * params.layers_per_epoch
    assert reference[TARGET].status is LayerStatus.VERIFIED
    assert reference[TARGET].state_root != reference[params.layers_per_epoch].state_root
    assert all(smeshers <= atxs for atxs in atx_sets)
    assert all(p >= 3 for p in published) and errors == ["", "", "", ""]
    assert c.poet.broadcasts and all(b.delivered for b in c.poet.broadcasts.values())
    # The logs tell the same story, without warnings and with nothing per message.
    events = Counter(e["event"] for e in logs)
    assert set(events) <= EVENTS and not [e for e in logs if e["log_level"] != "info"]
    assert events["node started"] == 5 and events["poet started"] == 1
    assert events["atx published"] == sum(published)
    assert events["poet proof broadcast"] == len(c.poet.broadcasts)
    hashes: dict[int, set[str]] = defaultdict(set)
    for e in logs:
        if e["event"] == "layer verified":
            hashes[e["layer"]].add(e["hash"])
    assert all(len(h) == 1 for h in hashes.values()) and len(hashes) >= TARGET + 1
    assert events["layer verified"] == 5 * len(hashes)  # once per node and layer
    assert {e["via"] for e in logs if e["event"] == "layer verified"} == {"hare", "tortoise"}
    assert len(logs) < 5 * 40  # a few lines per node and epoch, one per layer


async def test_a_gateway_logs_every_hand_off_by_the_poet_not_only_new_proofs(
    logs: list[dict[str, Any]],
) -> None:
    """Gossip from another gateway may bring a PoET's proof before the PoET's own call
    does: the hand-off is still logged (new=False), a gossiped copy is not."""
    params = MeshParams(layers_per_epoch=3, pow_bits=4)
    async with memory_cluster(miners=2, seed=3, layer_duration=1.0, params=params) as c:
        await c.clock.sleep_until(c.poet.round_end(0) + 1.0)
        (proof,) = c.poet.proofs.values()
        gateway = c.gateways[0]
        logs.clear()
        assert gateway.broadcast_poet(canonical(proof)) == (True, "")
        for miner in c.miners:  # a gossiped copy of a proof already held
            assert miner._handler("poet")(proof) is True
    (handed,) = [e for e in logs if e["event"] == "poet proof received"]
    assert (handed["source"], handed["new"]) == ("poet", False)
    assert handed["poet"] == c.poet.public_key[:16] and handed["round"] == 0


async def test_agreement_over_lossy_jittery_links() -> None:
    link = MemoryLink(delay=0.05, jitter=0.03, loss=0.05)
    params = MeshParams(layers_per_epoch=3, pow_bits=4)
    async with memory_cluster(miners=6, seed=5, layer_duration=2.0, params=params, link=link) as c:
        await c.clock.sleep_until(c.gateways[0].layer_start(TARGET + params.hdist) + 1.0)
        hashes = [[s.hash for s in n.layers()[: TARGET + 1]] for n in c.nodes]
    assert len(hashes[0]) == TARGET + 1
    assert all(h == hashes[0] for h in hashes)


async def test_unreachable_poet_leaves_miners_without_atxs_and_says_why(
    logs: list[dict[str, Any]],
) -> None:
    params = MeshParams(layers_per_epoch=3, pow_bits=4)
    async with memory_cluster(
        miners=2, seed=3, layer_duration=1.0, params=params, poet_reachable=False
    ) as c:
        await c.clock.sleep_until(c.gateways[0].layer_start(7))
        errors = [m.last_error for m in c.miners]
        atxs = [len(n.mesh.atxs) for n in c.nodes]
        blocks = [s.block for s in c.nodes[0].layers()]
    assert all("unreachable" in e for e in errors), errors
    assert atxs == [0, 0, 0]
    assert blocks and all(b is None for b in blocks)
    # Retried every 0.5 s, but warned once per miner and epoch, with the error.
    warned = [e for e in logs if e["event"] == "poet unreachable"]
    assert warned and all("unreachable" in e["error"] for e in warned)
    assert len(warned) <= 2 * 3  # 2 miners, at most 3 epochs begun in 7 layers
    assert {e["log_level"] for e in warned} == {"warning"}
    assert "atx not published" in {e["event"] for e in logs}


async def test_a_healed_partition_converges(logs: list[dict[str, Any]]) -> None:
    """Cut the miners in two for a few layers; afterwards every node agrees again."""
    params = MeshParams(layers_per_epoch=4, pow_bits=4, window=12)
    async with memory_cluster(miners=5, seed=9, layer_duration=2.0, params=params) as c:
        gw = c.gateways[0]
        await c.clock.sleep_until(gw.layer_start(5))
        side_a = [gw.config.listen] + [m.config.listen for m in c.miners[:3]]
        side_b = [m.config.listen for m in c.miners[3:]]
        c.net.partition(side_a, side_b)
        await c.clock.sleep_until(gw.layer_start(7) + 1.9)
        during = [[(s.status, s.hash) for s in n.layers()] for n in c.nodes]
        minority_hare = [c.miners[-1].mesh.certified_block(layer) for layer in range(5, 8)]
        c.net.partition(side_a, side_b, cut=False)
        await c.clock.sleep_until(gw.layer_start(16))
        hashes = [[s.hash for s in n.layers()[:13]] for n in c.nodes]
    # While cut off, the minority side had no hare output (too little weight to certify).
    minority, majority = during[-1], during[0]
    assert minority != majority
    assert minority_hare == [None, None, None]
    assert len(hashes[0]) == 13
    assert all(h == hashes[0] for h in hashes)
    # The minority's nodes said so: no hare output, then their decisions flipped.
    minority_ids = {n.node_id for n in c.miners[3:]}
    warnings = {(e["event"], e["node"]) for e in logs if e["log_level"] == "warning"}
    assert {("hare timeout", n) for n in minority_ids} <= warnings
    assert {("layer hash changed", n) for n in minority_ids} <= warnings


async def test_a_sampled_hare_committee_still_certifies_and_agrees() -> None:
    params = MeshParams(layers_per_epoch=3, pow_bits=4, committee=4)
    async with memory_cluster(miners=12, seed=21, layer_duration=2.0, params=params) as c:
        await c.clock.sleep_until(c.gateways[0].layer_start(TARGET + params.hdist) + 1.0)
        mesh = c.gateways[0].mesh
        layers = range(2 * params.layers_per_epoch, TARGET + 1)  # epochs with 12 ATXs
        voters = [len(mesh.layer_votes(layer)) for layer in layers]
        certified = [mesh.certified_block(layer) is not None for layer in layers]
        hashes = [[s.hash for s in n.layers()[: TARGET + 1]] for n in c.nodes]
    assert 0 < sum(voters) / len(voters) < 8  # about 4 of 12 vote, not all of them
    assert sum(certified) >= len(certified) / 3
    assert len(hashes[0]) == TARGET + 1 and all(h == hashes[0] for h in hashes)


async def test_a_miner_that_finds_peers_late_in_epoch_zero_still_publishes_its_atx() -> None:
    """A miner registered with the PoET in round 0 but found no gossip peer until after the
    round's proof was flooded and after the last layer-start sync of epoch 0 (a crowd at a
    single bootnode, a loaded machine). The digest exchange that starts every connection
    brings it the proof at once, so it still builds its epoch-1 ATX before epoch 0 ends."""
    params = MeshParams(layers_per_epoch=3, pow_bits=4)
    async with memory_cluster(miners=3, seed=12, layer_duration=3.0, params=params) as c:
        gw, late = c.gateways[0], c.miners[-1]
        others = [n.config.listen for n in c.nodes if n is not late]
        c.net.partition([late.config.listen], others)  # before its first dial lands
        await c.clock.sleep_until(gw.layer_start(2) + 0.3)
        held_proof = bool(late.mesh.poet_proofs)
        c.net.partition([late.config.listen], others, cut=False)
        await c.clock.sleep_until(gw.layer_start(3) + 1.0)
        smeshers = {a["smesher"] for a in gw.mesh.atxs.values() if a["target_epoch"] == 1}
        error = late.last_error
    assert not held_proof  # cut off while the proof was flooded and at layer 2's sync
    assert late.smesher_id in smeshers, error


async def test_a_cluster_walks_the_cycle_collector_less_while_it_lives() -> None:
    before = gc.get_threshold()
    async with memory_cluster(miners=1, seed=1) as c:
        await c.clock.sleep_until(c.clock.now() + 0.5)
        assert gc.get_threshold()[0] >= 50_000
        assert gc.get_freeze_count() > 0  # what existed before it: the modules
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


async def test_a_stopped_node_leaves_the_network_and_still_answers_from_what_it_holds() -> None:
    """`Node.stop` (a plan's node once every node has reported) ends gossip, layers and
    smeshing; the API's view of it stays readable, and the others go on without it."""
    params = MeshParams(layers_per_epoch=3, pow_bits=4)
    async with memory_cluster(miners=3, seed=11, layer_duration=2.0, params=params) as c:
        stopped, other = c.miners[0], c.miners[1]
        stopped.stop()  # not running yet (it is: the cluster started it), then for real
        await c.clock.sleep_until(c.gateways[0].layer_start(6))
        stopped.stop()
        held = [s.hash for s in stopped.layers()]
        version, published = stopped.mesh.version, stopped.atxs_published
        await c.clock.sleep_until(c.gateways[0].layer_start(12))
        assert stopped.mesh.version == version and stopped.atxs_published == published
        assert [s.hash for s in stopped.layers()][: len(held)] == held  # still answers
        assert stopped.status()["connected_peers"] == 0
        assert other.status()["verified_layer"] >= 10
        assert [s.hash for s in other.layers()][: len(held) - 2] == held[:-2]
