"""The mesh: validated ATXs, proposals, hare votes and certificates, and what they decide.

Everything here is a pure function of the *set* of messages received (plus the current
layer), never of their order or arrival time, so every honest node that has received the
same messages reports the same layer hashes. Messages whose dependency has not arrived yet
(an ATX before its PoET proof, a proposal before its ATX) wait in a pending pool.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import defaultdict
from typing import Any

from ._codec import Json, canonical, h, hash_json
from ._eligibility import SCALE, ballot_weight, beacon, hare_seats, num_slots, slot_counts
from ._keys import Signer, verify_signature
from ._malfeasance import check_proof, conflict_key, make_proof
from ._memo import once
from ._merkle import verify_merkle_proof
from ._poet import verify_poet_proof
from ._post import verify_post

EMPTY_BLOCK = ""
_NOTHING_CHANGED = 1 << 62
REWARD_PER_UNIT = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class MeshParams:
    """Consensus parameters every node of a network must share."""

    layers_per_epoch: int = 3
    hdist: int = 2
    """Layers after which the tortoise verifies a layer from later proposals' votes."""
    window: int = 10
    """How many past layers a proposal votes on (reaches back over a partition)."""
    hare_threshold: float = 0.5
    """Fraction of the expected hare committee's seats a certificate's votes must exceed."""
    proposals_per_layer: int = 50
    """Expected proposals per layer (go-spacemesh's layer size, 50): a smesher's slots in
    an epoch are its share of the epoch's weight times this times layers_per_epoch."""
    tortoise_threshold: float = 1 / 3
    """Margin (support minus the rest) a block needs, as a fraction of the weight expected
    from the layers voting on it, for the tortoise to verify it (go-spacemesh's global
    threshold is a third of the expected weight plus a local one)."""
    labels_per_unit: int = 16
    pow_bits: int = 6
    certifiers: int = 4
    """How many nodes tally a layer's hare votes and publish its certificate: the active
    smeshers with the lowest certifier tickets for the layer (twice as many in the second
    tally, a layer later, when the layer has no certificate yet)."""
    committee: int = 50
    """Expected hare committee size (seats, one per sampled unit of weight); with fewer
    units in the epoch every unit sits."""
    genesis_accounts: tuple[tuple[str, int], ...] = ()
    """(address hex, balance) funded before layer 0."""

    def __post_init__(self) -> None:
        if self.layers_per_epoch < 1 or self.hdist < 1 or self.window < self.hdist:
            raise ValueError("need layers_per_epoch >= 1, hdist >= 1, window >= hdist")
        if self.certifiers < 1 or self.committee < 1 or self.proposals_per_layer < 1:
            raise ValueError("certifiers, committee and proposals_per_layer must be >= 1")
        if not 0 < self.hare_threshold < 1 or not 0 < self.tortoise_threshold < 1:
            raise ValueError("hare_threshold and tortoise_threshold must be in (0, 1)")

    def epoch(self, layer: int) -> int:
        """The epoch a layer belongs to."""
        return layer // self.layers_per_epoch

    def first_layer(self, epoch: int) -> int:
        """The first layer of an epoch."""
        return epoch * self.layers_per_epoch


class LayerStatus(enum.IntEnum):
    """How a layer's block was decided (values match the gRPC enum)."""

    UNDECIDED = 0
    APPLIED = 1
    """By a hare certificate."""
    VERIFIED = 2
    """By the tortoise (later proposals' weighted votes), or empty after hdist layers."""


@dataclasses.dataclass(frozen=True, slots=True)
class LayerState:
    """One decided layer as the API reports it."""

    number: int
    status: LayerStatus
    block_id: str
    block: dict[str, Any] | None
    hash: bytes
    state_root: bytes
    """The accounts after the layer (set by the node's ledger; empty from `Mesh.decide`)."""


# -- message construction -------------------------------------------------------------------


def _signed(body: dict[str, Any], signer: Signer) -> dict[str, Any]:
    return {**body, "sig": signer.sign(canonical(body))}


_VERIFIED: dict[str, bool] = {}
"""Signature verdicts by message id, shared by every mesh of the process: a pure function
of the message, so the nodes of a simulation verify each signature once between them
(one node per process pays the same as its own cache did)."""
_VERIFIED_LIMIT = 500_000
PENDING_LIMIT = 20_000
"""Messages a mesh holds for a dependency; beyond it the oldest is dropped. A peer can sign
any number of proposals that name an ATX nobody has: without a bound they pile up forever."""


def _signature_valid(msg: dict[str, Any]) -> bool:
    body = {k: v for k, v in msg.items() if k != "sig"}
    return verify_signature(str(msg["smesher"]), canonical(body), str(msg["sig"]))


_ATX_PROOFS: dict[tuple[str, str, int, int, int], bool] = {}
"""An ATX's PoET membership and PoST verdicts, by the ATX's id, the proof's statement and
leaf count and the parameters they are checked with: shared by every mesh of the process,
as `_VERIFIED` is (every node of a simulation checks each ATX)."""


