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
from ._keys import Signer, verify_signature
from ._merkle import merkle_root, verify_merkle_proof
from ._poet import verify_poet_proof
from ._post import verify_post

EMPTY_BLOCK = ""
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
    """Fraction of the epoch's ATX weight a certificate's votes must exceed."""
    eligibility: float = 0.8
    """Chance that one unit of ATX weight makes its smesher eligible in a layer."""
    labels_per_unit: int = 16
    pow_bits: int = 6
    certifiers: int = 4
    """Expected number of nodes that publish a layer's hare certificate."""
    committee: int = 50
    """Expected hare committee size (ATXs); with fewer active ATXs every smesher votes."""
    # S2
    genesis_accounts: tuple[tuple[str, int], ...] = ()
    """(address hex, balance) funded before layer 0."""

    def __post_init__(self) -> None:
        if self.layers_per_epoch < 1 or self.hdist < 1 or self.window < self.hdist:
            raise ValueError("need layers_per_epoch >= 1, hdist >= 1, window >= hdist")
        if self.certifiers < 1 or self.committee < 1:
            raise ValueError("certifiers and committee must be >= 1")
        if not 0 < self.hare_threshold < 1 or not 0 < self.eligibility <= 1:
            raise ValueError("hare_threshold must be in (0, 1) and eligibility in (0, 1]")

    def epoch(self, layer: int) -> int:
        """The epoch a layer belongs to."""
        return layer // self.layers_per_epoch


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


# -- message construction -------------------------------------------------------------------


def _signed(body: dict[str, Any], signer: Signer) -> dict[str, Any]:
    return {**body, "sig": signer.sign(canonical(body))}


def _signature_valid(msg: dict[str, Any]) -> bool:
    body = {k: v for k, v in msg.items() if k != "sig"}
    return verify_signature(str(msg["smesher"]), canonical(body), str(msg["sig"]))


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
) -> dict[str, Any]:
    """A signed ATX. ``poet``: key, round, index, leaf_count, path; ``post``: commitment, nonce."""
    body = {
        "smesher": signer.public_hex,
        "target_epoch": target_epoch,
        "prev": prev,
        "poet": poet,
        "post": post,
        "num_units": num_units,
    }
    return _signed(body, signer)


def eligible(params: MeshParams, atx_id: str, layer: int, weight: int) -> bool:
    """Whether an ATX of ``weight`` units may propose in ``layer`` (anyone can check it)."""
    ticket = int.from_bytes(h(b"eligibility", atx_id, layer)[:8], "big") / 2**64
    return ticket < 1 - (1 - params.eligibility) ** weight


def committee_share(params: MeshParams, active: int) -> float:
    """The chance of one ATX to sit on a layer's hare committee, given ``active`` ATXs."""
    return min(1.0, params.committee / active) if active else 1.0


def in_committee(params: MeshParams, atx_id: str, layer: int, active: int) -> bool:
    """Whether an ATX's smesher votes in ``layer``'s hare (anyone can check it)."""
    share = committee_share(params, active)
    if share >= 1.0:
        return True
    return int.from_bytes(h(b"hare-committee", atx_id, layer)[:8], "big") / 2**64 < share


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


