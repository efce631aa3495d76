"""Malfeasance proofs: two messages one identity signed that it may not both have signed.

As in go-spacemesh (``malfeasance/``): two ATXs for the same epoch, two ballots for the
same layer, two hare votes for the same layer. The proof is the pair of signed messages;
anyone who checks both signatures is convinced, and from then on ignores that identity
(no eligibility, no weight in the tortoise or the hare).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._codec import hash_json

KINDS = {"atx": "atx", "proposal": "ballot", "vote": "hare"}
"""Message kind -> the proof's kind (the names the API reports)."""


def conflict_key(kind: str, msg: dict[str, Any]) -> tuple[str, str, int] | None:
    """What an identity may sign only once: (kind, smesher, epoch or layer); None for
    messages without such a rule."""
    if kind == "atx":
        return kind, str(msg["smesher"]), int(msg["target_epoch"])
    if kind in ("proposal", "vote"):
        return kind, str(msg["smesher"]), int(msg["layer"])
    return None


def make_proof(kind: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The gossiped proof of two conflicting messages of ``kind`` (in a canonical order)."""
    first, second = sorted((a, b), key=hash_json)
    return {"kind": KINDS[kind], "messages": [first, second]}


def check_proof(
    proof: dict[str, Any], sig_ok: Callable[[dict[str, Any]], bool]
) -> tuple[str, str, int] | None:
    """(smesher, kind, epoch or layer) that a valid proof convicts; None when invalid."""
    kind = {v: k for k, v in KINDS.items()}.get(str(proof.get("kind")))
    messages = proof.get("messages")
    if kind is None or not isinstance(messages, list) or len(messages) != 2:
        return None
    a, b = messages
    if not isinstance(a, dict) or not isinstance(b, dict) or a == b:
        return None
    key_a, key_b = conflict_key(kind, a), conflict_key(kind, b)
    if key_a is None or key_a != key_b or not (sig_ok(a) and sig_ok(b)):
        return None
    return key_a[1], KINDS[kind], key_a[2]
