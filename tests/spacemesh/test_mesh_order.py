"""Any delivery order of the same messages yields the same layer hashes."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenarios.spacemesh import LayerStatus, Mesh, MeshParams, memory_cluster
from scenarios.spacemesh._codec import hash_json

PARAMS = MeshParams(layers_per_epoch=3, pow_bits=4, committee=3, proposals_per_layer=4)
CURRENT = 9

Message = tuple[str, dict[str, Any]]


@functools.cache
def recorded() -> tuple[list[Message], list[bytes], set[str]]:
    """Every message a gateway stored during a short simulated run, and its layer hashes."""
    out: dict[str, Any] = {}

    async def run() -> None:
        async with memory_cluster(miners=4, seed=7, layer_duration=1.0, params=PARAMS) as c:
            gateway = c.gateways[0]
            await c.clock.sleep_until(gateway.layer_start(CURRENT) + 0.9)
            mesh = gateway.mesh
            out["messages"] = (
                [("poet", m) for m in mesh.poet_proofs.values()]
                + [("atx", m) for m in mesh.atxs.values()]
                + [("proposal", m) for m in mesh.proposals.values()]
                + [("vote", m) for m in mesh.votes.values()]
                + [("certificate", m) for m in mesh.certificates.values()]
            )
            out["hashes"] = [s.hash for s in mesh.decide(CURRENT)]
            out["keys"] = {c.poet.public_key}

    anyio.run(
        run, backend="trio", backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)}
    )
    return out["messages"], out["hashes"], out["keys"]


def replay(messages: list[Message], keys: set[str]) -> Mesh:
    mesh = Mesh(PARAMS, keys)
    for kind, msg in messages:
        # A proposal that arrives before the ATXs that make it eligible is kept but not
        # worth relaying yet (False); anything else must be accepted.
        assert mesh.add(kind, msg) or kind == "proposal", kind
    return mesh


def test_the_recording_is_a_real_run() -> None:
    messages, hashes, keys = recorded()
    kinds = {k for k, _ in messages}
    assert kinds == {"poet", "atx", "proposal", "vote", "certificate"}
    assert len(hashes) >= CURRENT - PARAMS.hdist + 1
    assert replay(messages, keys).decide(CURRENT)[-1].hash == hashes[-1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_order_same_hashes(rnd: Any, duplicates: int) -> None:
    messages, hashes, keys = recorded()
    shuffled = list(messages) + rnd.sample(messages, duplicates)
    rnd.shuffle(shuffled)
    mesh = replay(shuffled, keys)
    assert [s.hash for s in mesh.decide(CURRENT)] == hashes


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_without_hare_output_the_tortoise_decides_the_same(rnd: Any) -> None:
    messages, hashes, keys = recorded()
    no_certs = [m for m in messages if m[0] != "certificate"]
    rnd.shuffle(no_certs)
    states = replay(no_certs, keys).decide(CURRENT)
    verified = [s for s in states if s.status is LayerStatus.VERIFIED]
    assert len(verified) == CURRENT - PARAMS.hdist + 1
    assert [s.hash for s in verified] == hashes[: len(verified)]


def test_an_invalid_message_changes_nothing() -> None:
    messages, hashes, keys = recorded()
    proposal = next(m for k, m in messages if k == "proposal")
    mesh = replay(messages, keys)
    assert not mesh.add("proposal", {**proposal, "layer": proposal["layer"] + 1})
    assert not mesh.add("proposal", {**proposal, "sig": "00" * 64})
    assert not mesh.add("atx", {"garbage": True})
    assert [s.hash for s in mesh.decide(CURRENT)] == hashes


@pytest.mark.parametrize("kind", ["atx", "proposal"])
def test_messages_wait_for_their_dependencies(kind: str) -> None:
    messages, hashes, keys = recorded()
    dependency = {"atx": "poet", "proposal": "atx"}[kind]
    late = [m for m in messages if m[0] == dependency]
    early = [m for m in messages if m[0] != dependency]
    mesh = replay(early, keys)
    assert mesh.decide(CURRENT)[-1].hash != hashes[-1] or not mesh.proposals
    for m in late:
        mesh.add(*m)
    assert [s.hash for s in mesh.decide(CURRENT)] == hashes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(1, CURRENT))
def test_a_layer_past_hdist_is_decided_whatever_arrived(rnd: Any, last: int) -> None:
    """Even a layer that few or no later ballots voted on (e.g. its miners stopped) is
    decided once hdist layers have passed, and final (verified) once it is older than the
    vote window: no more votes can be counted for it."""
    messages, _, keys = recorded()
    kept = [m for m in messages if m[0] in ("poet", "atx") or m[1]["layer"] <= last]
    kept = [m for m in kept if m[0] != "proposal" or m[1]["layer"] < last or rnd.random() < 0.5]
    mesh = replay(kept, keys)
    states = mesh.decide(CURRENT)
    assert len(states) >= CURRENT - PARAMS.hdist + 1
    late = CURRENT + PARAMS.window + 1
    final = mesh.decide(late)
    for s in final[: CURRENT - PARAMS.hdist + 1]:
        assert s.status is LayerStatus.VERIFIED, s
    assert [s.hash for s in final[: len(states)]] == [s.hash for s in states]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_deciding_as_messages_arrive_equals_deciding_once(rnd: Any) -> None:
    """`Mesh.decide` keeps per-layer tallies and the hash chain between calls: asked after
    arrivals in any order and at any current layer (the clock may even be read behind),
    it answers what a mesh that received the same messages decides from scratch."""
    messages, _, keys = recorded()
    shuffled = list(messages)
    rnd.shuffle(shuffled)
    incremental = Mesh(PARAMS, keys)
    late = CURRENT + PARAMS.window + 2
    for n, (kind, msg) in enumerate(shuffled, 1):
        incremental.add(kind, msg)
        if rnd.random() < 0.3:
            # Mostly long after the messages' layers (a node syncing the past), where the
            # decided layers are kept between calls; sometimes any layer.
            current = rnd.choice([late, late - 1, rnd.randint(0, late)])
            got = incremental.decide(current)
            if rnd.random() < 0.15:
                assert got == replay_all(shuffled[:n], keys).decide(current)
    for current in (late, CURRENT, rnd.randint(0, late)):
        assert incremental.decide(current) == replay_all(shuffled, keys).decide(current)


def replay_all(messages: list[Message], keys: set[str]) -> Mesh:
    """A fresh mesh fed ``messages`` (proposals may wait for their ATX)."""
    mesh = Mesh(PARAMS, keys)
    for kind, msg in messages:
        mesh.add(kind, msg)
    return mesh


def test_a_certificate_for_a_layer_kept_between_calls_is_counted() -> None:
    """A layer no later ballot votes on is decided by its certificate or else by the
    proposals known; a certificate that arrives after the layer was decided (and kept)
    from a partial set of proposals must change it, as it would from scratch."""
    messages, _, keys = recorded()
    last = max(m["layer"] for k, m in messages if k == "proposal")
    dropped = [m for m in messages if m[0] == "proposal" and m[1]["layer"] == last][:1]
    early = [m for m in messages if m[0] != "certificate" and m not in dropped]
    certs = [m for m in messages if m[0] == "certificate" and m[1]["layer"] == last]
    assert certs and dropped
    late = CURRENT + PARAMS.window + 2
    incremental = replay_all(early, keys)
    incremental.decide(late)
    for cert in certs:
        incremental.add(*cert)
    assert incremental.decide(late) == replay_all(early + certs, keys).decide(late)


def test_a_message_is_hashed_once_while_added_and_anew_once_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checking a message and storing it both need its id: `add` hashes it once. A
    message changed after `add` returned is a new message (hashed again, its signature
    checked again)."""
    from scenarios.spacemesh import _mesh

    messages, _, keys = recorded()
    mesh = replay([m for m in messages if m[0] in ("poet", "atx")], keys)
    proposal = dict(next(m for k, m in messages if k == "proposal"))
    hashed: list[object] = []
    real = _mesh.hash_json
    monkeypatch.setattr(_mesh, "hash_json", lambda v: hashed.append(v) or real(v))
    mesh.add("proposal", proposal)
    assert sum(v is proposal for v in hashed) == 1
    assert real(proposal) in mesh.proposals
    proposal["sig"] = "00" * 64  # the same dict, now forged: not the id of the stored one
    assert not mesh.add("proposal", proposal)
    assert real(proposal) not in mesh.proposals


