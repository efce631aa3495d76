"""Transactions and global state: encoding, execution, rewards, and a network that agrees on them."""

from __future__ import annotations

import dataclasses

import pytest

from scenarios.spacemesh import MeshParams, memory_cluster
from scenarios.spacemesh._codec import canonical, decode, h, hash_json
from scenarios.spacemesh._keys import Signer
from scenarios.spacemesh._mesh import LayerState, LayerStatus
from scenarios.spacemesh._state import Account, Base, Ledger, apply_block, state_root
from scenarios.spacemesh._txs import address_of, check_tx, parse_tx, spawn_tx, spend_tx

ALICE, BOB = Signer("alice"), Signer("bob")
A, B = address_of(ALICE.public_hex), address_of(BOB.public_hex)
MINER = Signer("miner").public_hex


def _tx(raw: bytes) -> tuple[str, dict[str, object]]:
    return parse_tx(raw)


def _block(*raws: bytes, reward: int = 1000) -> tuple[dict[str, object], dict[str, dict]]:
    txs = dict(_tx(r) for r in raws)
    return {"layer": 1, "proposals": [], "rewards": [[MINER, reward]], "txs": sorted(txs)}, txs


def test_address_is_24_bytes_and_tampered_txs_are_refused() -> None:
    assert len(bytes.fromhex(A)) == 24 and A != B
    tx = decode(spend_tx(ALICE, B, 5, 1, 1))
    assert check_tx(tx) is None
    assert check_tx({**tx, "amount": 6}) == "bad signature"
    assert check_tx({**tx, "principal": B}) == "principal is not the public key's wallet address"
    with pytest.raises(ValueError, match="not JSON"):
        parse_tx(b"{")


def test_spawn_then_spend_moves_balance_and_fees_reach_the_coinbase() -> None:
    block, txs = _block(spawn_tx(ALICE, 0, 10), spend_tx(ALICE, B, 300, 1, 20))
    after, results = apply_block({A: Account(1000)}, block, txs)
    assert set(results.values()) == {"applied"}
    assert after[A] == Account(1000 - 10 - 20 - 300, 2, ALICE.public_hex)
    assert after[B] == Account(300)
    assert after[address_of(MINER)].balance == 1000 + 30  # subsidy + the layer's fees
    assert sum(a.balance for a in after.values()) == 1000 + 1000  # only the subsidy is new


def test_bad_nonce_and_unpayable_fee_are_skipped_overspend_fails_but_pays() -> None:
    block, txs = _block(
        spawn_tx(ALICE, 0, 10),
        spend_tx(ALICE, B, 1, 5, 1),  # nonce 5: not the next one
        spend_tx(ALICE, B, 10_000, 1, 20),  # more than the balance: fails, pays its fee
    )
    after, results = apply_block({A: Account(100)}, block, txs)
    assert sorted(results.values()) == ["applied", "failed", "skipped"]
    assert after[A] == Account(100 - 10 - 20, 2, ALICE.public_hex) and B not in after
    unfunded, _ = _block(spawn_tx(BOB, 0, 10))
    after, results = apply_block({}, unfunded, dict([_tx(spawn_tx(BOB, 0, 10))]))
    assert list(results.values()) == ["skipped"] and B not in after


def test_state_root_covers_balances_nonces_and_owners() -> None:
    roots = {
        state_root(x)
        for x in ({A: Account(1)}, {A: Account(2)}, {A: Account(1, 1)}, {A: Account(1, 0, "k")})
    }
    assert len(roots) == 4


def test_a_layer_whose_block_arrives_later_is_executed_again_with_those_after_it() -> None:
    # A node (here one recovered from a checkpoint at layer 4) decides layer 5's block id
    # from the votes before the certificate holding the block reaches it: the layer runs
    # as empty. Once the block is known the layers' hashes (over block ids) are the same,
    # yet layer 5's reward must now be paid, and count in layer 6's state.
    block, txs = _block()
    block_id, base = hash_json(block), {A: Account(1000)}
    hash5 = h(b"layer", bytes(32), 5, block_id)
    layer6 = LayerState(6, LayerStatus.APPLIED, "", None, h(b"layer", hash5, 6, ""), b"")

    def states(known: bool) -> list[LayerState]:
        five = LayerState(5, LayerStatus.VERIFIED, block_id, block if known else None,
                          hash5, b"")  # fmt: skip
        return [five, layer6]

    ledger = Ledger(Base(4, base))
    assert [s.state_root for s in ledger.apply(states(False), txs.get)] == [state_root(base)] * 2
    roots = [s.state_root for s in ledger.apply(states(True), txs.get)]
    assert ledger.accounts[address_of(MINER)] == Account(1000)
    assert ledger.accounts_after(5) == ledger.accounts_after(6) == ledger.accounts
    assert roots == [state_root(apply_block(base, block, txs)[0])] * 2 != [state_root(base)] * 2


