"""Merkle roots and proofs (the PoET statement) and the hash chain (its sequential work)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenarios.spacemesh import hash_chain, merkle_proof, merkle_root, verify_merkle_proof

leaves_st = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=40)


@given(leaves_st, st.data())
def test_every_leaf_proves_against_the_root(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    path = merkle_proof(leaves, index)
    assert verify_merkle_proof(root, leaves[index], index, len(leaves), path)


@given(leaves_st, st.data())
def test_a_proof_does_not_transfer(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    path = merkle_proof(leaves, index)
    forged = leaves[index] + b"x"
    assert not verify_merkle_proof(root, forged, index, len(leaves), path)
    if len(leaves) > 1:
        other = (index + 1) % len(leaves)
        if leaves[other] != leaves[index]:
            assert not verify_merkle_proof(root, leaves[index], other, len(leaves), path)
        bad = [bytes(32), *path[1:]]
        if bad != path:
            assert not verify_merkle_proof(root, leaves[index], index, len(leaves), bad)


def test_root_depends_on_order_and_content() -> None:
    a, b, c = b"a", b"b", b"c"
    assert merkle_root([a, b, c]) != merkle_root([b, a, c])
    assert merkle_root([a, b]) != merkle_root([a, b, b])  # padding is not a real leaf
    assert merkle_root([]) == bytes(32)
    # A leaf cannot pose as an inner node (domain separation).
    assert merkle_root([a]) != hashlib.sha256(a).digest()


def test_proof_length_and_range_are_checked() -> None:
    leaves = [bytes([i]) for i in range(5)]
    root = merkle_root(leaves)
    path = merkle_proof(leaves, 2)
    assert len(path) == 3
    assert not verify_merkle_proof(root, leaves[2], 2, 5, path[:-1])
    assert not verify_merkle_proof(root, leaves[2], 7, 5, path)
    with pytest.raises(IndexError, match="out of range"):
        merkle_proof(leaves, 5)


def test_hash_chain() -> None:
    seed = b"seed"
    assert hash_chain(seed, 0) == seed
    assert hash_chain(seed, 1) == hashlib.sha256(seed).digest()
    assert hash_chain(seed, 2) == hashlib.sha256(hashlib.sha256(seed).digest()).digest()
    assert hash_chain(hash_chain(seed, 7), 5) == hash_chain(seed, 12)
    assert hash_chain(seed, 12) != hash_chain(seed, 11)
    with pytest.raises(ValueError, match="length"):
        hash_chain(seed, -1)