def test_an_epoch_s_stamp_changes_with_its_own_atxs_only() -> None:
    """The sync digest of ``atx:{e}`` is cached by `epoch_stamp(e)`: an ATX of another
    epoch leaves it alone (every old epoch's ATXs were hashed again for each new ATX),
    one of its own epoch changes it."""
    messages, _, keys = recorded()
    atxs = [m for k, m in messages if k == "atx"]
    by_epoch = sorted({int(a["target_epoch"]) for a in atxs})
    assert len(by_epoch) >= 2
    first, last = by_epoch[0], by_epoch[-1]
    mesh = replay([m for m in messages if m[0] == "poet"], keys)
    for atx in atxs:
        if int(atx["target_epoch"]) != last:
            mesh.add("atx", atx)
    held = {e: mesh.epoch_stamp(e) for e in by_epoch}
    digest = {e: sorted(mesh.atxs_for_epoch(e)) for e in by_epoch}
    for atx in atxs:
        if int(atx["target_epoch"]) == last:
            mesh.add("atx", atx)
    assert mesh.epoch_stamp(first) == held[first] or last == first + 1
    assert sorted(mesh.atxs_for_epoch(first)) == digest[first]
    assert mesh.epoch_stamp(last) != held[last]
    assert sorted(mesh.atxs_for_epoch(last)) != digest[last]


