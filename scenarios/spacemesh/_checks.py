"""The scenario cases' checks: pure functions over what the nodes' APIs said (their reports).

Each returns the problems it found (empty: the property holds), so a test breaks a property
in a list of reports and sees the check name it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence


@dataclasses.dataclass
class Report:
    """What one node's API said at the end, published on the ``reports`` topic."""

    seq: int
    instance: str
    role: str
    smesher: str
    is_smeshing: bool
    verified_layer: int
    hashes: list[str]
    atx_smeshers: list[str]
    smeshing_error: str
    error: str = ""
    """Why this node failed its own checks (it stops right after publishing this)."""
    atxs: list[list[object]] = dataclasses.field(default_factory=list)
    """[smesher, target epoch] of every ATX the node knows."""
    state_roots: list[str] = dataclasses.field(default_factory=list)
    blocks: list[str] = dataclasses.field(default_factory=list)
    """Each layer's block id from layer 0 (empty: the layer has no block)."""
    accounts: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    """address -> [balance, nonce] (DebugService.Accounts)."""
    coinbase: str = ""
    eligibilities: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """epoch (str) -> smesher -> slots."""
    malicious: list[str] = dataclasses.field(default_factory=list)
    """Smeshers this node serves a malfeasance proof against."""
    tx_states: dict[str, str] = dataclasses.field(default_factory=dict)
    checkpoint: str = ""
    """Hash of the checkpoint the node served (empty: none asked)."""
    statuses: list[int] = dataclasses.field(default_factory=list)
    """Each layer's status in MeshService.LayersQuery from layer 0 (`CONFIRMED`: verified)."""


CONFIRMED = 2
"""Layer.LayerStatus of a layer the tortoise verified (LayersQuery)."""


def _ok(reports: Sequence[Report]) -> list[Report]:
    return [r for r in reports if not r.error]


def own_errors(reports: Sequence[Report]) -> list[str]:
    """Nodes that failed their own watch (did not verify in time, no ATX...)."""
    return [f"{r.instance}: {r.error}" for r in reports if r.error]


def smeshing(reports: Sequence[Report]) -> list[str]:
    """Every miner says it is smeshing."""
    return [f"miner {r.instance} is not smeshing" for r in _ok(reports)
            if r.role == "miner" and not r.is_smeshing]  # fmt: skip


def verified(reports: Sequence[Report], target: int) -> list[str]:
    """Every node verified the target layer, as its node's status says and as the layers
    whose hashes are compared say (a hash compared before its layer is verified may still
    change: a node's status alone is not to be taken at its word)."""
    problems = []
    for r in _ok(reports):
        if r.verified_layer < target or len(r.hashes) < target + 1:
            problems.append(f"{r.instance} verified layer {r.verified_layer}, not {target}")
        elif (layer := unconfirmed(r, target)) is not None:
            problems.append(f"{r.instance} says it verified layer {r.verified_layer}, but its "
                            f"layer {layer} is not verified (LayersQuery)")  # fmt: skip
    return problems


def unconfirmed(report: Report, target: int) -> int | None:
    """The first layer up to `target` that the report's LayersQuery does not show
    `CONFIRMED`, or None."""
    statuses = report.statuses
    return next((n for n in range(target + 1)
                 if n >= len(statuses) or statuses[n] != CONFIRMED), None)  # fmt: skip


def same_hashes(reports: Sequence[Report], target: int, first: int = 0) -> list[str]:
    """Every node has the same layer hashes for layers `first`..`target`. Each node that
    differs is named against the view most nodes hold (the first node's when no view has
    more): against the first node's, a minority's gateway made every node of the majority
    read as the one that diverged."""
    ok = _ok(reports)
    if not ok:
        return []

    def view(r: Report) -> tuple[str, ...]:
        return tuple(r.hashes[first:target + 1])

    held = Counter(map(view, ok))
    reference = min(ok, key=lambda r: (-held[view(r)], r.seq))
    others = held[view(reference)] - 1
    by = f"{reference.instance} and {others} other{'s' * (others > 1)} have" if others else \
        f"{reference.instance} has"
    # One line per view that differs (a partition's side), not one per node in it.
    differ: dict[tuple[int, str], list[str]] = {}
    for r in ok:
        layer = _first_difference(r.hashes, reference.hashes, first, target)
        if layer is not None:
            differ.setdefault((layer, r.hashes[layer]), []).append(r.instance)
    return [f"layer {layer}: {_some(names)} {'have' if len(names) > 1 else 'has'} hash "
            f"{value[:12]}, {by} {reference.hashes[layer][:12]}"
            for (layer, value), names in differ.items()]


