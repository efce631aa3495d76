"""Ed25519 identities (the ``cryptography`` package) for nodes and PoET services."""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class Signer:
    """An Ed25519 key pair derived from a seed, so that a seeded run is reproducible."""

    def __init__(self, seed: bytes | str) -> None:
        raw = seed.encode() if isinstance(seed, str) else seed
        self._key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(raw).digest())
        self.public_key: bytes = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_hex(self) -> str:
        """The public key as hex: the node's smesher id or the PoET's service key."""
        return self.public_key.hex()

    def sign(self, message: bytes) -> str:
        """Hex signature over ``message``."""
        return self._key.sign(message).hex()


def verify_signature(public_hex: str, message: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is ``public_hex``'s signature over ``message``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (ValueError, InvalidSignature):
        return False
    return True