def make_vote(signer: Signer, layer: int, atx_id: str, proposals: list[str]) -> dict[str, Any]:
    """A signed hare vote for the set of proposals seen in ``layer``."""
    body = {
        "layer": layer,
        "smesher": signer.public_hex,
        "atx": atx_id,
        "proposals": sorted(proposals),
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
    block = {"layer": layer, "proposals": ids, "rewards": sorted([k, v] for k, v in rewards.items())}
    if txs:
        block["txs"] = txs
    return block


def make_certificate(
    layer: int, block: dict[str, Any], votes: list[dict[str, Any]]
) -> dict[str, Any]:
    """A hare certificate: the block and the votes that certify it."""
    return {"layer": layer, "block": block, "votes": sorted(votes, key=lambda v: v["smesher"])}


# -- the mesh --------------------------------------------------------------------------------


class Mesh:
    """The validated messages of one node and the decisions they imply."""

    def __init__(self, params: MeshParams, poet_keys: set[str] | None = None) -> None:
        self.params = params
        self.poet_keys = poet_keys
        self.poet_proofs: dict[tuple[str, int], dict[str, Any]] = {}
        self.atxs: dict[str, dict[str, Any]] = {}
        self.proposals: dict[str, dict[str, Any]] = {}
        self.votes: dict[str, dict[str, Any]] = {}
        self.certificates: dict[str, dict[str, Any]] = {}
        self._proposals_by_layer: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._votes_by_layer: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._certs_by_layer: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._atx_by_smesher_epoch: dict[tuple[str, int], str] = {}
        self._pending: dict[str, tuple[str, dict[str, Any]]] = {}
        self._signatures: dict[str, bool] = {}
        self.version = 0

    # -- intake ------------------------------------------------------------------------

    def _sig_ok(self, msg: dict[str, Any]) -> bool:
        # Pending messages are re-checked whenever something arrives: verify each once.
        key = hash_json(msg)  # the whole message: a signature is only valid with its body
        known = self._signatures.get(key)
        if known is None:
            known = self._signatures[key] = _signature_valid(msg)
        return known

    def add(self, kind: str, msg: Json) -> bool:
        """Validate and store a message of ``kind`` (poet, atx, proposal, vote, certificate).

        Returns False for an invalid message, True when it was stored or is waiting for a
        dependency (both are worth relaying).
        """
        try:
            verdict = self._check(kind, msg)
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        if verdict is False:
            return False
        if verdict is None:
            self._pending[hash_json(msg)] = (kind, msg)
            return True
        self._store(kind, msg)
        self._drain()
        return True

    def _drain(self) -> None:
        progress = True
        while progress and self._pending:
            progress = False
            for key, (kind, msg) in list(self._pending.items()):
                verdict = self._check(kind, msg)
                if verdict is None:
                    continue
                del self._pending[key]
                if verdict:
                    self._store(kind, msg)
                    progress = True

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
                if not isinstance(msg["opinion"], dict) or not _tx_ids_ok(msg.get("txs", [])):
                    return False
                return eligible(self.params, msg["atx"], layer, int(atx["num_units"]))
            return isinstance(msg["proposals"], list)
        if kind == "certificate":
            layer = int(msg["layer"])
            block = msg["block"]
            if int(block["layer"]) != layer or not msg["votes"]:
                return False
            for vote in msg["votes"]:
                if int(vote["layer"]) != layer or vote["proposals"] != block["proposals"]:
                    return False
                if hash_json(vote) not in self.votes and not self._sig_ok(vote):
                    return False
            return True
        return False

    def _check_atx(self, atx: dict[str, Any]) -> bool | None:
        poet = atx["poet"]
        proof = self.poet_proofs.get((str(poet["key"]), int(poet["round"])))
        if proof is None:
            return None if self._sig_ok(atx) else False
        if not self._sig_ok(atx):
            return False
        smesher, epoch, units = str(atx["smesher"]), int(atx["target_epoch"]), int(atx["num_units"])
        if units < 1 or epoch < 1:
            return False
        challenge = atx_challenge(smesher, epoch, str(atx["prev"]))
        statement = bytes.fromhex(proof["statement"])
        path = [bytes.fromhex(x) for x in poet["path"]]
        if int(poet["leaf_count"]) != int(proof["leaf_count"]) or not verify_merkle_proof(
            statement, challenge, int(poet["index"]), int(poet["leaf_count"]), path
        ):
            return False
        post = atx["post"]
        return verify_post(
            smesher,
            units,
            self.params.labels_per_unit,
            challenge,
            statement,
            bytes.fromhex(post["commitment"]),
            int(post["nonce"]),
            self.params.pow_bits,
        )

    def _store(self, kind: str, msg: dict[str, Any]) -> None:
        mid = hash_json(msg)
        self.version += 1
        if kind == "poet":
            self.poet_proofs[(msg["service_pubkey"], int(msg["round"]))] = msg
        elif kind == "atx":
            key = (msg["smesher"], int(msg["target_epoch"]))
            # One ATX per smesher and epoch; of two, the smaller id wins on every node.
            old = self._atx_by_smesher_epoch.get(key)
            if old is not None and old < mid:
                return
            if old is not None:
                del self.atxs[old]
            self.atxs[mid] = msg
            self._atx_by_smesher_epoch[key] = mid
        elif kind == "proposal":
            self.proposals[mid] = msg
            self._proposals_by_layer[int(msg["layer"])][mid] = msg
        elif kind == "vote":
            self.votes[mid] = msg
            self._votes_by_layer[int(msg["layer"])][mid] = msg
        elif kind == "certificate":
            self.certificates[mid] = msg
            self._certs_by_layer[int(msg["layer"])].append(msg)

    # -- queries -----------------------------------------------------------------------

    def atx_weight(self, atx_id: str) -> int:
        """Units of a known ATX (0 when unknown)."""
        atx = self.atxs.get(atx_id)
        return int(atx["num_units"]) if atx is not None else 0

    def atxs_for_epoch(self, epoch: int) -> dict[str, dict[str, Any]]:
        """ATXs that make their smeshers active in ``epoch``."""
        return {k: a for k, a in self.atxs.items() if a["target_epoch"] == epoch}

    def epoch_weight(self, epoch: int) -> int:
        """Total units of the epoch's ATXs."""
        return sum(int(a["num_units"]) for a in self.atxs_for_epoch(epoch).values())

    def layer_proposals(self, layer: int) -> dict[str, dict[str, Any]]:
        """Valid proposals of a layer, by id."""
        return dict(self._proposals_by_layer.get(layer, {}))

    def layer_votes(self, layer: int) -> list[dict[str, Any]]:
        """Valid hare votes of a layer."""
        return list(self._votes_by_layer.get(layer, {}).values())

    def layer_certificates(self, layer: int) -> list[dict[str, Any]]:
        """Stored hare certificates of a layer."""
        return list(self._certs_by_layer.get(layer, []))

    def local_block(self, layer: int) -> dict[str, Any] | None:
        """The block made of every proposal of the layer known here (None: empty layer)."""
        proposals = list(self._proposals_by_layer.get(layer, {}).values())
        if not proposals:
            return None
        weights = {p["atx"]: self.atx_weight(p["atx"]) for p in proposals}
        return make_block(layer, proposals, weights)

    def hare_needed(self, layer: int) -> float:
        """The committee weight a certificate's votes must exceed (0: nobody is active)."""
        epoch = self.params.epoch(layer)
        share = committee_share(self.params, len(self.atxs_for_epoch(epoch)))
        return self.params.hare_threshold * share * self.epoch_weight(epoch)

    def certified_block(self, layer: int) -> dict[str, Any] | None:
        """The hare's output: the certified block whose voters hold enough weight."""
        needed = self.hare_needed(layer)
        active = len(self.atxs_for_epoch(self.params.epoch(layer)))
        best: tuple[str, dict[str, Any]] | None = None
        for cert in self._certs_by_layer.get(layer, []):
            voters: dict[str, int] = {}
            for vote in cert["votes"]:
                atx = self.atxs.get(vote["atx"])
                if (
                    atx is not None
                    and atx["smesher"] == vote["smesher"]
                    and in_committee(self.params, vote["atx"], layer, active)
                ):
                    voters[vote["smesher"]] = int(atx["num_units"])
            if needed and sum(voters.values()) > needed:
                block_id = hash_json(cert["block"])
                if best is None or block_id < best[0]:
                    best = (block_id, cert["block"])
        return best[1] if best is not None else None

    def _tortoise(self, layer: int) -> dict[str, int]:
        tally: dict[str, int] = defaultdict(int)
        key = str(layer)
        for later in range(layer + 1, layer + self.params.window + 1):
            for proposal in self._proposals_by_layer.get(later, {}).values():
                vote = proposal["opinion"].get(key)
                if isinstance(vote, str):
                    tally[vote] += self.atx_weight(proposal["atx"])
        return tally

    def decide(self, current_layer: int) -> list[LayerState]:
        """Decided layers 0..n (n <= current_layer), stopping at the first undecided one."""
        known_blocks: dict[str, dict[str, Any]] = {}
        for certs in self._certs_by_layer.values():
            for cert in certs:
                known_blocks[hash_json(cert["block"])] = cert["block"]
        result: list[LayerState] = []
        prev_hash = bytes(32)
        balances: dict[str, int] = {}
        for layer in range(current_layer + 1):
            mature = layer + self.params.hdist <= current_layer
            tally = self._tortoise(layer) if mature else {}
            block: dict[str, Any] | None
            if tally:
                block_id = min(tally, key=lambda b: (-tally[b], b))
                local = self.local_block(layer)
                if local is not None:
                    known_blocks.setdefault(hash_json(local), local)
                block = known_blocks.get(block_id) if block_id else None
                status = LayerStatus.VERIFIED
            elif (certified := self.certified_block(layer)) is not None:
                # Past hdist nothing can overturn the hare's output: it is final then too.
                status = LayerStatus.VERIFIED if mature else LayerStatus.APPLIED
                block, block_id = certified, hash_json(certified)
            elif mature:
                block = self.local_block(layer)
                block_id = hash_json(block) if block is not None else EMPTY_BLOCK
                status = LayerStatus.VERIFIED
            else:
                break
            if block is not None:
                for smesher, amount in block["rewards"]:
                    balances[smesher] = balances.get(smesher, 0) + int(amount)
            prev_hash = h(b"layer", prev_hash, layer, block_id)
            root = merkle_root([h(b"account", k, v) for k, v in sorted(balances.items())])
            result.append(LayerState(layer, status, block_id, block, prev_hash, root))
        return result


def opinion_for(states: list[LayerState], mesh: Mesh, layer: int) -> dict[str, str]:
    """What a proposal in ``layer`` votes on the ``window`` layers before it."""
    decided = {s.number: s.block_id for s in states}
    opinion: dict[str, str] = {}
    for earlier in range(max(0, layer - mesh.params.window), layer):
        if earlier in decided:
            opinion[str(earlier)] = decided[earlier]
        else:
            local = mesh.local_block(earlier)
            opinion[str(earlier)] = hash_json(local) if local is not None else EMPTY_BLOCK
    return opinion