def _atx_proofs_valid(atx: dict[str, Any], proof: dict[str, Any], params: MeshParams) -> bool:
    poet, post = atx["poet"], atx["post"]
    smesher = str(atx["smesher"])
    units = int(atx["num_units"])
    challenge = atx_challenge(smesher, int(atx["target_epoch"]), str(atx["prev"]))
    statement = bytes.fromhex(proof["statement"])
    path = [bytes.fromhex(x) for x in poet["path"]]
    if int(poet["leaf_count"]) != int(proof["leaf_count"]) or not verify_merkle_proof(
        statement, challenge, int(poet["index"]), int(poet["leaf_count"]), path
    ):
        return False
    return verify_post(
        smesher,
        units,
        params.labels_per_unit,
        challenge,
        statement,
        bytes.fromhex(post["commitment"]),
        int(post["nonce"]),
        params.pow_bits,
    )


def atx_challenge(smesher: str, target_epoch: int, prev: str) -> bytes:
    """What a smesher submits to the PoET for its ATX targeting ``target_epoch``."""
    return h(b"atx-challenge", smesher, target_epoch, prev)


def make_atx(
    signer: Signer,
    target_epoch: int,
    prev: str,
    poet: dict[str, Any],
    post: dict[str, Any],
    num_units: int,
    coinbase: str = "",
) -> dict[str, Any]:
    """A signed ATX. ``poet``: key, round, index, leaf_count, path; ``post``: commitment,
    nonce; ``coinbase``: where the node wants its rewards (two nodes sharing one key
    publish two different ATXs: a double ATX)."""
    body = {
        "smesher": signer.public_hex,
        "target_epoch": target_epoch,
        "prev": prev,
        "poet": poet,
        "post": post,
        "num_units": num_units,
        "coinbase": coinbase,
    }
    return _signed(body, signer)


def make_proposal(
    signer: Signer, layer: int, atx_id: str, opinion: dict[str, str], txs: list[str] | None = None
) -> dict[str, Any]:
    """A signed proposal; ``opinion`` maps earlier layer numbers (str) to block ids, ``txs``
    are the ids of the transactions it offers for the layer's block."""
    body = {"layer": layer, "smesher": signer.public_hex, "atx": atx_id, "opinion": opinion}
    if txs:
        body["txs"] = sorted(txs)
    return _signed(body, signer)


def _tx_ids_ok(txs: Any) -> bool:
    return isinstance(txs, list) and all(isinstance(t, str) and len(t) == 64 for t in txs)


COMPACT_ID = 16
"""Hex digits of a proposal id in a hare vote (8 bytes, as go-spacemesh's hare sends
compact ids of 4): a vote is sent to every peer of every node, and a layer's full ids
made it two or three packets."""


def compact_id(proposal_id: str) -> str:
    """How a hare vote names a proposal."""
    return proposal_id[:COMPACT_ID]


def make_vote(signer: Signer, layer: int, atx_id: str, proposals: list[str]) -> dict[str, Any]:
    """A signed hare vote for the set of proposals (by id) seen in ``layer``."""
    body = {
        "layer": layer,
        "smesher": signer.public_hex,
        "atx": atx_id,
        "proposals": sorted(compact_id(p) for p in proposals),
    }
    return _signed(body, signer)


def make_block(
    layer: int, proposals: list[dict[str, Any]], weights: dict[str, int]
) -> dict[str, Any]:
    """The block of a set of proposals: their ids, their transactions and the rewards."""
    ids = sorted(hash_json(p) for p in proposals)
    txs = sorted({str(t) for p in proposals for t in p.get("txs", [])})
    rewards: dict[str, int] = defaultdict(int)
    for p in proposals:
        rewards[p["smesher"]] += REWARD_PER_UNIT * weights.get(p["atx"], 0)
    block = {
        "layer": layer,
        "proposals": ids,
        "rewards": sorted([k, v] for k, v in rewards.items()),
    }
    if txs:
        block["txs"] = txs
    return block


def make_certificate(
    layer: int, block: dict[str, Any], votes: list[dict[str, Any]]
) -> dict[str, Any]:
    """A hare certificate: the block and the votes that certify it. Every vote names each of
    the block's proposals (and maybe more: `hare_output`), so a vote travels without them,
    with only the ids it names beyond the block as ``extra`` (`certificate_votes` puts them
    back), as a go-spacemesh certificate holds the signatures and not the hare messages."""
    ids = _vote_ids(block)
    compact = []
    for vote in sorted(votes, key=lambda v: v["smesher"]):
        extra = sorted(set(vote["proposals"]) - set(ids))
        if sorted(ids + extra) != vote["proposals"]:
            raise ValueError("a certificate's votes must name every proposal of its block")
        entry = {k: v for k, v in vote.items() if k != "proposals"}
        if extra:
            entry["extra"] = extra
        compact.append(entry)
    return {"layer": layer, "block": block, "votes": compact}


def _vote_ids(block: dict[str, Any]) -> list[str]:
    """How a vote for ``block`` names its proposals."""
    return [compact_id(i) for i in block["proposals"]]