def _some(names: Sequence[str], shown: int = 3) -> str:
    """'a', 'a and b', 'a, b and c', 'a, b, c and 4 others'."""
    if len(names) <= shown:
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    more = len(names) - shown
    return f"{', '.join(names[:shown])} and {more} other{'s' * (more > 1)}"


def _first_difference(mine: Sequence[str], theirs: Sequence[str], first: int,
                      last: int | None = None) -> int | None:  # fmt: skip
    """The first layer from `first` (to `last`) that both lists hold and where they differ."""
    end = min(len(mine), len(theirs)) if last is None else min(len(mine), len(theirs), last + 1)
    return next((n for n in range(first, end) if mine[n] != theirs[n]), None)


def atxs_known(reports: Sequence[Report]) -> list[str]:
    """Every reporting miner's ATX is known to every node."""
    ok, problems = _ok(reports), []
    for miner in (r for r in ok if r.role == "miner"):
        missing = [r.instance for r in ok if miner.smesher not in r.atx_smeshers]
        if missing:
            why = f" (its node says: {miner.smeshing_error})" if miner.smeshing_error else ""
            problems.append(f"ATX of miner {miner.instance} unknown to {', '.join(missing)}{why}")
    return problems


def atx_every_epoch(reports: Sequence[Report], first: int, last: int) -> list[str]:
    """Every miner published an ATX for each target epoch `first`..`last` (as every node
    knows them)."""
    ok, problems = _ok(reports), []
    for r in ok:
        have = {(str(s), int(e)) for s, e in r.atxs}  # type: ignore[call-overload]
        for miner in (m for m in ok if m.role == "miner"):
            gaps = [e for e in range(first, last + 1) if (miner.smesher, e) not in have]
            if gaps:
                problems.append(f"{r.instance} knows no ATX of {miner.instance} for epochs {gaps}")
    return problems


def same_state(reports: Sequence[Report], first: int = 0) -> list[str]:
    """Every node has the same state root per layer from `first` on, and the same accounts
    (a node recovered from a checkpoint knows no state before the checkpoint's layer)."""
    ok = _ok(reports)
    if not ok:
        return []
    ref = min(ok, key=lambda r: r.seq)
    problems = []
    for r in ok:
        layer = _first_difference(r.state_roots, ref.state_roots, first)
        if layer is not None:
            problems.append(f"layer {layer}: {r.instance} has state root "
                            f"{r.state_roots[layer][:12]}, {ref.instance} "
                            f"{ref.state_roots[layer][:12]}")  # fmt: skip
        if r.accounts != ref.accounts:
            diff = sorted(a for a in r.accounts.keys() | ref.accounts.keys()
                          if r.accounts.get(a) != ref.accounts.get(a))  # fmt: skip
            problems.append(f"{r.instance} and {ref.instance} disagree on accounts "
                            f"{[a[:12] for a in diff[:3]]}")  # fmt: skip
    return problems


def rewards_reach_coinbases(reports: Sequence[Report]) -> list[str]:
    """Every miner's coinbase has a balance on every node."""
    ok, problems = _ok(reports), []
    for miner in (m for m in ok if m.role == "miner"):
        poor = [r.instance for r in ok if r.accounts.get(miner.coinbase, [0, 0])[0] <= 0]
        if poor:
            problems.append(f"coinbase of {miner.instance} has no reward on {', '.join(poor)}")
    return problems


def same_eligibilities(reports: Sequence[Report]) -> list[str]:
    """Every node computes the same eligibilities for every epoch it was asked about."""
    ok = _ok(reports)
    if not ok:
        return []
    ref = min(ok, key=lambda r: r.seq)
    problems = []
    if not any(ref.eligibilities.values()):
        problems.append(f"{ref.instance} reports no eligibility at all")
    for r in ok:
        for epoch, slots in ref.eligibilities.items():
            if r.eligibilities.get(epoch) != slots:
                problems.append(f"epoch {epoch}: {r.instance} and {ref.instance} compute "
                                "different eligibilities")  # fmt: skip
    return problems


