"""Spacemesh protocol rules: eligibility by epoch weight, the hare committee by weight, the
tortoise's threshold, malfeasance proofs, several PoETs, clock-skew tolerance."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenarios.spacemesh import LayerStatus, Mesh, MeshParams, Node, NodeConfig, memory_cluster
from scenarios.spacemesh._eligibility import (
    beacon,
    certifier_ticket,
    hare_seats,
    is_certifier,
    num_slots,
    slot_counts,
)
from scenarios.spacemesh._keys import Signer
from scenarios.spacemesh._malfeasance import check_proof
from scenarios.spacemesh._memnet import MemoryLink
from scenarios.spacemesh._mesh import (
    COMPACT_ID,
    EMPTY_BLOCK,
    certificate_votes,
    compact_id,
    hare_output,
    make_certificate,
    make_proposal,
    make_vote,
    opinion_for,
)

from .test_mesh_order import CURRENT, PARAMS, recorded, replay

pytestmark = pytest.mark.anyio

SIM = MeshParams(layers_per_epoch=3, pow_bits=4, proposals_per_layer=6)


# -- eligibility -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 20, 60])
def test_expected_proposals_per_layer_do_not_grow_with_the_network(n: int) -> None:
    """Each smesher's slots are its share of the epoch's weight: about
    ``proposals_per_layer`` per layer whatever the number of smeshers."""
    per_layer, lpe = 20, 4
    weights = {f"s{i}": 1 + i % 3 for i in range(n)}
    total = sum(weights.values())
    seed = beacon(5, ["a", "b"])
    layers = [0] * lpe
    for smesher, weight in weights.items():
        slots = num_slots(weight, total, per_layer, lpe)
        for k, count in enumerate(slot_counts(seed, 5, smesher, slots, lpe)):
            layers[k] += count
    # floor() loses at most one slot per smesher; the min of 1 adds at most one
    assert per_layer * lpe - n <= sum(layers) <= per_layer * lpe + n
    assert sum(layers) / lpe <= per_layer + n / lpe
    assert num_slots(4, 100, 50, 3) == 6 and num_slots(1, 10_000, 50, 3) == 1


def test_the_beacon_draws_different_layers() -> None:
    a = slot_counts(beacon(3, ["x"]), 3, "s", 30, 3)
    b = slot_counts(beacon(3, ["y"]), 3, "s", 30, 3)
    assert sum(a) == sum(b) == 30 and a != b


def test_every_node_computes_the_same_eligibilities_and_proposals_follow_them() -> None:
    messages, _, keys = recorded()
    mesh = replay(messages, keys)
    reverse = replay(list(reversed(messages)), keys)
    for epoch in (1, 2, 3):
        assert mesh.eligibilities(epoch) == reverse.eligibilities(epoch)
    assert len(mesh.eligibilities(2)) == 4
    proposals = [m for k, m in messages if k == "proposal"]
    assert proposals and all(mesh.eligible_count(p["smesher"], p["layer"]) for p in proposals)


def test_a_proposal_without_a_slot_is_not_counted() -> None:
    messages, hashes, keys = recorded()
    mesh = replay(messages, keys)
    signer = next(s for s in _signers(4) if s.public_hex in mesh.eligibilities(2))
    layer = next(
        x for x in range(6, 9) if mesh.eligible_count(signer.public_hex, x) == 0
    )  # a layer of epoch 2 where this smesher holds no slot (3 layers, few slots: exists)
    atx = mesh.epoch_info(2).atx_of[signer.public_hex]
    forged = make_proposal(signer, layer, atx, {})
    assert not mesh.add("proposal", forged)  # not relayed
    assert mesh.ballot_weight(forged) == 0
    assert hash_of(forged) not in mesh.layer_proposals(layer)
    assert [s.hash for s in mesh.decide(CURRENT)] == hashes


# -- hare committee and tortoise ------------------------------------------------------------


def test_the_hare_committee_is_sampled_by_weight() -> None:
    seed = beacon(2, [])
    weights = {f"s{i}": 1 + 3 * (i % 2) for i in range(200)}  # half weigh 1, half 4
    total = sum(weights.values())
    light = heavy = 0
    for layer in range(20):
        for smesher, weight in weights.items():
            seats = hare_seats(seed, layer, smesher, weight, total, 50)
            light += seats if weight == 1 else 0
            heavy += seats if weight == 4 else 0
    assert 40 * 20 <= light + heavy <= 60 * 20  # about 50 seats per layer
    assert 3 < heavy / light < 5.5  # proportional to weight, not one per ATX
    assert hare_seats(seed, 0, "s", 3, 10, 50) == 3  # a small network: every unit sits


@given(st.sets(st.text("0123456789abcdef", min_size=8, max_size=8), min_size=1, max_size=40),
       st.integers(0, 10_000), st.integers(1, 8))
def test_a_layer_draws_exactly_its_certifiers_the_lowest_tickets(
    atxs: set[str], layer: int, certifiers: int
) -> None:
    chosen = {a for a in atxs if is_certifier(a, layer, atxs, certifiers)}
    lowest = sorted(atxs, key=lambda a: certifier_ticket(a, layer))[:certifiers]
    assert chosen == set(lowest)  # never none, never more (draws of a hash do not tie)


async def test_every_layer_has_a_certifier_even_with_one_expected() -> None:
    """One certifier a layer among 10 miners: independent draws of chance 1/10 each left a
    third of the layers with none (and so no certificate: the tortoise decided them hdist
    layers later). Drawn by rank, every layer has its one, and it certifies."""
    params = dataclasses.replace(SIM, certifiers=1)
    async with memory_cluster(miners=10, seed=2, layer_duration=1.0, params=params) as c:
        await c.clock.sleep_until(c.gateways[0].layer_start(10) + 0.9)
        meshes = [n.mesh for n in c.nodes]
        uncertified = [x for x in range(3, 9) if any(m.certified_block(x) is None for m in meshes)]
    assert uncertified == []


async def test_a_layer_whose_certifier_is_down_is_certified_a_layer_later() -> None:
    """The one certifier layer 6 draws is killed just before the layer: the second tally,
    a layer later, draws two, and the other one certifies it."""
    params = dataclasses.replace(SIM, certifiers=1)
    async with memory_cluster(miners=10, seed=2, layer_duration=1.0, params=params) as c:
        await c.clock.sleep_until(c.gateways[0].layer_start(6) - 0.05)
        drawn = [name for name, proc in c.processes.items() if isinstance(proc.part, Node)
                 and (atx := proc.part._my_atx(6)) is not None and is_certifier(
                     atx, 6, proc.part.mesh.epoch_info(2).atx_of.values(), 1)]
        c.kill(drawn[0])
        await c.clock.sleep_until(c.gateways[0].layer_start(9) + 0.9)
        alive = [proc.part.mesh for name, proc in c.processes.items()
                 if isinstance(proc.part, Node) and name != drawn[0]]
    assert len(drawn) == 1
    assert all(m.certified_block(6) is not None for m in alive)


def _signers(n: int) -> list[Signer]:
    return [Signer(f"7/node/{i}") for i in range(1, n + 1)]  # memory_cluster seed 7: miners


def hash_of(msg: dict[str, Any]) -> str:
    from scenarios.spacemesh._codec import hash_json

    return hash_json(msg)


def test_a_layer_needs_a_weighted_majority_to_be_verified() -> None:
    """With only one ballot after it, a layer is applied, not verified: one vote is far
    below a third of the weight expected from the layers after it."""
    messages, _, keys = recorded()
    target = 6
    later = [
        m
        for m in messages
        if m[0] == "proposal" and target < m[1]["layer"] <= target + PARAMS.hdist
    ]
    one = min(later, key=lambda m: hash_of(m[1]))
    kept = [m for m in messages if m not in later and m[0] != "certificate"] + [one]
    kept = [m for m in kept if m[0] in ("poet", "atx") or m[1]["layer"] <= target + PARAMS.hdist]
    states = replay(kept, keys).decide(target + PARAMS.hdist)
    assert states[target].status is LayerStatus.APPLIED
    full = replay([m for m in messages if m[0] != "certificate"], keys).decide(CURRENT)
    assert full[target].status is LayerStatus.VERIFIED


def test_an_old_layer_without_enough_votes_is_final_after_the_window() -> None:
    messages, _, keys = recorded()
    kept = [m for m in messages if m[0] in ("poet", "atx") or m[1]["layer"] <= 4]
    mesh = replay(kept, keys)
    assert mesh.decide(8)[4].status is LayerStatus.APPLIED  # nobody voted on it yet
    late = 4 + PARAMS.window + 1
    assert mesh.decide(late)[4].status is LayerStatus.VERIFIED


def test_without_a_certificate_a_ballot_votes_for_no_block_of_its_own_making() -> None:
    """As go-spacemesh's tortoise: a ballot supports only certified blocks. Two nodes that
    saw different proposals of the last layer, without its certificate, vote alike: they
    abstain on it, as the votes they hold certify a block (its certificate may come).
    Without those votes no certificate can come: the ballot votes the layer empty. A
    mature layer no ballot votes on and no certificate decides is empty. With the
    certificates, the ballot names them."""
    messages, _, keys = recorded()
    layer = 8
    kept = [m for m in messages if m[0] in ("poet", "atx") or m[1]["layer"] < layer]
    uncertified = [m for m in kept if m[0] != "certificate"]
    last = [m for m in uncertified if m[0] == "proposal" and m[1]["layer"] == layer - 1]
    assert len(last) >= 2
    views = [replay([m for m in uncertified if m is not p], keys) for p in last[:2]]
    opinions = [opinion_for(v.decide(layer), v, layer) for v in views]
    assert opinions[0] == opinions[1] and str(layer - 1) not in opinions[0]
    hare = [m for m in uncertified if m[0] == "vote" and m[1]["layer"] == layer - 1]
    unvoted = replay([m for m in uncertified if m not in hare], keys)
    assert hare and opinion_for(unvoted.decide(layer), unvoted, layer)[str(layer - 1)] == ""
    early = [m for m in uncertified if m[0] in ("poet", "atx") or m[1]["layer"] <= 4]
    assert any(m[0] == "proposal" and m[1]["layer"] == 4 for m in early)
    assert replay(early, keys).decide(8)[4].block_id == EMPTY_BLOCK
    certified = replay(kept, keys)
    opinion = opinion_for(certified.decide(layer), certified, layer)
    block = certified.certified_block(layer - 1)
    assert block is not None and opinion[str(layer - 1)] == hash_of(block)


def test_hare_votes_name_proposals_by_compact_id_and_certificates_carry_no_ids_twice() -> None:
    """A vote names each proposal by its id's first `COMPACT_ID` digits, and a certificate's
    votes travel without the ids its block holds; a fresh node still checks every vote's
    signature against them, and a certificate whose votes were signed for another set, or
    that carries the ids again, is refused."""
    messages, hashes, keys = recorded()
    certs = [m for k, m in messages if k == "certificate"]
    votes = [m for k, m in messages if k == "vote"]
    assert certs and votes
    assert all(len(i) == COMPACT_ID for v in votes for i in v["proposals"])
    for cert in certs:
        ids = [compact_id(i) for i in cert["block"]["proposals"]]
        assert all("proposals" not in v for v in cert["votes"])
        assert [v["proposals"] for v in certificate_votes(cert)] == [ids] * len(cert["votes"])
    # Without the votes on their own, every certificate is checked by its signatures alone.
    mesh = replay([m for m in messages if m[0] != "vote"], keys)
    assert len(mesh.certificates) == len(certs)
    assert [s.hash for s in mesh.decide(CURRENT)] == hashes
    fresh = replay([m for m in messages if m[0] in ("poet", "atx", "proposal")], keys)
    cert = certs[0]
    other = sorted(cert["block"]["proposals"])[1:] or ["0" * 64]
    moved = {**cert, "block": {**cert["block"], "proposals": other}}
    assert not fresh.add("certificate", moved)  # the votes were signed for another set
    spelled = {**cert, "votes": certificate_votes(cert)}
    assert not fresh.add("certificate", spelled)
    assert fresh.add("certificate", cert)


def test_the_hare_certifies_what_a_majority_saw_when_no_set_was_named_exactly() -> None:
    """Four voters of one seat each, more than two seats needed: no set of proposals is
    named by three voters exactly, yet a and b are named together by three: the block."""
    names = [["a", "b", "c"], ["a", "b", "d"], ["a", "b"], ["a", "c"]]
    votes = [{"smesher": f"v{i}", "proposals": n} for i, n in enumerate(names)]
    seats = {f"v{i}": 1 for i in range(4)}
    assert hare_output(votes, seats, 2, {"a", "b", "c", "d"}) == ["a", "b"]
    assert hare_output(votes, seats, 2, {"b", "c", "d"}) == ["b"]  # only what it holds
    assert hare_output(votes, seats, 3, {"a", "b", "c", "d"}) == ["a"]
    assert hare_output(votes, {**seats, "v3": 0}, 3, {"a", "b", "c", "d"}) == []


def test_a_certificate_s_votes_carry_only_the_ids_beyond_its_block() -> None:
    """Votes that named more proposals than the certified block travel with only those
    (``extra``); a fresh node puts each vote back as signed and accepts the certificate."""
    messages, _, keys = recorded()
    layer = 7
    proposals = sorted(
        (hash_of(m), m) for k, m in messages if k == "proposal" and m["layer"] == layer
    )
    assert len(proposals) >= 2
    ids = [i for i, _ in proposals]
    atxs = {m["smesher"]: hash_of(m) for k, m in messages
            if k == "atx" and m["target_epoch"] == PARAMS.epoch(layer)}  # fmt: skip
    voters = [s for s in _signers(4) if s.public_hex in atxs]
    votes = [make_vote(s, layer, atxs[s.public_hex], ids if i % 2 else ids[:-1])
             for i, s in enumerate(voters)]  # fmt: skip
    block = {"layer": layer, "proposals": ids[:-1], "rewards": []}
    cert = make_certificate(layer, block, votes)
    assert [bool(v.get("extra")) for v in cert["votes"]] == [
        bool(i % 2) for i, _ in sorted(enumerate(voters), key=lambda x: x[1].public_hex)
    ]
    assert sorted(map(hash_of, certificate_votes(cert))) == sorted(map(hash_of, votes))
    fresh = replay([m for m in messages if m[0] in ("poet", "atx", "proposal")], keys)
    assert fresh.add("certificate", cert)
    with pytest.raises(ValueError):  # a vote that did not name all of the block's proposals
        make_certificate(layer, {**block, "proposals": ids}, votes)


# -- malfeasance --------------------------------------------------------------------------


def _equivocate(kind: str) -> tuple[Mesh, Mesh, str]:
    """A replayed mesh (and one that skips the rule) given a second, conflicting message
    of ``kind`` from an honest-looking smesher."""
    messages, _, keys = recorded()
    honest = replay(messages, keys)
    lax = Mesh(PARAMS, keys, malfeasance=False)
    for m in messages:
        lax.add(*m)
    if kind == "ballot":
        signer = next(s for s in _signers(4) if s.public_hex in honest.eligibilities(2))
        layer = next(x for x in range(6, 9) if honest.eligible_count(signer.public_hex, x))
    else:  # a smesher that voted in a layer of epoch 2
        voted = {(v["smesher"], v["layer"]) for k, v in messages if k == "vote"}
        signer, layer = next(
            (s, x) for s in _signers(4) for x in range(6, 9) if (s.public_hex, x) in voted
        )
    me = signer.public_hex
    atx = honest.epoch_info(2).atx_of[me]
    if kind == "ballot":
        msg = make_proposal(signer, layer, atx, {"0": "forged"})
        mkind = "proposal"
    else:
        msg = make_vote(signer, layer, atx, ["forged"])
        mkind = "vote"
    for mesh in (honest, lax):
        mesh.add(mkind, msg)
    return honest, lax, me


@pytest.mark.parametrize("kind", ["ballot", "hare"])
def test_a_double_message_convicts_its_identity(kind: str) -> None:
    honest, lax, me = _equivocate(kind)
    assert me in honest.malicious and honest.malicious[me]["kind"] == kind
    proof = honest.malicious[me]
    assert check_proof(proof, honest._sig_ok) is not None
    assert me not in honest.eligibilities(2)
    assert honest.hare_seats(7, me) == 0
    assert all(p["smesher"] != me for x in range(6, 9) for p in honest.layer_proposals(x).values())
    # A node that skips the rule neither convicts nor excludes.
    assert not lax.malicious and me in lax.eligibilities(2)
    # The proof alone convinces another node; a tampered one does not.
    messages, _, keys = recorded()
    other = replay(messages, keys)
    bad = {**proof, "messages": [proof["messages"][0], {**proof["messages"][1], "sig": "00" * 64}]}
    assert not other.add("malfeasance", bad) and not other.malicious
    assert other.add("malfeasance", proof) and me in other.malicious
    assert not lax.add("malfeasance", proof) and not lax.malicious


def _shared_key(pair: tuple[int, int]) -> Callable[[int, NodeConfig], NodeConfig]:
    def change(i: int, config: NodeConfig) -> NodeConfig:
        if i == pair[1]:
            return dataclasses.replace(config, identity=f"{config.seed}/node/{pair[0]}")
        return config

    return change


async def test_votes_that_reach_the_certifiers_after_their_tally_still_certify() -> None:
    """On a loaded network votes may reach the certifiers after their tally at
    ``hare_cert_at`` (different_poets at 30 instances: every vote arrived, no certificate
    from layer 5 on). Here the tally comes too soon after the vote for any other vote to
    arrive: the certifiers tally again a layer later and certify every layer."""

    def hasty(i: int, config: NodeConfig) -> NodeConfig:
        return dataclasses.replace(config, hare_vote_at=0.4, hare_cert_at=0.45)

    link = MemoryLink(delay=0.1)
    async with memory_cluster(miners=6, seed=3, layer_duration=1.0, params=SIM, link=link,
                              node_config=hasty) as c:  # fmt: skip
        await c.clock.sleep_until(c.gateways[0].layer_start(10) + 0.9)
        meshes = [n.mesh for n in c.nodes]
        uncertified = [x for x in range(3, 9) if any(m.certified_block(x) is None for m in meshes)]
        hashes = [[s.hash for s in n.layers()[:8]] for n in c.nodes]
    assert uncertified == []
    assert all(h == hashes[0] for h in hashes)


async def test_without_the_hare_every_layer_is_empty_and_verified_alike() -> None:
    """No certificate can pass (the hare's threshold is out of reach) and links are slow
    and uneven, so the miners see different proposals of each layer. No ballot votes for
    a block of its own making, so the votes on a layer do not split over the nodes' views:
    every layer is empty and verified hdist layers later, the same on every node."""
    params = dataclasses.replace(SIM, hare_threshold=0.99)
    link = MemoryLink(delay=0.5, jitter=0.5)
    async with memory_cluster(miners=12, seed=5, layer_duration=1.0, params=params,
                              link=link) as c:  # fmt: skip
        await c.clock.sleep_until(c.gateways[0].layer_start(12) + 0.9)
        states = [n.layers()[:9] for n in c.nodes]
        meshes = [n.mesh for n in c.nodes]
        certified = [x for x in range(9) if any(m.certified_block(x) for m in meshes)]
        votes = {v for m in meshes for p in m.proposals.values() for v in p["opinion"].values()}
        views = [{tuple(v["proposals"]) for v in meshes[0].layer_votes(x)} for x in range(3, 9)]
    assert certified == []
    assert any(len(v) > 1 for v in views)  # the hare's voters saw different proposals
    assert votes == {EMPTY_BLOCK}
    assert all(len(s) == 9 for s in states)
    assert all(x.status is LayerStatus.VERIFIED and x.block is None for s in states for x in s)
    assert all([x.hash for x in s] == [x.hash for x in states[0]] for s in states)


async def test_the_hare_certifies_nearly_every_layer_over_uneven_links() -> None:
    """Links of 0.2 s +- 0.2 s and 1 s layers: the hare's voters hold different proposals
    at 40 % of the layer. Certifying only a set named exactly by a majority, two layers of
    seven were certified; certifying the proposals a majority named, nearly every layer is
    (the votes can still split so that no proposal has a majority: one layer of the 42 of
    these six networks), and the nodes of each network agree on every layer."""
    link = MemoryLink(delay=0.2, jitter=0.2)
    uncertified: list[tuple[int, int]] = []
    for seed in range(1, 7):
        async with memory_cluster(miners=12, seed=seed, layer_duration=1.0, params=SIM,
                                  link=link) as c:  # fmt: skip
            await c.clock.sleep_until(c.gateways[0].layer_start(12) + 0.9)
            meshes = [n.mesh for n in c.nodes]
            uncertified += [(seed, x) for x in range(3, 10)
                            if any(m.certified_block(x) is None for m in meshes)]
            certs = meshes[0].certificates.values()
            wider = [v for cert in certs for v in cert["votes"] if "extra" in v]
            chains = {tuple(s.hash for s in n.layers()[:10]) for n in c.nodes}
        assert wider  # some voters had seen proposals the block leaves out
        assert len(chains) == 1
    assert len(uncertified) <= 2, uncertified


async def test_miners_split_between_phase_shifted_poets_agree() -> None:
    """different_poets in memory: each miner registers with one of two PoETs whose rounds
    are a second apart; every miner still publishes an ATX each epoch and the hare
    certifies every layer."""
    async with memory_cluster(miners=8, seed=4, layer_duration=2.0, params=SIM, poets=2,
                              poet_groups=True, poet_phase_shift=1.0) as c:  # fmt: skip
        await c.clock.sleep_until(c.gateways[0].layer_start(10) + 1.9)
        poets = [[p.address for p in m._poets] for m in c.miners]
        gw = c.gateways[0].mesh
        hashes = [[s.hash for s in n.layers()[:9]] for n in c.nodes]
        ids = {m.smesher_id for m in c.miners}
        active = [{a["smesher"] for a in gw.atxs_for_epoch(e).values()} for e in (1, 2, 3)]
        uncertified = [x for x in range(3, 9) if gw.certified_block(x) is None]
    assert all(len(p) == 1 for p in poets) and len({p[0] for p in poets}) == 2
    assert active == [ids, ids, ids]
    assert uncertified == []
    assert all(h == hashes[0] for h in hashes)


async def test_two_miners_sharing_a_key_are_convicted_and_the_rest_agree() -> None:
    async with memory_cluster(miners=5, seed=3, layer_duration=1.0, params=SIM,
                              node_config=_shared_key((1, 2))) as c:  # fmt: skip
        await c.clock.sleep_until(c.gateways[0].layer_start(10) + 0.9)
        shared = c.miners[0].smesher_id
        assert c.miners[1].smesher_id == shared
        proofs = [n.malfeasance_proofs() for n in c.nodes]
        hashes = [[s.hash for s in n.layers()[:8]] for n in c.nodes]
        eligible = [n.eligibilities(3) for n in c.nodes]
    for node_proofs in proofs:
        assert [p["smesher"] for p in node_proofs] == [shared]
        assert node_proofs[0]["kind"] in ("atx", "ballot", "hare")
        assert len(node_proofs[0]["proof"]["messages"]) == 2
    assert all(e == eligible[0] for e in eligible) and shared not in eligible[0]
    assert len(hashes[0]) == 8 and all(h == hashes[0] for h in hashes)


async def test_a_node_that_skips_the_malfeasance_rule_has_no_proof() -> None:
    def change(i: int, config: NodeConfig) -> NodeConfig:
        config = _shared_key((1, 2))(i, config)
        return dataclasses.replace(config, honest_malfeasance=i != 0)  # the gateway skips

    async with memory_cluster(miners=4, seed=3, layer_duration=1.0, params=SIM,
                              node_config=change) as c:  # fmt: skip
        await c.clock.sleep_until(c.gateways[0].layer_start(7) + 0.9)
        lax = c.gateways[0]
        shared = c.miners[0].smesher_id
        assert lax.malfeasance_proofs() == []
        assert shared in lax.eligibilities(3)
        assert [p["smesher"] for p in c.miners[2].malfeasance_proofs()] == [shared]


# -- PoETs and clocks ---------------------------------------------------------------------


async def test_miners_registered_with_several_poets_survive_an_outage() -> None:
    async with memory_cluster(miners=3, seed=2, layer_duration=1.0, params=SIM, poets=3) as c:
        await c.clock.sleep_until(c.gateways[0].layer_start(4))
        c.kill("single/0")
        c.kill("single/2")
        before = [m.atxs_published for m in c.miners]
        await c.clock.sleep_until(c.gateways[0].layer_start(13))
        after = [m.atxs_published for m in c.miners]
        hashes = [[s.hash for s in n.layers()[:10]] for n in c.nodes]
    assert all(a >= b + 2 for a, b in zip(after, before, strict=True)), (before, after)
    assert len(hashes[0]) == 10 and all(h == hashes[0] for h in hashes)


async def test_a_slightly_skewed_node_keeps_proposing_a_far_skewed_one_waits_for_its_layers(
) -> None:
    """A node two layers ahead sends its proposals two layers early: the others hold them
    back until their layer is due (half a layer before it starts), then count them like
    anyone's, and they agree."""
    async with memory_cluster(miners=4, seed=6, layer_duration=1.0, params=SIM) as c:
        procs = [p for p in c.node_processes() if p.role == "miner"]
        c.skew(procs[0].id, offset=0.3)  # within the default tolerance of half a layer
        c.skew(procs[1].id, offset=2.0)  # two layers ahead
        gw = c.gateways[0]
        near, far = c.miners[0].smesher_id, c.miners[1].smesher_id
        early = []
        for layer in range(3, 10):
            await c.clock.sleep_until(gw.layer_start(layer) + 0.4)
            early += [(layer, later) for later in range(layer + 1, layer + 4)
                      for p in gw.mesh.layer_proposals(later).values() if p["smesher"] == far]
        await c.clock.sleep_until(gw.layer_start(10) + 0.9)
        by = {p["smesher"] for x in range(3, 10) for p in gw.mesh.layer_proposals(x).values()}
        hashes = [[s.hash for s in n.layers()[:8]] for n in (gw, *c.miners[2:])]
    assert early == []  # nothing of the far node's before its layer was due...
    assert near in by and far in by  # ...and then it counted
    assert all(h == hashes[0] for h in hashes)


def test_every_mesh_of_a_process_verifies_an_atx_s_proofs_once(monkeypatch: Any) -> None:
    """What a simulation's nodes check of the same ATX is checked once between them."""
    import scenarios.spacemesh._mesh as mesh_module

    messages, _, keys = recorded()
    proofs = [m for m in messages if m[0] == "poet"]
    atxs = [m for m in messages if m[0] == "atx"]
    calls: list[int] = []
    real = mesh_module.verify_post
    monkeypatch.setattr(mesh_module, "verify_post", lambda *a: calls.append(1) or real(*a))
    mesh_module._ATX_PROOFS.clear()
    first, second = Mesh(PARAMS, keys), Mesh(PARAMS, keys)
    for mesh in (first, second):
        for kind, msg in proofs + atxs:
            assert mesh.add(kind, msg), kind
    assert len(calls) == len(atxs)
