"""Global state: accounts, transaction execution, rewards and the state root of each layer.

A layer's block names its transactions and its rewards (subsidy per proposal). Applying it
runs the transactions in a fixed order (principal, nonce, id); a transaction whose nonce is
not the account's next one, or whose principal cannot pay its fee, is skipped (no effect);
a spawn of an already spawned account or a spend of more than the balance fails but pays
its fee and uses its nonce, as in go-spacemesh. The layer's fees are then shared among the
block's coinbases in proportion to their subsidy. Everything is a pure function of the
decided blocks, so every node reaches the same accounts and state root.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._codec import h
from ._memo import once
from ._merkle import merkle_root
from ._mesh import LayerState
from ._txs import address_of, execution_order

APPLIED = "applied"
FAILED = "failed"
SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    """One account: balance, next nonce, and the owner's key once spawned."""

    balance: int = 0
    nonce: int = 0
    public: str = ""

    def to_json(self) -> dict[str, Any]:
        """The account as a JSON object (checkpoints, the store)."""
        return {"balance": self.balance, "nonce": self.nonce, "public": self.public}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Account:
        """Inverse of `to_json`; ``ValueError`` on a malformed object."""
        try:
            account = cls(int(value["balance"]), int(value["nonce"]), str(value["public"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed account {value!r}") from exc
        if account.balance < 0 or account.nonce < 0:
            raise ValueError(f"negative balance or nonce in {value!r}")
        return account


Accounts = dict[str, Account]


def genesis_accounts(allocations: Iterable[tuple[str, int]]) -> Accounts:
    """The accounts before layer 0: each address funded with its genesis balance."""
    accounts: Accounts = {}
    for address, balance in allocations:
        accounts[address] = Account(accounts.get(address, Account()).balance + int(balance))
    return accounts


_ROOTS: dict[tuple[tuple[str, Account], ...], bytes] = {}
"""State roots by the accounts they cover, shared by every ledger of the process: a pure
function of the accounts, so the nodes of a simulation, which reach the same accounts,
compute each root once between them."""
_ROOTS_LIMIT = 4096


def state_root(accounts: Accounts) -> bytes:
    """Merkle root over every account (address, balance, nonce, owner key), by address."""
    key = tuple(sorted(accounts.items()))
    return once(
        _ROOTS,
        key,
        lambda: merkle_root([h(b"account", a, x.balance, x.nonce, x.public) for a, x in key]),
        _ROOTS_LIMIT,
    )


def _execute(accounts: Accounts, tx: dict[str, Any]) -> tuple[str, int]:
    """Run one transaction in place; (result, fee collected)."""
    principal = str(tx["principal"])
    account = accounts.get(principal, Account())
    fee, nonce = int(tx["fee"]), int(tx["nonce"])
    if nonce != account.nonce or account.balance < fee:
        return SKIPPED, 0
    paid = Account(account.balance - fee, nonce + 1, account.public)
    if tx["kind"] == "spawn":
        if account.public:
            accounts[principal] = paid
            return FAILED, fee
        accounts[principal] = dataclasses.replace(paid, public=str(tx["public"]))
        return APPLIED, fee
    amount, to = int(tx["amount"]), str(tx["to"])
    if not account.public or paid.balance < amount:
        accounts[principal] = paid
        return FAILED, fee
    accounts[principal] = dataclasses.replace(paid, balance=paid.balance - amount)
    dest = accounts.get(to, Account())
    accounts[to] = dataclasses.replace(dest, balance=dest.balance + amount)
    return APPLIED, fee


def apply_block(
    accounts: Accounts, block: Mapping[str, Any] | None, txs: Mapping[str, dict[str, Any]]
) -> tuple[Accounts, dict[str, str]]:
    """The accounts after a layer's block (None: an empty layer), and each tx's result.

    ``txs`` holds the bodies of the block's transactions (every one must be present).
    """
    after = dict(accounts)
    if block is None:
        return after, {}
    results: dict[str, str] = {}
    fees = 0
    for tx_id in execution_order({i: txs[i] for i in block.get("txs", [])}):
        results[tx_id], fee = _execute(after, txs[tx_id])
        fees += fee
    rewards = sorted((str(s), int(a)) for s, a in block["rewards"])
    total = sum(a for _, a in rewards)
    shares = [fees * a // total if total else 0 for _, a in rewards]
    if rewards:
        shares[0] += fees - sum(shares)  # the rounding remainder, to a fixed coinbase
    for (smesher, subsidy), share in zip(rewards, shares, strict=True):
        coinbase = address_of(smesher)
        account = after.get(coinbase, Account())
        after[coinbase] = dataclasses.replace(account, balance=account.balance + subsidy + share)
    return after, results


@dataclasses.dataclass(frozen=True, slots=True)
class Base:
    """Where execution starts: genesis (layer -1) or a checkpoint's layer and accounts."""

    layer: int
    accounts: Accounts


class Ledger:
    """Applies a node's decided layers in order and remembers the results.

    The state after a layer is cached by the layer's hash, which chains every earlier
    block id, and by whether its block is known. A changed decision anywhere re-executes
    from there (the later hashes change), and so does a layer whose block arrives after its
    id was decided, with every layer after it: the layer ran as empty meanwhile, and the
    hashes, over block ids, do not change then (the votes that decide a layer may reach a
    node before the certificate that holds the block). Nothing else re-executes.
    """

    def __init__(self, base: Base) -> None:
        self.base = base
        self._after: dict[tuple[bytes, bool], tuple[Accounts, dict[str, str], bytes]] = {}
        self._base_root = state_root(base.accounts)
        self.accounts: Accounts = dict(base.accounts)
        self.applied_layer = base.layer
        self.results: dict[str, tuple[int, str]] = {}
        """tx id -> (layer, result) over the applied layers."""
        self._by_layer: dict[int, Accounts] = {}
        self._last: list[tuple[LayerState, LayerState]] = []
        """Per layer of the last `apply`: the state it was given and what it returned."""

    def accounts_after(self, layer: int) -> Accounts | None:
        """The accounts after an applied layer (None: not applied)."""
        return self._by_layer.get(layer)

    def apply(
        self, states: list[LayerState], lookup: Callable[[str], dict[str, Any] | None]
    ) -> list[LayerState]:
        """``states`` with the state root of the accounts after each layer, up to the
        last layer whose transactions are all held (a layer cannot apply without them)."""
        accounts = self.base.accounts
        out: list[LayerState] = []
        root = self._base_root
        after: dict[tuple[bytes, bool], tuple[Accounts, dict[str, str], bytes]] = {}
        results: dict[str, tuple[int, str]] = {}
        by_layer: dict[int, Accounts] = {}
        reuse = True  # until a layer executes: those after it start from other accounts
        last = self._last
        remember: list[tuple[LayerState, LayerState]] = []
        cached: tuple[Accounts, dict[str, str], bytes] | None
        for n, s in enumerate(states):
            if reuse and n < len(last) and last[n][0] is s:
                # The same state as last time, after the same layers: the same result
                # (the mesh hands back the very objects of the layers it did not redo).
                # Without this, each call rebuilt every layer's state since genesis.
                if s.number > self.base.layer:
                    key = (s.hash, s.block is not None)
                    after[key] = self._after[key]
                    accounts, done, root = after[key]
                    results.update({i: (s.number, r) for i, r in done.items()})
                by_layer[s.number] = accounts
                out.append(last[n][1])
                remember.append(last[n])
                continue
            if s.number > self.base.layer:
                key = (s.hash, s.block is not None)
                cached = self._after.get(key) if reuse else None
                if cached is None:
                    reuse = False
                    ids = s.block.get("txs", []) if s.block is not None else []
                    bodies = {i: lookup(i) for i in ids}
                    if any(b is None for b in bodies.values()):
                        break
                    held = {i: b for i, b in bodies.items() if b is not None}
                    new, done = apply_block(accounts, s.block, held)
                    cached = (new, done, state_root(new))
                after[key] = cached
                accounts, done, root = cached
                results.update({i: (s.number, r) for i, r in done.items()})
            by_layer[s.number] = accounts
            out.append(dataclasses.replace(s, state_root=root))
            remember.append((s, out[-1]))
        self._last = remember
        self._after = after
        self.accounts = accounts
        self.applied_layer = out[-1].number if out else self.base.layer
        self.results = results
        self._by_layer = by_layer
        return out
