"""Merkle trees (the PoET statement) and the hash chain (the PoET's sequential work)."""

from __future__ import annotations

import hashlib

_LEAF = b"\x00"
_NODE = b"\x01"


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    level = [_leaf(x) for x in leaves]
    levels = [level]
    while len(level) > 1:
        if len(level) % 2:
            level = [*level, level[-1]]
        level = [_node(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def merkle_root(leaves: list[bytes]) -> bytes:
    """Root over the leaves in order (odd levels repeat their last node); empty: 32 zeros."""
    if not leaves:
        return bytes(32)
    return _levels(leaves)[-1][0]


def merkle_proof(leaves: list[bytes], index: int) -> list[bytes]:
    """The sibling path proving ``leaves[index]`` is under ``merkle_root(leaves)``."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} out of range for {len(leaves)} leaves")
    path: list[bytes] = []
    for level in _levels(leaves)[:-1]:
        padded = [*level, level[-1]] if len(level) % 2 else level
        path.append(padded[index ^ 1])
        index //= 2
    return path


def verify_merkle_proof(
    root: bytes, leaf: bytes, index: int, leaf_count: int, path: list[bytes]
) -> bool:
    """True when ``path`` proves ``leaf`` sits at ``index`` of a tree of ``leaf_count`` leaves."""
    if not 0 <= index < leaf_count:
        return False
    expected_depth = max(leaf_count - 1, 0).bit_length()
    if len(path) != expected_depth:
        return False
    node = _leaf(leaf)
    for sibling in path:
        node = _node(sibling, node) if index & 1 else _node(node, sibling)
        index //= 2
    return node == root


def hash_chain(seed: bytes, length: int) -> bytes:
    """``length`` sequential SHA-256 applications over ``seed`` (work that cannot be parallelised)."""
    if length < 0:
        raise ValueError(f"hash chain length must be >= 0, not {length}")
    value = seed
    for _ in range(length):
        value = hashlib.sha256(value).digest()
    return value
