"""Checkpoints: the accounts and ATXs at a layer, to restart a network from (go-spacemesh's
``checkpoint/``).

A checkpoint holds the accounts after its layer, their state root, and the ATXs that make
smeshers active in that layer's epoch and the next (with the PoET proofs that validate them).
A node recovering from it starts execution after the layer with those accounts, and takes
the ATXs as if gossiped; the layers up to the checkpoint's have no blocks for it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._codec import Json, decode
from ._mesh import Mesh
from ._state import Account, Accounts, state_root

VERSION = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    """A parsed checkpoint."""

    layer: int
    accounts: Accounts
    atxs: list[dict[str, Any]]
    poets: list[dict[str, Any]]

    def messages(self) -> list[tuple[str, Json]]:
        """What to feed the mesh: the PoET proofs, then the ATXs."""
        return [("poet", p) for p in self.poets] + [("atx", a) for a in self.atxs]


def make_checkpoint(mesh: Mesh, layer: int, accounts: Accounts) -> dict[str, Any]:
    """The checkpoint at ``layer`` given the accounts after it (JSON-able)."""
    epoch = mesh.params.epoch(layer)
    atxs = [a for e in (epoch, epoch + 1) for _, a in sorted(mesh.atxs_for_epoch(e).items())]
    wanted = {(str(a["poet"]["key"]), int(a["poet"]["round"])) for a in atxs}
    poets = [p for k, p in sorted(mesh.poet_proofs.items()) if k in wanted]
    return {
        "version": VERSION,
        "layer": layer,
        "state_root": state_root(accounts).hex(),
        "accounts": {a: x.to_json() for a, x in sorted(accounts.items())},
        "atxs": atxs,
        "poets": poets,
    }


def parse_checkpoint(value: Json) -> Checkpoint:
    """A checkpoint from its JSON; ``ValueError`` names what is wrong (also a state root that
    does not match the accounts)."""
    if not isinstance(value, dict) or value.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} checkpoint")
    try:
        layer = int(value["layer"])
        accounts = {str(a): Account.from_json(x) for a, x in value["accounts"].items()}
        atxs, poets = list(value["atxs"]), list(value["poets"])
        root = str(value["state_root"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"checkpoint lacks or mangles {exc}") from None
    if layer < 0:
        raise ValueError(f"checkpoint layer must be >= 0, not {layer}")
    if state_root(accounts).hex() != root:
        raise ValueError("checkpoint state_root does not match its accounts")
    return Checkpoint(layer, accounts, atxs, poets)


def load_checkpoint(path: str) -> Checkpoint:
    """Read and parse a checkpoint file; ``ValueError`` names the file and the problem."""
    try:
        with open(path, "rb") as f:
            return parse_checkpoint(decode(f.read()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"checkpoint {path}: {exc}") from None