def malfeasance_detected(reports: Sequence[Report], equivocators: Sequence[str]) -> list[str]:
    """Every honest node serves a malfeasance proof against every identity that equivocated
    (and against no honest one)."""
    ok, problems = _ok(reports), []
    bad = set(equivocators)
    if not bad:
        return ["no identity equivocated: nothing to detect"]
    for r in ok:
        if r.smesher in bad:
            continue
        missing = sorted(bad - set(r.malicious))
        if missing:
            problems.append(f"{r.instance} has no malfeasance proof against "
                            f"{', '.join(m[:12] for m in missing)}")  # fmt: skip
        wrong = sorted(set(r.malicious) - bad)
        if wrong:
            problems.append(f"{r.instance} accuses honest {', '.join(m[:12] for m in wrong)}")
    return problems


def transactions_applied(reports: Sequence[Report], tx_ids: Sequence[str]) -> list[str]:
    """Every submitted transaction is applied, as every node says."""
    problems = []
    if not tx_ids:
        return ["no transaction was submitted"]
    for r in _ok(reports):
        pending = [t[:12] for t in tx_ids if r.tx_states.get(t) != "applied"]
        if pending:  # (a thousand ids made each reason 21 kB)
            more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
            problems.append(f"{r.instance}: {len(pending)} of {len(tx_ids)} transactions not "
                            f"applied: {', '.join(pending[:3])}{more}")
    return problems


def transfers_received(reports: Sequence[Report], sent: Mapping[str, int]) -> list[str]:
    """Every node shows each recipient of the submitted spends (`sent`: address -> amount)
    holding what it was sent: an applied transaction may have failed (it paid its fee, its
    transfer did not happen), as go-spacemesh's processed ones may, so the system tests
    check the recipients' balances too."""
    problems = []
    for r in _ok(reports):
        short = [f"{a[:12]} has {r.accounts.get(a, [0, 0])[0]}, not {amount}"
                 for a, amount in sent.items() if r.accounts.get(a, [0, 0])[0] != amount]  # fmt: skip
        if short:
            problems.append(f"{r.instance}: transfers not received: {', '.join(short[:3])}")
    return problems


def same_checkpoint(reports: Sequence[Report]) -> list[str]:
    """Every node serves the same checkpoint (accounts and ATXs) at the checkpoint layer."""
    ok = _ok(reports)
    digests = {r.checkpoint for r in ok}
    if "" in digests:
        return [f"{r.instance} served no checkpoint" for r in ok if not r.checkpoint]
    if len(digests) > 1:
        return [f"nodes serve {len(digests)} different checkpoints"]
    return []


Check = Callable[[Sequence[Report]], list[str]]


def _blocks(reports: Sequence[Report], first: int, last: int) -> int | None:
    """How many of layers ``first``..``last`` have a block, by the first node that reported
    without an error; None if there is no such node or layer."""
    ok = _ok(reports)
    if not ok or last < first:
        return None
    return sum(1 for b in ok[0].blocks[first : last + 1] if b)


def blocks_made(reports: Sequence[Report], first: int, last: int) -> str:
    """How many of layers ``first``..``last`` have a block (a note: a layer the hare did not
    certify is empty by the protocol, but a run whose layers are all empty is worth a
    look; `enough_blocks` checks it)."""
    made = _blocks(reports, first, last)
    if made is None:
        return "no layer to count blocks in"
    return f"layers {first}-{last} with a block: {made} of {last - first + 1}"


def enough_blocks(reports: Sequence[Report], first: int, last: int, least: int) -> list[str]:
    """At least `least` of layers ``first``..``last`` have a block (nothing to check when
    there is no such layer, or no node reported without an error: that fails by itself)."""
    made = _blocks(reports, first, last)
    if made is None or made >= least:
        return []
    return [f"only {made} of layers {first}-{last} have a block, fewer than min_blocks={least}"]
