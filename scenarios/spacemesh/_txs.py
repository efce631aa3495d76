"""Transactions of a single-sig wallet (spawn, spend) and the mempool that holds them.

As in go-spacemesh's genvm ``wallet`` template: an account's address derives from the
owner's public key; the first transaction of an account spawns it (fee paid from what the
address already holds, e.g. rewards or a genesis allocation), later ones spend. Every
transaction carries the principal's nonce and a fee; the owner signs it. Encoding is
canonical JSON (our stand-in for SCALE); a transaction's id is the SHA-256 of that encoding.
"""

from __future__ import annotations

import functools
from typing import Any

from ._codec import Json, canonical, decode, h, hash_json
from ._keys import Signer, verify_signature

ADDRESS_BYTES = 24
"""An address is 24 bytes, four zero bytes then twenty of a hash (as in go-spacemesh)."""
MAX_TXS_PER_PROPOSAL = 100
TX_KINDS = ("spawn", "spend")


@functools.lru_cache(maxsize=65536)
def address_of(public_hex: str) -> str:
    """The wallet address (hex) of the account owned by public key ``public_hex``."""
    return (bytes(4) + h(b"wallet", bytes.fromhex(public_hex))[-20:]).hex()


def _signed_tx(body: dict[str, Any], signer: Signer) -> bytes:
    return canonical({**body, "sig": signer.sign(canonical(body))})


def spawn_tx(signer: Signer, nonce: int, fee: int) -> bytes:
    """A signed spawn of ``signer``'s wallet."""
    body = {
        "kind": "spawn",
        "principal": address_of(signer.public_hex),
        "public": signer.public_hex,
        "nonce": nonce,
        "fee": fee,
    }
    return _signed_tx(body, signer)


def spend_tx(signer: Signer, to_address: str, amount: int, nonce: int, fee: int) -> bytes:
    """A signed transfer of ``amount`` from ``signer``'s wallet to ``to_address``."""
    body = {
        "kind": "spend",
        "principal": address_of(signer.public_hex),
        "public": signer.public_hex,
        "nonce": nonce,
        "fee": fee,
        "to": to_address,
        "amount": amount,
    }
    return _signed_tx(body, signer)


def _is_address(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 2 * ADDRESS_BYTES:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def _is_amount(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def check_tx(tx: Json) -> str | None:
    """Why a decoded transaction is malformed or badly signed (None: well formed).

    Whether it can execute (nonce, balance) is only known when its layer is applied.
    """
    if not isinstance(tx, dict):
        return "transaction is not an object"
    kind = tx.get("kind")
    if kind not in TX_KINDS:
        return f"unknown transaction kind {kind!r}"
    wanted = {"kind", "principal", "public", "nonce", "fee", "sig"}
    if kind == "spend":
        wanted |= {"to", "amount"}
    if set(tx) != wanted:
        return f"{kind} needs exactly the fields {sorted(wanted)}"
    if not all(_is_amount(tx[k]) for k in ("nonce", "fee", "amount") if k in tx):
        return "nonce, fee and amount must be integers in [0, 2^63)"
    if kind == "spend" and not _is_address(tx["to"]):
        return "destination is not a 24-byte hex address"
    public = tx["public"]
    if not isinstance(public, str) or not isinstance(tx["sig"], str):
        return "public key and signature must be hex strings"
    try:
        if tx["principal"] != address_of(public):
            return "principal is not the public key's wallet address"
    except ValueError:
        return "public key is not hex"
    body = {k: v for k, v in tx.items() if k != "sig"}
    if not verify_signature(public, canonical(body), tx["sig"]):
        return "bad signature"
    return None


def parse_tx(raw: bytes) -> tuple[str, dict[str, Any]]:
    """(id, transaction) of an encoded transaction; ``ValueError`` names what is wrong."""
    try:
        tx = decode(raw)
    except ValueError as exc:
        raise ValueError(f"transaction is not JSON: {exc}") from None
    reason = check_tx(tx)
    if reason is not None:
        raise ValueError(reason)
    return hash_json(tx), tx


def execution_order(txs: dict[str, dict[str, Any]]) -> list[str]:
    """The order a block's transactions execute in: by principal, nonce, then id."""
    return sorted(txs, key=lambda i: (txs[i]["principal"], int(txs[i]["nonce"]), i))


class Mempool:
    """Every well-formed transaction this node holds, and which of them still wait.

    Bodies stay after inclusion: a block names its transactions by id, and whoever applies
    the layer needs the bodies (a late joiner fetches them with the layer).
    """

    def __init__(self) -> None:
        self.txs: dict[str, dict[str, Any]] = {}
        self.rejected: dict[str, str] = {}

    def add(self, tx: Json) -> bool:
        """Keep a well-formed transaction (False for a malformed one)."""
        if check_tx(tx) is not None:
            return False
        self.txs.setdefault(hash_json(tx), tx)
        return True

    def get(self, tx_id: str) -> dict[str, Any] | None:
        """A transaction's body, when held."""
        return self.txs.get(tx_id)

    def pending(self, done: set[str], limit: int = MAX_TXS_PER_PROPOSAL) -> list[str]:
        """Ids of held transactions not in ``done`` (included or applied), in execution order,
        at most ``limit``: what a proposal offers."""
        waiting = {i: t for i, t in self.txs.items() if i not in done}
        return execution_order(waiting)[:limit]