def certificate_votes(certificate: dict[str, Any]) -> list[dict[str, Any]]:
    """The votes of ``certificate`` as they were signed: with the block's proposals and
    their own ``extra`` ones."""
    ids = _vote_ids(certificate["block"])
    return [
        {**{k: v for k, v in vote.items() if k != "extra"},
         "proposals": sorted(ids + [str(x) for x in vote.get("extra", [])])}
        for vote in certificate["votes"]
    ]  # fmt: skip


def hare_output(
    votes: list[dict[str, Any]], seats: dict[str, int], needed: float, known: set[str]
) -> list[str]:
    """What a certifier certifies from a layer's hare votes: the compact ids of the largest
    set of proposals (among those it holds, ``known``) that votes of more than ``needed``
    seats all name, grown one proposal at a time by the seats naming it (ties: the smaller
    id), so certifiers holding the same votes certify the same block. A vote supports every
    subset of what its voter saw: when the proposals reached the voters unevenly, the ones
    a majority saw still make a block, where one set named by a majority exactly seldom
    exists (hare3 grades each proposal over several rounds to the same end). ``seats``: a
    voter's seats, one vote each."""
    backing = [(set(v["proposals"]), seats.get(str(v["smesher"]), 0)) for v in votes]
    support: dict[str, int] = defaultdict(int)
    for names, weight in backing:
        for name in names & known:
            support[name] += weight
    chosen: list[str] = []
    for name in sorted(support, key=lambda n: (-support[n], n)):
        if support[name] <= needed:
            break
        narrower = [(names, weight) for names, weight in backing if name in names]
        if sum(weight for _, weight in narrower) > needed:
            chosen.append(name)
            backing = narrower
    return sorted(chosen)


# -- the mesh --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class EpochInfo:
    """What every node derives from an epoch's ATXs (one per smesher, the smaller id)."""

    beacon: bytes
    total: int
    """Units of the epoch's ATXs (malicious identities included: the set is fixed)."""
    atx_of: dict[str, str]
    """Smesher -> its ATX id for the epoch."""
    weight: dict[str, int]
    """Smesher -> its ATX's units."""
    slots: dict[str, int]
    """Smesher -> its proposal slots in the epoch."""
    epoch: int
    layers_per_epoch: int
    _counts: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def counts(self, smesher: str) -> list[int] | None:
        """``smesher``'s slots in each layer of the epoch (None: it has no ATX for it).
        Drawn when first asked: the info is built again for each ATX that arrives, and
        drawing every smesher's slots each time cost a node O(N) per ATX."""
        counts = self._counts.get(smesher)
        if counts is None:
            slots = self.slots.get(smesher)
            if slots is None:
                return None
            counts = self._counts[smesher] = slot_counts(
                self.beacon, self.epoch, smesher, slots, self.layers_per_epoch
            )
        return counts


