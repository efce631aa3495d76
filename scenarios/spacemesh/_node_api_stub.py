"""Placeholders for the Node methods the API reads and S1/S2 implement (dropped at merge).

Each is installed on `Node` only when the class lacks it, so the real method always wins.
Names and shapes are those of the shared contract (/work/notes/spacemesh-contract.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from ._mesh import eligible
from ._node import Node


def _accounts(self: Node) -> dict[str, tuple[int, int]]:
    """Rewards summed over the decided layers' blocks; no transactions, so nonce 0."""
    balances: dict[str, int] = {}
    for state in self.layers():
        if state.block is not None:
            for smesher, amount in state.block["rewards"]:
                balances[smesher] = balances.get(smesher, 0) + int(amount)
    return {k: (v, 0) for k, v in balances.items()}


def _account(self: Node, address: str) -> tuple[int, int]:
    return _accounts(self).get(address, (0, 0))


def _submit_tx(self: Node, raw: bytes) -> tuple[str, str | None]:
    return hashlib.sha256(raw).hexdigest(), "transactions are not implemented (stub)"


def _tx_state(self: Node, tx_id: str) -> str:
    return "unknown"


def _malfeasance_proofs(self: Node) -> list[dict[str, Any]]:
    return []


def _eligibilities(self: Node, epoch: int) -> dict[str, int]:
    """Layers of the epoch each active smesher may propose in (today's per-layer tickets)."""
    params = self.config.mesh
    out: dict[str, int] = {}
    for atx_id, atx in self.mesh.atxs_for_epoch(epoch).items():
        weight = int(atx["num_units"])
        first = epoch * params.layers_per_epoch
        slots = sum(
            eligible(params, atx_id, layer, weight)
            for layer in range(first, first + params.layers_per_epoch)
        )
        out[atx["smesher"]] = out.get(atx["smesher"], 0) + slots
    return out


def _checkpoint(self: Node, layer: int) -> dict[str, Any]:
    return {
        "layer": layer,
        "accounts": {k: list(v) for k, v in sorted(_accounts(self).items())},
        "atxs": sorted(self.mesh.atxs),
    }


_PLACEHOLDERS: dict[str, Any] = {
    "accounts": _accounts,
    "account": _account,
    "submit_tx": _submit_tx,
    "tx_state": _tx_state,
    "malfeasance_proofs": _malfeasance_proofs,
    "eligibilities": _eligibilities,
    "checkpoint": _checkpoint,
}


def install() -> list[str]:
    """Add the missing contract methods to `Node`; the names it added."""
    added = [name for name in _PLACEHOLDERS if not hasattr(Node, name)]
    for name in added:
        setattr(Node, name, _PLACEHOLDERS[name])
    return added