@pytest.mark.anyio
async def test_transfers_through_the_api_are_applied_and_every_node_agrees() -> None:
    params = MeshParams(layers_per_epoch=3, pow_bits=4, genesis_accounts=((A, 1_000_000),))
    async with memory_cluster(miners=4, seed=7, layer_duration=2.0, params=params) as c:
        gw, miner = c.gateways[0], c.miners[0]
        await c.clock.sleep_until(gw.layer_start(4))
        submitted = [
            gw.submit_tx(spawn_tx(ALICE, 0, 100)),
            miner.submit_tx(spend_tx(ALICE, B, 5000, 1, 50)),
        ]
        bad = gw.submit_tx(canonical({**decode(spend_tx(ALICE, B, 1, 2, 1)), "amount": 2}))
        await c.clock.sleep_until(gw.layer_start(6))
        midway = {n.tx_state(submitted[0][0]) for n in c.nodes}
        await c.clock.sleep_until(gw.layer_start(14))
        accounts = [n.accounts() for n in c.nodes]
        states = [[(s.number, s.state_root) for s in n.layers()[:12]] for n in c.nodes]
        tx_states = {n.tx_state(i) for n in c.nodes for i, _ in submitted}
        blocks = [s.block for s in gw.layers()[:12] if s.block is not None]
    assert [err for _, err in submitted] == [None, None]
    assert bad[1] == "bad signature" and gw.tx_state(bad[0]) == "rejected"
    assert midway <= {"mempool", "included", "applied"} and tx_states == {"applied"}
    assert accounts[0][A] == (1_000_000 - 100 - 50 - 5000, 2) and accounts[0][B] == (5000, 0)
    assert all(a == accounts[0] for a in accounts)
    assert len(states[0]) == 12 and all(s == states[0] for s in states)
    assert any("txs" in b for b in blocks)
    # Rewards reach the coinbases: the total is the genesis plus the subsidies of the blocks
    # up to the last applied layer (fees move, nothing else is created).
    applied = len(gw.layers())
    subsidy = sum(int(a) for s in gw.layers()[:applied] if s.block for _, a in s.block["rewards"])
    coinbases = {address_of(m.smesher_id) for m in c.miners}
    assert coinbases <= set(accounts[0])
    assert sum(b for b, _ in accounts[0].values()) == 1_000_000 + subsidy


def test_the_ledger_reuses_its_last_answers_and_redoes_a_layer_whose_block_it_learnt() -> None:
    """Given the very states of its last call (the mesh hands back the objects of the layers
    it did not redo), the ledger returns its last answers for them instead of rebuilding
    every layer since genesis; a layer whose block it learnt meanwhile is executed again."""
    block, txs = _block()
    block_id, base = hash_json(block), {A: Account(1000)}
    hash5 = h(b"layer", bytes(32), 5, block_id)
    five = LayerState(5, LayerStatus.VERIFIED, block_id, None, hash5, b"")
    six = LayerState(6, LayerStatus.APPLIED, "", None, h(b"layer", hash5, 6, ""), b"")
    ledger = Ledger(Base(4, base))
    first = ledger.apply([five, six], txs.get)
    again = ledger.apply([five, six], txs.get)
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert [s.state_root for s in again] == [state_root(base)] * 2
    paid = ledger.apply([dataclasses.replace(five, block=block), six], txs.get)
    executed = state_root(apply_block(base, block, txs)[0])
    assert [s.state_root for s in paid] == [executed] * 2
    assert ledger.accounts[address_of(MINER)] == Account(1000)


def test_a_state_root_is_computed_once_for_the_same_accounts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scenarios.spacemesh import _state

    calls: list[int] = []
    real = _state.merkle_root
    monkeypatch.setattr(_state, "merkle_root", lambda leaves: calls.append(1) or real(leaves))
    accounts = {A: Account(7, 1), B: Account(3)}
    root = state_root(accounts)
    assert state_root(dict(reversed(accounts.items()))) == root  # another dict, same accounts
    assert state_root({A: Account(7, 2), B: Account(3)}) != root
    assert len(calls) <= 2  # at most once each (once cached, zero: another test's accounts)
