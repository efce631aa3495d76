"""Per-instance secrets that a sync connection presents in its `hello` (TEST_SYNC_TOKEN)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from harness.sync._protocol import CONTROL


class Tokens:
    """The secrets of one run: each instance's is an HMAC of its id under a random key
    that never leaves the supervisor, so nothing needs storing per instance."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def for_instance(self, instance: str) -> str:
        """The token `instance` must present (given to it as TEST_SYNC_TOKEN)."""
        return hmac.new(self._key, instance.encode(), hashlib.sha256).hexdigest()

    def control(self) -> str:
        """The run's control token: what the operator's connection presents with `hello`
        as CONTROL to inject faults (the supervisor writes it to `control.token`)."""
        return self.for_instance(CONTROL)

    def check(self, instance: str, token: str) -> bool:
        """True if `token` is `instance`'s (in constant time)."""
        return hmac.compare_digest(self.for_instance(instance), token)