class Mesh:
    """The validated messages of one node and the decisions they imply.

    ``malfeasance=False`` is a node that skips the malfeasance rule: it builds no proofs,
    ignores the proofs it receives and keeps counting equivocating identities.
    """

    def __init__(
        self, params: MeshParams, poet_keys: set[str] | None = None, *, malfeasance: bool = True
    ) -> None:
        self.params = params
        self.poet_keys = poet_keys
        self.malfeasance = malfeasance
        self.poet_proofs: dict[tuple[str, int], dict[str, Any]] = {}
        self.atxs: dict[str, dict[str, Any]] = {}
        self.proposals: dict[str, dict[str, Any]] = {}
        self.votes: dict[str, dict[str, Any]] = {}
        self.certificates: dict[str, dict[str, Any]] = {}
        self.malicious: dict[str, dict[str, Any]] = {}
        """Smesher -> the (first, by id) proof that convicts it."""
        self.new_proofs: list[dict[str, Any]] = []
        """Proofs this mesh built or accepted since the owner last took them (to gossip)."""
        self._proposals_by_layer: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._votes_by_layer: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._certs_by_layer: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._atx_by_smesher_epoch: dict[tuple[str, int], str] = {}
        self._signed_once: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._pending: dict[str, tuple[str, dict[str, Any]]] = {}
        """Message id -> (kind, message) of those waiting for a dependency, oldest first."""
        self._waiting: dict[tuple[Any, ...], dict[str, None]] = defaultdict(dict)
        """Dependency (`_dependency`) -> ids of the pending messages waiting for it."""
        self._arrived: list[tuple[Any, ...]] = []
        """Dependencies stored since `_drain` last looked: only their waiters are checked
        again (checking every pending message at every arrival grows with the pool)."""
        self._epochs: dict[int, EpochInfo] = {}
        self.version = 0
        # Incremental decisions. Everything below is a cache of pure functions of the
        # stored messages: ``_gen`` changes when the ATXs or the convicted identities do
        # (weights, slots and seats of every epoch may change), and a layer's proposals
        # and certificates only grow, so their counts tell a stale entry from a fresh one.
        self._gen = 0
        self._all_gen = 0
        """Changes when every epoch's weights may have (a conviction, a replaced ATX)."""
        self._epoch_gen: dict[int, int] = defaultdict(int)
        """Per epoch: changes when its ATXs (weights, slots) or its beacon may have."""
        self._atx_index: dict[int, dict[str, str]] = defaultdict(dict)
        """Target epoch -> smesher -> its ATX id."""
        self._ballot_weights: dict[int, dict[str, int]] = defaultdict(dict)
        self._seats: dict[int, dict[tuple[int, str], int]] = defaultdict(dict)
        self._eligible: dict[int, tuple[tuple[int, ...], dict[str, dict[str, Any]]]] = {}
        self._cert_blocks: dict[str, dict[str, Any]] = {}
        """Every certified block by id (what a ballot's vote may name)."""
        self._certified: dict[int, tuple[tuple[int, ...], dict[str, Any] | None]] = {}
        self._opinions: dict[int, tuple[tuple[int, ...], dict[int, dict[str, int]]]] = {}
        self._chain: list[LayerState] = []
        self._dirty_from = 0
        """The first layer whose decision may have changed since the last `decide`."""
        self._decided_at: int | None = None
        """The current layer of the last `decide`."""
        self._id_memo: tuple[dict[str, Any], str] | None = None
        """The last message `_id` hashed, and its id (while `add` runs)."""
        self._adding = False

    # -- intake ------------------------------------------------------------------------

    def _id(self, msg: dict[str, Any]) -> str:
        """``hash_json(msg)``, computed once per message while `add` handles it (checking
        a message and storing it both need its id)."""
        if not self._adding:
            return hash_json(msg)
        memo = self._id_memo
        if memo is not None and memo[0] is msg:
            return memo[1]
        mid = hash_json(msg)
        self._id_memo = (msg, mid)
        return mid

    def _sig_ok(self, msg: dict[str, Any]) -> bool:
        # Pending messages are re-checked whenever something arrives: verify each once.
        key = self._id(msg)  # the whole message: a signature is only valid with its body
        return once(_VERIFIED, key, lambda: _signature_valid(msg), _VERIFIED_LIMIT)

    def add(self, kind: str, msg: Json) -> bool:
        """Validate and store a message of ``kind`` (poet, atx, proposal, vote, certificate,
        malfeasance).

        Returns False for an invalid message (or an ineligible proposal: stored, so that
        the decisions stay a function of the set of messages, but not worth relaying),
        True when it was stored or is waiting for a dependency (both are worth relaying).
        """
        self._adding = True
        try:
            try:
                verdict = self._check(kind, msg)
            except (KeyError, TypeError, ValueError, AttributeError):
                return False
            if verdict is False:
                return False
            if verdict is None:
                self._hold(self._id(msg), kind, msg)
                return True
            self._store(kind, msg)
            self._drain()
        finally:
            self._adding = False
            self._id_memo = None  # the caller may change the message once it is handled
        if kind == "proposal":
            return self.ballot_weight(msg) > 0
        return True

    def waiting_since(self, layer: int) -> bool:
        """Whether a message of ``layer`` or later is held until what it refers to arrives
        (a proposal's or vote's ATX; an ATX's PoET proof: ATXs for ``layer``'s epoch or
        later). Older ones may wait for good, on a dependency nobody holds."""
        epoch = self.params.epoch(layer)
        for kind, msg in self._pending.values():
            try:
                recent = (
                    int(msg["target_epoch"]) >= epoch if kind == "atx" else int(msg["layer"]) >= layer
                )
            except (KeyError, TypeError, ValueError):
                continue
            if recent:
                return True
        return False

    @staticmethod
    def _dependency(kind: str, msg: dict[str, Any]) -> tuple[Any, ...]:
        """What a pending message waits for: its ATX (a proposal, a vote) or its PoET proof
        (an ATX), as `_store` names what it stores."""
        if kind == "atx":
            return ("poet", str(msg["poet"]["key"]), int(msg["poet"]["round"]))
        return ("atx", msg["atx"])

    def _hold(self, mid: str, kind: str, msg: dict[str, Any]) -> None:
        if mid in self._pending:
            return
        self._pending[mid] = (kind, msg)
        self._waiting[self._dependency(kind, msg)][mid] = None
        if len(self._pending) > PENDING_LIMIT:
            old = next(iter(self._pending))
            old_kind, old_msg = self._pending.pop(old)
            self._unwait(self._dependency(old_kind, old_msg), old)

    def _unwait(self, dependency: tuple[Any, ...], mid: str) -> None:
        waiters = self._waiting.get(dependency)
        if waiters is not None:
            waiters.pop(mid, None)
            if not waiters:
                del self._waiting[dependency]

    def _drain(self) -> None:
        """Check again the messages waiting for what was just stored (and so on)."""
        while self._arrived:
            for mid in self._waiting.pop(self._arrived.pop(), {}):
                held = self._pending.pop(mid, None)
                if held is None:
                    continue  # dropped for a newer one while this drain ran
                kind, msg = held
                try:
                    verdict = self._check(kind, msg)
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue  # malformed past its dependency: invalid, as in `add`
                if verdict is None:  # waits for something else now
                    self._hold(mid, kind, msg)
                elif verdict:
                    self._store(kind, msg)

    def _check(self, kind: str, msg: Any) -> bool | None:
        """True valid, False invalid, None waiting for a dependency."""
        if kind == "poet":
            if (msg["service_pubkey"], int(msg["round"])) in self.poet_proofs:
                return True
            return verify_poet_proof(msg, self.poet_keys) is None
        if kind == "atx":
            return self._check_atx(msg)
        if kind in ("proposal", "vote"):
            atx = self.atxs.get(msg["atx"])
            layer = int(msg["layer"])
            if atx is None:
                return None if self._sig_ok(msg) else False
            if atx["smesher"] != msg["smesher"] or atx["target_epoch"] != self.params.epoch(layer):
                return False
            if not self._sig_ok(msg):
                return False
            if kind == "proposal":
                return isinstance(msg["opinion"], dict) and _tx_ids_ok(msg.get("txs", []))
            return isinstance(msg["proposals"], list)
        if kind == "certificate":
            layer = int(msg["layer"])
            block = msg["block"]
            if int(block["layer"]) != layer or not msg["votes"]:
                return False
            if any("proposals" in vote for vote in msg["votes"]):
                return False  # a certificate's votes name its block's proposals
            for vote in certificate_votes(msg):
                if int(vote["layer"]) != layer:
                    return False
                if self._id(vote) not in self.votes and not self._sig_ok(vote):
                    return False
            return True
        if kind == "malfeasance":
            return self.malfeasance and check_proof(msg, self._sig_ok) is not None
        return False

    def _check_atx(self, atx: dict[str, Any]) -> bool | None:
        poet = atx["poet"]
        proof = self.poet_proofs.get((str(poet["key"]), int(poet["round"])))
        if proof is None:
            return None if self._sig_ok(atx) else False
        if not self._sig_ok(atx):
            return False
        if int(atx["num_units"]) < 1 or int(atx["target_epoch"]) < 1:
            return False
        key = (self._id(atx), str(proof["statement"]), int(proof["leaf_count"]),
               self.params.labels_per_unit, self.params.pow_bits)  # fmt: skip
        return once(
            _ATX_PROOFS, key, lambda: _atx_proofs_valid(atx, proof, self.params), _VERIFIED_LIMIT
        )

    def _store(self, kind: str, msg: dict[str, Any]) -> None:
        mid = self._id(msg)
        self.version += 1
        if kind == "malfeasance":
            self._convict(msg)
            return
        once = conflict_key(kind, msg)
        if once is not None:
            first = self._signed_once.setdefault(once, msg)
            if first is not msg and first != msg and self.malfeasance:
                self._convict(make_proof(kind, first, msg))
        if kind == "poet":
            self.poet_proofs[(msg["service_pubkey"], int(msg["round"]))] = msg
            self._arrived.append(("poet", str(msg["service_pubkey"]), int(msg["round"])))
        elif kind == "atx":
            key = (msg["smesher"], int(msg["target_epoch"]))
            # One ATX per smesher and epoch; of two, the smaller id wins on every node.
            old = self._atx_by_smesher_epoch.get(key)
            if old is not None and old < mid:
                return
            if old is not None:
                del self.atxs[old]
            self.atxs[mid] = msg
            self._arrived.append(("atx", mid))
            self._atx_by_smesher_epoch[key] = mid
            self._atx_index[key[1]][key[0]] = mid
            # A new ATX changes its epoch's weights and the next epoch's beacon; a replaced
            # one may be named anywhere (rare: an equivocation), so everything is redone.
            self._changed_weights(None if old is not None else key[1])
        elif kind == "proposal":
            self.proposals[mid] = msg
            self._proposals_by_layer[int(msg["layer"])][mid] = msg
            # Its votes reach back ``window`` layers.
            self._dirty_from = min(self._dirty_from, int(msg["layer"]) - self.params.window)
        elif kind == "vote":
            self.votes[mid] = msg
            self._votes_by_layer[int(msg["layer"])][mid] = msg
        elif kind == "certificate":
            self.certificates[mid] = msg
            self._certs_by_layer[int(msg["layer"])].append(msg)
            self._dirty_from = min(self._dirty_from, int(msg["layer"]))
            self._cert_blocks.setdefault(hash_json(msg["block"]), msg["block"])

    def _convict(self, proof: dict[str, Any]) -> None:
        verdict = check_proof(proof, self._sig_ok)
        if verdict is None:
            return
        smesher = verdict[0]
        old = self.malicious.get(smesher)
        if old is None or hash_json(proof) < hash_json(old):
            self.malicious[smesher] = proof
            self.version += 1
            self._changed_weights(None)
            if old is None:
                self.new_proofs.append(proof)

    def _changed_weights(self, epoch: int | None) -> None:
        """The ATXs of ``epoch`` changed (None: anything may have)."""
        self._gen += 1
        if epoch is None:
            self._all_gen += 1
            self._dirty_from = 0
            self._epochs.clear()
            self._ballot_weights.clear()
            self._seats.clear()
            return
        for e in (epoch, epoch + 1):
            self._epoch_gen[e] += 1
            self._epochs.pop(e, None)
            self._ballot_weights.pop(e, None)
            self._seats.pop(e, None)
        first = self.params.first_layer(epoch) - self.params.window - 1
        self._dirty_from = min(self._dirty_from, first)

    # -- eligibility ---------------------------------------------------------------------

    def epoch_info(self, epoch: int) -> EpochInfo:
        """Beacon, weights and proposal slots of ``epoch`` (cached until an ATX arrives)."""
        info = self._epochs.get(epoch)
        if info is None:
            info = self._epochs[epoch] = self._epoch_info(epoch)
        return info

    def _epoch_info(self, epoch: int) -> EpochInfo:
        atx_of = dict(self._atx_index.get(epoch, {}))
        previous = list(self._atx_index.get(epoch - 1, {}).values())
        weight = {s: int(self.atxs[i]["num_units"]) for s, i in atx_of.items()}
        total = sum(weight.values())
        lpe = self.params.layers_per_epoch
        seed = beacon(epoch, previous)
        slots = {
            s: num_slots(w, total, self.params.proposals_per_layer, lpe) for s, w in weight.items()
        }
        return EpochInfo(seed, total, atx_of, weight, slots, epoch, lpe)

    def eligibilities(self, epoch: int) -> dict[str, int]:
        """Smesher -> proposal slots in ``epoch``; convicted identities have none."""
        info = self.epoch_info(epoch)
        return {s: n for s, n in info.slots.items() if not self.is_malicious(s)}

    def is_malicious(self, smesher: str) -> bool:
        """Whether a proof convicts ``smesher`` (never, for a node that skips the rule)."""
        return self.malfeasance and smesher in self.malicious

    def eligible_count(self, smesher: str, layer: int) -> int:
        """How many of its slots ``smesher`` holds in ``layer`` (0: it may not propose)."""
        info = self.epoch_info(self.params.epoch(layer))
        counts = info.counts(smesher)
        if counts is None or self.is_malicious(smesher):
            return 0
        return counts[layer % self.params.layers_per_epoch]

    def ballot_weight(self, proposal: dict[str, Any], pid: str | None = None) -> int:
        """The weight (x SCALE) a proposal's votes carry; 0 when it is not eligible.
        ``pid``: the proposal's id when the caller knows it (then the weight is cached)."""
        if pid is None:
            return self._ballot_weight(proposal)
        cache = self._ballot_weights[self.params.epoch(int(proposal["layer"]))]
        weight = cache.get(pid)
        if weight is None:
            weight = cache[pid] = self._ballot_weight(proposal)
        return weight

    def _ballot_weight(self, proposal: dict[str, Any]) -> int:
        smesher, layer = str(proposal["smesher"]), int(proposal["layer"])
        info = self.epoch_info(self.params.epoch(layer))
        if info.atx_of.get(smesher) != proposal["atx"]:
            return 0
        count = self.eligible_count(smesher, layer)
        return ballot_weight(info.weight[smesher], count, info.slots[smesher]) if count else 0

    def hare_seats(self, layer: int, smesher: str) -> int:
        """``smesher``'s seats on ``layer``'s hare committee (0: it does not vote)."""
        cache = self._seats[self.params.epoch(layer)]
        seats = cache.get((layer, smesher))
        if seats is None:
            seats = cache[(layer, smesher)] = self._hare_seats(layer, smesher)
        return seats

    def _hare_seats(self, layer: int, smesher: str) -> int:
        info = self.epoch_info(self.params.epoch(layer))
        weight = info.weight.get(smesher, 0)
        if not weight or self.is_malicious(smesher):
            return 0
        return hare_seats(info.beacon, layer, smesher, weight, info.total, self.params.committee)

    # -- queries -----------------------------------------------------------------------

    def atx_weight(self, atx_id: str) -> int:
        """Units of a known ATX (0 when unknown)."""
        atx = self.atxs.get(atx_id)
        return int(atx["num_units"]) if atx is not None else 0

    def atxs_for_epoch(self, epoch: int) -> dict[str, dict[str, Any]]:
        """ATXs that make their smeshers active in ``epoch``."""
        return {i: self.atxs[i] for i in self.epoch_info(epoch).atx_of.values()}

    def epoch_weight(self, epoch: int) -> int:
        """Total units of the epoch's ATXs."""
        return self.epoch_info(epoch).total

    def _layer_key(self, layer: int) -> tuple[int, int, int]:
        """What a layer's cached proposal-derived values depend on."""
        epoch = self.params.epoch(layer)
        return (
            self._all_gen,
            self._epoch_gen.get(epoch, 0),
            len(self._proposals_by_layer.get(layer, ())),
        )

    @property
    def generation(self) -> int:
        """Changes whenever an ATX is stored or replaced or an identity is convicted."""
        return self._gen

    def epoch_stamp(self, epoch: int) -> tuple[int, int]:
        """Changes whenever `atxs_for_epoch` may have: an ATX targeting the epoch is stored
        (or anything that changes every epoch: a replaced ATX, a conviction)."""
        return (self._all_gen, self._epoch_gen.get(epoch, 0))

    def layer_stamp(self, layer: int) -> tuple[int, int, int, int]:
        """Changes whenever the layer's eligible proposals or certificates may have (the
        weights' generation, the counts of its proposals and certificates)."""
        return (*self._layer_key(layer), len(self._certs_by_layer.get(layer, ())))

    def layer_proposals(self, layer: int) -> dict[str, dict[str, Any]]:
        """Eligible proposals of a layer from identities not convicted, by id."""
        return dict(self._eligible_proposals(layer))

    def _eligible_proposals(self, layer: int) -> dict[str, dict[str, Any]]:
        key = self._layer_key(layer)
        cached = self._eligible.get(layer)
        if cached is None or cached[0] != key:
            found = {
                i: p
                for i, p in self._proposals_by_layer.get(layer, {}).items()
                if self.ballot_weight(p, i)
            }
            cached = self._eligible[layer] = (key, found)
        return cached[1]

    def layer_votes(self, layer: int) -> list[dict[str, Any]]:
        """Valid hare votes of a layer."""
        return list(self._votes_by_layer.get(layer, {}).values())

    def hare_votes(self, layer: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The layer's hare votes a tally counts, one per voter with seats (the smaller id:
        a second is an equivocation), none naming a compact id twice (a forged collision),
        and each voter's seats."""
        votes: dict[str, dict[str, Any]] = {}
        seats: dict[str, int] = {}
        for _, vote in sorted(self._votes_by_layer.get(layer, {}).items()):
            voter, names = str(vote["smesher"]), vote["proposals"]
            if voter in votes or len(set(names)) < len(names):
                continue
            if weight := self.hare_seats(layer, voter):
                votes[voter], seats[voter] = vote, weight
        return list(votes.values()), seats

    def hare_output(self, layer: int) -> list[str]:
        """What the votes held for ``layer`` certify (`hare_output`), by compact id."""
        votes, seats = self.hare_votes(layer)
        known = {compact_id(i) for i in self._eligible_proposals(layer)}
        return hare_output(votes, seats, self.hare_needed(layer), known)

    def layer_certificates(self, layer: int) -> list[dict[str, Any]]:
        """Stored hare certificates of a layer."""
        return list(self._certs_by_layer.get(layer, []))

    def hare_needed(self, layer: int) -> float:
        """The seats a certificate's votes must exceed (0: nobody is active)."""
        total = self.epoch_weight(self.params.epoch(layer))
        return self.params.hare_threshold * min(self.params.committee, total)

    def certified_block(self, layer: int) -> dict[str, Any] | None:
        """The hare's output: the certified block whose voters hold enough seats."""
        certs = self._certs_by_layer.get(layer, [])
        key = (*self._layer_key(layer)[:2], len(certs))
        cached = self._certified.get(layer)
        if cached is not None and cached[0] == key:
            return cached[1]
        needed = self.hare_needed(layer)
        best: tuple[str, dict[str, Any]] | None = None
        for cert in certs:
            voters: dict[str, int] = {}
            for vote in cert["votes"]:
                # A vote counts with its smesher's ATX for the layer's epoch, as a hare
                # vote on its own must (so only that epoch's ATXs matter here).
                atx = self.atxs.get(vote["atx"])
                if (
                    atx is not None
                    and atx["smesher"] == vote["smesher"]
                    and atx["target_epoch"] == self.params.epoch(layer)
                ):
                    voters[vote["smesher"]] = self.hare_seats(layer, vote["smesher"])
            if needed and sum(voters.values()) > needed:
                block_id = hash_json(cert["block"])
                if best is None or block_id < best[0]:
                    best = (block_id, cert["block"])
        block = best[1] if best is not None else None
        self._certified[layer] = (key, block)
        return block

    def _opinions_of(self, later: int) -> dict[int, dict[str, int]]:
        """What the eligible ballots of layer ``later`` vote: earlier layer -> block id ->
        weight (x SCALE), summed over the layer's ballots (cached per layer)."""
        key = self._layer_key(later)
        cached = self._opinions.get(later)
        if cached is None or cached[0] != key:
            votes: dict[int, dict[str, int]] = {}
            for pid, proposal in self._proposals_by_layer.get(later, {}).items():
                weight = self.ballot_weight(proposal, pid)
                if not weight:
                    continue
                for layer_key, vote in proposal["opinion"].items():
                    if not isinstance(vote, str):
                        continue
                    try:
                        layer = int(layer_key)
                    except (TypeError, ValueError):
                        continue
                    if str(layer) != layer_key:
                        continue  # "007" is not how layer 7 is named: the old tally skipped it
                    per_block = votes.setdefault(layer, {})
                    per_block[vote] = per_block.get(vote, 0) + weight
            cached = self._opinions[later] = (key, votes)
        return cached[1]

    def _tortoise(self, layer: int, current: int) -> tuple[dict[str, int], bool]:
        """The weight (x SCALE) of the votes on each block of ``layer`` from the layers after
        it up to ``current``, and whether the heaviest block crossed the threshold: over
        the layers from ``layer + 1`` to some layer past hdist, its margin exceeds
        ``tortoise_threshold`` of the weight those layers are expected to carry (or none is
        expected: nobody was active). Checking every such prefix keeps a verified layer
        verified while the next layer's ballots are still arriving."""
        tally: dict[str, int] = {}
        expected = 0
        crossed = False
        params = self.params
        lpe = params.layers_per_epoch
        for later in range(layer + 1, min(current, layer + params.window) + 1):
            expected += self.epoch_info(params.epoch(later)).total * SCALE // lpe
            votes = self._opinions_of(later).get(layer)
            if votes:
                for block_id, weight in votes.items():
                    tally[block_id] = tally.get(block_id, 0) + weight
            if later >= layer + params.hdist and not crossed:
                top = max(tally.values(), default=0)
                margin = 2 * top - sum(tally.values())
                crossed = expected == 0 or margin > params.tortoise_threshold * expected
        return tally, crossed

    def _decision(
        self, layer: int, current_layer: int
    ) -> tuple[LayerStatus, str, dict[str, Any] | None] | None:
        """Status, block id and block of one layer (None: undecided). A block voted for is
        looked up among the certified blocks (None until its certificate arrives)."""
        params = self.params
        mature = layer + params.hdist <= current_layer
        tally, crossed = self._tortoise(layer, current_layer) if mature else ({}, False)
        final = crossed or layer + params.window < current_layer
        if tally:
            block_id = min(tally, key=lambda b: (-tally[b], b))
            block = self._cert_blocks.get(block_id) if block_id else None
            return (LayerStatus.VERIFIED if final else LayerStatus.APPLIED), block_id, block
        if (certified := self.certified_block(layer)) is not None:
            # Past hdist with no votes to overturn it, the hare's output is final then.
            status = LayerStatus.VERIFIED if mature and final else LayerStatus.APPLIED
            return status, hash_json(certified), certified
        if mature:
            return (LayerStatus.VERIFIED if final else LayerStatus.APPLIED), EMPTY_BLOCK, None
        return None

    def decide(self, current_layer: int) -> list[LayerState]:
        """Decided layers 0..n (n <= current_layer), stopping at the first undecided one.

        Past hdist the tortoise decides: the heaviest block by the later ballots' votes,
        verified only when its margin over the rest exceeds ``tortoise_threshold`` of the
        weight expected from the voting layers (so one vote cannot flip it), or once the
        layer is older than the vote window (nothing more will be counted), or when no
        weight is expected at all (nobody active). A mature layer short of the threshold
        is applied with the tortoise's block and stays open. A mature layer no ballot
        votes on gets the hare's block, or else none (go-spacemesh: a layer the hare did
        not certify is empty). A younger layer is decided only by a certificate.

        Incremental: the ballots' votes, eligible proposals and certified blocks are
        cached per layer (recomputed only when the layer gains a message or the weights
        change), and the hash chain is reused up to the first layer whose decision changed;
        the result is the same as deciding from scratch over the same messages.
        """
        result: list[LayerState] = []
        old = self._chain
        prev_hash = bytes(32)
        diverged = False  # from the first changed decision on, nothing old is reused
        # Below ``settled`` nothing a decision depends on changed since the last call: no
        # message of its layer or of the layers that vote on it, the same weights, and a
        # current layer past its window both times (so it no longer depends on it).
        last = current_layer if self._decided_at is None else self._decided_at
        settled = min(self._dirty_from, min(last, current_layer) - self.params.window - 1)
        for layer in range(current_layer + 1):
            if layer < settled and layer < len(old):
                result.append(old[layer])
                prev_hash = old[layer].hash
                continue
            decision = self._decision(layer, current_layer)
            if decision is None:
                break
            status, block_id, block = decision
            kept = old[layer] if not diverged and layer < len(old) else None
            if kept is not None and kept.block_id == block_id and kept.block == block:
                # Same block on the same chain: the same hash.
                same = kept.status is status
                result.append(kept if same else dataclasses.replace(kept, status=status))
                prev_hash = kept.hash
                continue
            diverged = True
            prev_hash = h(b"layer", prev_hash, layer, block_id)
            # The node's ledger (`_state.Ledger`) executes the layer and sets its state root.
            result.append(LayerState(layer, status, block_id, block, prev_hash, b""))
        self._chain = result
        self._dirty_from, self._decided_at = _NOTHING_CHANGED, current_layer
        return list(result)