def test_a_mesh_says_which_layers_hold_messages_waiting_for_what_they_refer_to() -> None:
    """Proposals and votes that came before their ATX, and ATXs before their PoET proof,
    wait; `waiting_since` tells a node whether any of the recent ones do (it then syncs once
    more), and forgets those older than asked, which may wait for good."""
    messages, _, keys = recorded()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for kind, msg in messages:
        by_kind.setdefault(kind, []).append(msg)
    mesh = Mesh(PARAMS, keys)
    assert not mesh.waiting_since(0)
    proposal = max(by_kind["proposal"], key=lambda p: int(p["layer"]))
    layer = int(proposal["layer"])
    mesh.add("proposal", proposal)  # its ATX is not here: it waits
    assert mesh.waiting_since(layer) and not mesh.waiting_since(layer + 1)
    atx = max(by_kind["atx"], key=lambda a: int(a["target_epoch"]))
    early = Mesh(PARAMS, keys)
    early.add("atx", atx)  # its PoET proof is not here: it waits
    first = PARAMS.first_layer(int(atx["target_epoch"]))
    assert early.waiting_since(first + PARAMS.layers_per_epoch - 1)  # its epoch's last layer
    assert not early.waiting_since(first + PARAMS.layers_per_epoch)  # the next epoch's first
    for kind, msg in messages:  # everything arrives: nothing waits any more
        mesh.add(kind, msg)
    assert not mesh.waiting_since(0)


def test_a_held_message_is_checked_again_only_when_what_it_waits_for_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every proposal arrives before any ATX: each is checked once on arrival and once
    more when its own ATX is stored, not again at every other arrival (a cost that grew
    with the pool)."""
    messages, hashes, keys = recorded()
    first = [m for m in messages if m[0] == "proposal"]
    mesh = Mesh(PARAMS, keys)
    checks: list[str] = []
    check = Mesh._check

    def counted(self: Mesh, kind: str, msg: Any) -> bool | None:
        checks.append(kind)
        return check(self, kind, msg)

    monkeypatch.setattr(Mesh, "_check", counted)
    for kind, msg in first + [m for m in messages if m[0] != "proposal"]:
        mesh.add(kind, msg)
    assert checks.count("proposal") == 2 * len(first)
    assert len(mesh.proposals) == len(first)
    assert [s.hash for s in mesh.decide(CURRENT)] == hashes


def test_the_messages_held_for_a_dependency_are_bounded_oldest_dropped_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proposals that name an ATX nobody sent would pile up forever: beyond
    `PENDING_LIMIT` the oldest held one goes."""
    from scenarios.spacemesh import _mesh

    messages, _, keys = recorded()
    proposals = [m for k, m in messages if k == "proposal"][:5]
    monkeypatch.setattr(_mesh, "PENDING_LIMIT", 3)
    mesh = Mesh(PARAMS, keys)
    for proposal in proposals:
        mesh.add("proposal", proposal)
    for kind, msg in messages:
        if kind in ("poet", "atx"):
            mesh.add(kind, msg)
    kept = [p for p in proposals if hash_json(p) in mesh.proposals]
    assert kept == proposals[2:]


def test_an_epoch_s_slots_per_layer_are_drawn_for_the_smeshers_asked_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An epoch's info is built again for each ATX that arrives: a smesher's slots per
    layer are drawn when its eligibility is first asked for, not for every smesher at
    each rebuild (a node's work per ATX grew with the number of smeshers)."""
    from scenarios.spacemesh import _mesh

    messages, _, keys = recorded()
    mesh = replay([m for m in messages if m[0] in ("poet", "atx")], keys)
    drawn: list[str] = []
    real = _mesh.slot_counts
    monkeypatch.setattr(_mesh, "slot_counts", lambda *a: drawn.append(a[2]) or real(*a))
    epoch = max(int(m["target_epoch"]) for k, m in messages if k == "atx")
    info = mesh.epoch_info(epoch)
    assert drawn == [] and len(info.slots) >= 2
    smesher = sorted(info.slots)[0]
    expected = real(info.beacon, epoch, smesher, info.slots[smesher], PARAMS.layers_per_epoch)
    assert sum(expected) == info.slots[smesher]
    assert info.counts(smesher) == info.counts(smesher) == expected and drawn == [smesher]
    assert mesh.eligible_count(smesher, PARAMS.first_layer(epoch)) == expected[0]
    assert info.counts("nobody") is None and mesh.eligible_count("nobody", 0) == 0
