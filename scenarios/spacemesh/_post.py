"""A PoST stand-in: hash labels committed in a Merkle root, plus a small proof of work."""

from __future__ import annotations

import functools

from ._codec import h
from ._merkle import merkle_root

MAX_POW_BITS = 24
MAX_LABELS = 1 << 16


@functools.lru_cache(maxsize=4096)
def post_commitment(smesher: str, num_units: int, labels_per_unit: int) -> bytes:
    """The Merkle root over the smesher's labels ("initialised storage"). Pure, so cached:
    the nodes of a simulation verify a smesher's commitment once between them."""
    count = num_units * labels_per_unit
    if not 0 < count <= MAX_LABELS:
        raise ValueError(f"label count {count} out of range 1..{MAX_LABELS}")
    return merkle_root([h(b"label", smesher, i) for i in range(count)])


def _pow_ok(challenge: bytes, statement: bytes, commitment: bytes, nonce: int, bits: int) -> bool:
    digest = h(b"post-pow", challenge, statement, commitment, nonce)
    return int.from_bytes(digest[:4], "big") >> (32 - bits) == 0 if bits else True


def prove_post(challenge: bytes, statement: bytes, commitment: bytes, bits: int) -> int:
    """The smallest nonce whose hash with the inputs has ``bits`` leading zero bits."""
    if not 0 <= bits <= MAX_POW_BITS:
        raise ValueError(f"pow bits must be 0..{MAX_POW_BITS}, not {bits}")
    nonce = 0
    while not _pow_ok(challenge, statement, commitment, nonce, bits):
        nonce += 1
    return nonce


def verify_post(
    smesher: str,
    num_units: int,
    labels_per_unit: int,
    challenge: bytes,
    statement: bytes,
    commitment: bytes,
    nonce: int,
    bits: int,
) -> bool:
    """True when the commitment is the smesher's and the nonce meets the work target."""
    try:
        expected = post_commitment(smesher, num_units, labels_per_unit)
    except ValueError:
        return False
    return expected == commitment and _pow_ok(challenge, statement, commitment, nonce, bits)