def opinion_for(states: list[LayerState], mesh: Mesh, layer: int) -> dict[str, str]:
    """What a proposal in ``layer`` votes on the ``window`` layers before it: each decided
    layer's block (empty included), else a younger layer's certified block, else nothing.
    Without a certificate, as go-spacemesh, a ballot never votes for a block of its own
    making: each node would name the proposals it happened to see, and under load the
    votes on a layer split over dozens of blocks. On the last layer it abstains while its
    hare may still certify it: the votes it holds already certify a block, whose
    certificate may be on its way (a second tally runs at 75 % of the next layer). When
    they do not, it votes the layer empty at once, as go-spacemesh votes against every
    block of a layer whose hare ended without output: had it abstained, a layer whose next
    epoch has no ATX (no ballots) would stay unverified until its window passed."""
    decided = {s.number: s.block_id for s in states}
    opinion: dict[str, str] = {}
    for earlier in range(max(0, layer - mesh.params.window), layer):
        if earlier in decided:
            opinion[str(earlier)] = decided[earlier]
        elif (certified := mesh.certified_block(earlier)) is not None:
            opinion[str(earlier)] = hash_json(certified)
        elif not mesh.hare_output(earlier):
            opinion[str(earlier)] = EMPTY_BLOCK  # no certificate can come of the votes held
    return opinion
