"""A node's protocol logic: layer clock, smeshing (PoET, PoST, ATX), proposals, hare, tortoise."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from typing import Any

import anyio
import structlog

from ._checkpoint import load_checkpoint, make_checkpoint
from ._clock import Clock
from ._codec import Json, decode, h, hash_json
from ._eligibility import is_certifier
from ._gossip import Gossip
from ._keys import Signer
from ._merkle import merkle_proof
from ._mesh import (
    LayerState,
    LayerStatus,
    Mesh,
    MeshParams,
    atx_challenge,
    compact_id,
    hare_output,
    make_atx,
    make_block,
    make_certificate,
    make_proposal,
    make_vote,
    opinion_for,
)
from ._metrics import NodeMetrics
from ._poet_client import PoetClient
from ._post import MAX_LABELS, post_commitment, prove_post
from ._state import Account, Base, Ledger, genesis_accounts
from ._store import FLUSH_S, Store
from ._sync import Syncer
from ._trace import Tracer
from ._transport import Transport
from ._txs import Mempool, parse_tx

TOPICS = ("poet", "atx", "proposal", "hare", "certificate", "malfeasance")
_KIND = {
    "poet": "poet",
    "atx": "atx",
    "proposal": "proposal",
    "hare": "vote",
    "certificate": "certificate",
    "malfeasance": "malfeasance",
}

_log = structlog.get_logger("spacemesh.node")


@dataclasses.dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything one node needs; ``identity`` seeds its key, ``seed`` its randomness."""

    identity: str
    listen: str
    genesis: float
    layer_duration: float = 2.0
    mesh: MeshParams = dataclasses.field(default_factory=MeshParams)
    bootnodes: tuple[str, ...] = ()
    smeshing: bool = True
    num_units: int = 1
    target_peers: int = 6
    poet_keys: tuple[str, ...] = ()
    """Trusted PoET service keys; empty trusts any correctly signed proof."""
    outputs: str | None = None
    seed: int = 0
    hare_vote_at: float = 0.4
    hare_cert_at: float = 0.75
    data_dir: str | None = None
    """SQLite persistence directory; None keeps everything in memory (the simulation)."""
    checkpoint: str | None = None
    """A checkpoint file to recover from (accounts and ATXs at its layer)."""
    honest_malfeasance: bool = True
    """False: a node that skips the malfeasance rule (builds and accepts no proofs)."""
    clock_tolerance: float = 0.5
    """Layers by which a message may be early (its sender's clock ahead of ours) and
    still be accepted; later ones are dropped, as go-spacemesh drops early messages."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.layer_duration) and self.layer_duration > 0):
            raise ValueError(f"layer_duration must be > 0 seconds, not {self.layer_duration!r}")
        if not math.isfinite(self.genesis):
            raise ValueError(f"genesis must be a finite time, not {self.genesis!r}")
        if not 1 <= self.num_units * self.mesh.labels_per_unit <= MAX_LABELS:
            raise ValueError(f"num_units must be 1 to {MAX_LABELS // self.mesh.labels_per_unit}"
                             f" ({self.mesh.labels_per_unit} labels each), not {self.num_units}")
        for key in self.poet_keys:
            if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
                raise ValueError(f"a PoET key is 64 lowercase hex digits, not {key!r}")
        if not 0 < self.hare_vote_at < self.hare_cert_at < 1:
            raise ValueError("need 0 < hare_vote_at < hare_cert_at < 1")
        if not (math.isfinite(self.clock_tolerance) and self.clock_tolerance >= 0):
            raise ValueError(f"clock_tolerance must be >= 0 layers, not {self.clock_tolerance!r}")


def dial_backoff(layer_duration: float) -> float:
    """Seconds a node leaves alone an address that refused it: two layers, within 1-10 s.

    libp2p backs a failed dial off for seconds, which go-spacemesh's five-minute layers never
    notice. A test network's layers last 1-8 s: a fixed 10 s kept the two sides of a healed
    cut, or nodes restarted into it, apart for many layers."""
    return min(10.0, max(1.0, 2 * layer_duration))


class Node:
    """One node. ``run()`` serves until cancelled; the API adapters read its state."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        transport: Transport,
        clock: Clock,
        poets: list[PoetClient] | None = None,
        metrics: bool = True,
    ) -> None:
        """With ``metrics=False`` the node keeps no Prometheus series (`metrics` is None):
        a simulation, which nobody scrapes, saves their cost on every frame."""
        self.config = config
        self._clock = clock
        self._poets = list(poets or [])
        self.signer = Signer(config.identity)
        # Not the key alone: two miners may share one identity (an equivocation test).
        self.node_id = h(b"node", self.signer.public_hex, config.listen).hex()[:16]
        self.metrics = NodeMetrics() if metrics else None
        self.tracer = Tracer(config.outputs)
        self._protocol: anyio.CancelScope | None = None  # run's, once running
        self.mesh = Mesh(
            config.mesh, set(config.poet_keys) or None, malfeasance=config.honest_malfeasance
        )
        self.gossip = Gossip(
            node_id=self.node_id,
            listen_address=config.listen,
            transport=transport,
            clock=clock,
            rng=random.Random(f"{config.seed}/{config.identity}"),
            bootnodes=list(config.bootnodes),
            target_peers=config.target_peers,
            backoff=dial_backoff(config.layer_duration),
            tracer=self.tracer,
            metrics=self.metrics,
        )
        for topic in TOPICS:
            self.gossip.subscribe(topic, self._handler(_KIND[topic]))
        self.gossip.set_sync(self._sync_digests, self._sync_holdings)
        self.atxs_published = 0
        self.layers_done = -1
        """The last layer the layer loop went through to its end (a frozen or dead node's
        stays where it was)."""
        self.last_error = ""
        self.last_poet_round = 0
        self._proof_arrived = anyio.Event()
        self._atx_for_epoch: dict[int, str] = {}
        self._cache: tuple[tuple[int, ...], list[LayerState]] | None = None
        self._log = _log.bind(node=self.node_id)
        self._challenge = ""
        self._logged_layers: dict[int, tuple[LayerStatus, str]] = {}
        self._verified_logged: set[int] = set()
        self._init_state()
        self._proofs_received: dict[str, float] = {}

    # -- clock -----------------------------------------------------------------------------

    def layer_at(self, t: float) -> int:
        """The layer in progress at time ``t`` (0 before genesis)."""
        return max(0, math.floor((t - self.config.genesis) / self.config.layer_duration))

    def current_layer(self) -> int:
        """The clock's layer."""
        return self.layer_at(self._clock.now())

    def layer_start(self, layer: int) -> float:
        """When ``layer`` begins."""
        return self.config.genesis + layer * self.config.layer_duration

    # -- state for the API -----------------------------------------------------------------

    @property
    def smesher_id(self) -> str:
        """The node's public key (hex)."""
        return self.signer.public_hex

    def layers(self) -> list[LayerState]:
        """Decided layers up to the current one (cached until something changes). Each new
        answer is logged before anyone reads it, so the log never lags the API."""
        key = (self.mesh.version, self.current_layer(), len(self.mempool.txs))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._apply_state(self.mesh.decide(key[1])))
            self._log_layers(self._cache[1])
        return self._cache[1]

    def status(self) -> dict[str, Any]:
        """What ``NodeService.Status`` reports."""
        states = self.layers()
        applied = states[-1].number if states else 0
        verified = 0
        for s in states:
            if s.status is not LayerStatus.VERIFIED:
                break
            verified = s.number
        top = self.current_layer()
        return {
            "connected_peers": self.gossip.peer_count,
            "is_synced": bool(states) and applied + self.config.mesh.hdist >= top,
            "synced_layer": applied,
            "top_layer": top,
            "verified_layer": verified,
            "applied_layer": applied,
            "node_id": self.node_id,
        }

    # -- gateway ---------------------------------------------------------------------------

    def broadcast_poet(self, data: bytes) -> tuple[bool, str]:
        """Validate a PoET proof handed over by the PoET and gossip it."""
        try:
            proof = decode(data)
        except ValueError as exc:
            return False, f"proof is not JSON: {exc}"
        before = len(self.mesh.poet_proofs)
        if not self.mesh.add("poet", proof):
            return False, "invalid PoET proof"
        self._proof_stored(before, proof, "poet")
        self.gossip.publish("poet", proof)
        return True, ""

    # -- running ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Gossip, the layer loop and (when smeshing) the smeshing loop, until cancelled."""
        self._log.info(
            "node started",
            role="miner" if self.config.smeshing else "gateway",
            address=self.config.listen,
            bootnodes=list(self.config.bootnodes),
            poets=[p.address for p in self._poets],
        )
        try:
            async with anyio.create_task_group() as tg:
                self._protocol = tg.cancel_scope
                await tg.start(self.gossip.run)
                tg.start_soon(self._layer_loop)
                if self.config.smeshing:
                    tg.start_soon(self._smeshing_loop)
                if self.store is not None:
                    tg.start_soon(self._commit_loop, self.store)
                task_status.started()
        finally:
            self.tracer.close()
            self._close_state()

    def stop(self) -> None:
        """End `run`: no more gossip, layers or smeshing. The API adapters go on answering
        from the state the node holds."""
        if self._protocol is not None:
            self._protocol.cancel()

    def _handler(self, kind: str) -> Any:
        def handle(data: Json) -> bool | None:
            if kind in ("proposal", "vote", "certificate") and self._too_early(data):
                return None  # deferred: gossip offers it again as the clock moves on
            before = len(self.mesh.atxs)
            proofs = len(self.mesh.poet_proofs)
            ok = self.mesh.add(kind, data)
            self._persist(kind, data, ok)
            if self.mesh.new_proofs:
                self._publish_proofs()
            if len(self.mesh.atxs) > before and self.metrics is not None:
                self.metrics.atxs.inc(len(self.mesh.atxs) - before)
            if ok and kind == "poet":
                self._proof_stored(proofs, data, "gossip")
                self._proof_arrived.set()
                self._proof_arrived = anyio.Event()
            return ok

        return handle

    def _proof_stored(self, before: int, proof: Json, source: str) -> None:
        new = len(self.mesh.poet_proofs) > before
        # A copy gossip brings is not worth a line; the PoET's own hand-off to a gateway
        # is, even when gossip from another gateway brought the proof first.
        if new or source == "poet":
            self._log.info(
                "poet proof received",
                round=int(proof["round"]),
                poet=str(proof["service_pubkey"])[:16],
                members=int(proof["leaf_count"]),
                mine=self._challenge in proof["members"],
                source=source,
                new=new,
            )

    async def _layer_loop(self) -> None:
        layer = self.current_layer()
        duration = self.config.layer_duration
        while True:
            start = self.layer_start(layer)
            await self._clock.sleep_until(start)
            self.gossip.retry_deferred()
            self.gossip.request_sync()
            self.layers()  # decides (and logs) what changed since the last layer
            self._propose(layer)
            await self._clock.sleep_until(start + self.config.hare_vote_at * duration)
            self._vote(layer)
            await self._clock.sleep_until(start + self.config.hare_cert_at * duration)
            self.gossip.retry_deferred()  # the next layer's early messages may be due now
            if self._lacks_messages():
                self.gossip.request_sync()  # a second exchange: another peer may hold them
            # Votes or proposals that came after the last tally (a loaded network) get a
            # second one a layer later: one tally at 75 % would leave the layer to the
            # tortoise, and a node that lags keeps lagging.
            # Twice as many certifiers then: one drawn the first time may be down.
            certifiers = self.config.mesh.certifiers
            if layer > 0 and self.mesh.certified_block(layer - 1) is None:
                self._certify(layer - 1, 2 * certifiers)
            self._certify(layer, certifiers)
            self._update_metrics()
            self._check_hare(layer - 1)
            self.layers_done = layer
            layer += 1

    def _lacks_messages(self) -> bool:
        """Whether the node knows it misses messages that peers hold: some of the last
        window wait for an ATX it lacks, or the ballots vote for a block of the window
        whose certificate it lacks (one exchange a layer with a random peer can take
        several layers to bring them after a partition heals)."""
        window = self.config.mesh.window
        if self.mesh.waiting_since(self.current_layer() - window):
            return True
        recent = self.layers()[-window:]
        return any(s.block_id and s.block is None for s in recent)

    def _log_layers(self, states: list[LayerState]) -> None:
        """A line when a layer is first verified; a warning when a decided layer's block
        changes."""
        params = self.config.mesh
        for s in states[max(0, len(states) - params.window - params.hdist - 1) :]:
            logged = self._logged_layers.get(s.number)
            if logged == (s.status, s.block_id):
                continue
            self._logged_layers[s.number] = (s.status, s.block_id)
            hash_prefix = s.hash.hex()[:12]
            if logged is not None and logged[1] != s.block_id:
                self._log.warning(
                    "layer hash changed",
                    layer=s.number,
                    block_was=logged[1][:12] or "empty",
                    block=s.block_id[:12] or "empty",
                    hash=hash_prefix,
                    status=s.status.name.lower(),
                )
            if s.status is LayerStatus.VERIFIED:
                # Once: a layer that is decided again later (its block changed: warned
                # above) or verified anew after a heal is not a new line.
                if s.number not in self._verified_logged:
                    self._verified_logged.add(s.number)
                    certified = self.mesh.certified_block(s.number)
                    agreed = certified is not None and hash_json(certified) == s.block_id
                    self._log.info(
                        "layer verified",
                        layer=s.number,
                        hash=hash_prefix,
                        block=s.block_id[:12] or "empty",
                        via="hare" if agreed else "tortoise",
                    )
            elif logged is None:
                self._log.debug("layer applied", layer=s.number, hash=hash_prefix)

    def _check_hare(self, layer: int) -> None:
        """Warn when a layer with proposals got no hare certificate (checked a layer later)."""
        proposals = self.mesh.layer_proposals(layer) if layer >= 0 else {}
        if proposals and self.mesh.certified_block(layer) is None:
            self._log.warning(
                "hare timeout",
                layer=layer,
                proposals=len(proposals),
                votes=len(self.mesh.layer_votes(layer)),
                certificates=len(self.mesh.layer_certificates(layer)),
            )

    def _my_atx(self, layer: int) -> str | None:
        atx_id = self._atx_for_epoch.get(self.config.mesh.epoch(layer))
        return atx_id if atx_id in self.mesh.atxs else None

    def _propose(self, layer: int) -> None:
        atx_id = self._my_atx(layer)
        if atx_id is None:
            return
        if not self.mesh.eligible_count(self.smesher_id, layer):
            return
        opinion = opinion_for(self.layers(), self.mesh, layer)
        txs = self._offer_txs()
        self.gossip.publish("proposal", make_proposal(self.signer, layer, atx_id, opinion, txs))

    def _vote(self, layer: int) -> None:
        atx_id = self._my_atx(layer)
        if atx_id is None:
            return
        if not self.mesh.hare_seats(layer, self.smesher_id):
            return
        ids = sorted(self.mesh.layer_proposals(layer))
        self.gossip.publish("hare", make_vote(self.signer, layer, atx_id, ids))

    def _certify(self, layer: int, certifiers: int) -> None:
        """Tally the layer's hare votes and publish the certificate, if this node's ATX is
        among the ``certifiers`` the layer draws (a few, not every node: a certificate
        carries its votes)."""
        atx_id = self._my_atx(layer)
        if atx_id is None:
            return
        active = self.mesh.epoch_info(self.config.mesh.epoch(layer)).atx_of.values()
        if not is_certifier(atx_id, layer, active, certifiers):
            return
        votes, seats = self.mesh.hare_votes(layer)
        needed = self.mesh.hare_needed(layer)
        known = {compact_id(i): p for i, p in self.mesh.layer_proposals(layer).items()}
        ids = hare_output(votes, seats, needed, set(known))
        if not needed or not ids:
            return  # an empty layer needs no certificate
        # The fewest votes that pass, taken in a fixed order, so that certifiers who saw the
        # same votes publish the same certificate (one message, de-duplicated).
        chosen: list[dict[str, Any]] = []
        weight = 0
        wanted = set(ids)
        for vote in sorted(votes, key=lambda v: str(v["smesher"])):
            if wanted <= set(vote["proposals"]):
                chosen.append(vote)
                weight += seats[str(vote["smesher"])]
                if weight > needed:
                    break
        proposals = [known[i] for i in ids]
        weights = {p["atx"]: self.mesh.atx_weight(p["atx"]) for p in proposals}
        block = make_block(layer, proposals, weights)
        self.gossip.publish("certificate", make_certificate(layer, block, chosen))

    def _sync_keys(self) -> list[str]:
        layer = self.current_layer()
        epoch = self.config.mesh.epoch(layer)
        keys = ["poet", f"atx:{epoch}", f"atx:{epoch + 1}", "malfeasance"]
        for past in range(max(0, layer - self.config.mesh.window), layer):
            keys += [f"proposal:{past}", f"certificate:{past}"]
        return keys

    def _sync_digests(self) -> dict[str, str]:
        return {key: hash_json(sorted(self._sync_ids(key))) for key in self._sync_keys()}

    def _sync_messages(self, key: str) -> dict[str, tuple[str, Json]]:
        kind, _, arg = key.partition(":")
        mesh = self.mesh
        if kind == "poet":
            return {hash_json(m): ("poet", m) for m in mesh.poet_proofs.values()}
        if kind == "atx":
            return {i: ("atx", m) for i, m in mesh.atxs_for_epoch(int(arg)).items()}
        if kind == "proposal":
            return {i: ("proposal", m) for i, m in mesh.layer_proposals(int(arg)).items()}
        if kind == "certificate":
            certs = mesh.layer_certificates(int(arg))
            return {hash_json(m): ("certificate", m) for m in certs}
        if kind == "malfeasance":
            return {hash_json(m): ("malfeasance", m) for m in mesh.malicious.values()}
        return {}

    def _sync_ids(self, key: str) -> list[str]:
        return list(self._sync_messages(key))

    def _sync_holdings(self, key: str) -> list[tuple[str, Json]]:
        # The poet proofs first: ATXs wait for them.
        return list(self._sync_messages(key).values())

    def _update_metrics(self) -> None:
        if self.metrics is None:
            return
        st = self.status()
        self.metrics.layer_current.set(st["top_layer"])
        self.metrics.layer_applied.set(st["applied_layer"])
        self.metrics.layer_verified.set(st["verified_layer"])

    async def _smeshing_loop(self) -> None:
        params = self.config.mesh
        epoch_len = params.layers_per_epoch * self.config.layer_duration
        commitment = post_commitment(self.smesher_id, self.config.num_units, params.labels_per_unit)
        prev = self._last_own_atx()
        epoch = params.epoch(self.current_layer())
        while True:
            epoch_end = self.config.genesis + (epoch + 1) * epoch_len
            target = epoch + 1
            atx = self._own_atx(target)  # published before a restart: that one, not a second
            if atx is None:
                atx = await self._build_atx(target, prev, commitment, epoch_end)
            if atx is not None:
                self._keep_own_atx(target, atx)  # on disk before it is gossiped
                atx_id = hash_json(atx)
                self._atx_for_epoch[target] = atx_id
                self.gossip.publish("atx", atx)
                self.atxs_published += 1
                if self.metrics is not None:
                    self.metrics.atxs_published.inc()
                self.last_error = ""
                prev = atx_id
                self._log.info(
                    "atx published",
                    target_epoch=target,
                    atx=atx_id[:12],
                    poet_round=atx["poet"]["round"],
                    units=self.config.num_units,
                )
            else:
                self._log.warning("atx not published", target_epoch=target, reason=self.last_error)
            epoch = max(epoch + 1, params.epoch(self.layer_at(self._clock.now())))
            await self._clock.sleep_until(self.config.genesis + epoch * epoch_len)

    async def _build_atx(
        self, target: int, prev: str, commitment: bytes, deadline: float
    ) -> dict[str, Any] | None:
        challenge = atx_challenge(self.smesher_id, target, prev)
        self._challenge = challenge.hex()
        if not self._poets:
            self.last_error = "no PoET configured"
            return None
        rounds: dict[str, int] = {}
        warned: set[str] = set()
        while not rounds:
            errors = []
            for poet in self._poets:
                try:
                    rounds[poet.address] = await poet.submit(challenge)
                except OSError as exc:
                    errors.append(f"PoET {poet.address} unreachable: {exc}")
                    # Retried every 0.5 s: one warning per PoET and epoch, the rest debug.
                    level = self._log.debug if poet.address in warned else self._log.warning
                    level("poet unreachable", poet=poet.address, error=str(exc))
                    warned.add(poet.address)
            if rounds:
                self._log.info("poet challenge submitted", target_epoch=target, rounds=rounds)
                break
            self.last_error = "; ".join(errors)
            if self._clock.now() + 0.5 > deadline:
                return None
            await anyio.sleep(0.5)
        self.last_poet_round = max(rounds.values())
        wanted = set(rounds.values())
        while True:
            for (key, round_id), proof in list(self.mesh.poet_proofs.items()):
                if round_id in wanted and challenge.hex() in proof["members"]:
                    return self._atx_from_proof(target, prev, commitment, challenge, key, proof)
            if self._clock.now() >= deadline:
                self.last_error = (
                    f"no PoET proof containing our challenge arrived for round(s) "
                    f"{sorted(wanted)} before epoch {target - 1} ended"
                )
                return None
            with anyio.move_on_after(max(0.0, deadline - self._clock.now())):
                await self._proof_arrived.wait()

    def _atx_from_proof(
        self, target: int, prev: str, commitment: bytes, challenge: bytes, key: str, proof: Json
    ) -> dict[str, Any]:
        members = [bytes.fromhex(m) for m in proof["members"]]
        index = members.index(challenge)
        statement = bytes.fromhex(proof["statement"])
        poet = {
            "key": key,
            "round": int(proof["round"]),
            "index": index,
            "leaf_count": len(members),
            "path": [p.hex() for p in merkle_proof(members, index)],
        }
        nonce = prove_post(challenge, statement, commitment, self.config.mesh.pow_bits)
        post = {"commitment": commitment.hex(), "nonce": nonce}
        # Distinct per node, so two nodes sharing a key publish different ATXs (and the
        # network convicts the identity); rewards go to the smesher's own address.
        coinbase = self.node_id
        return make_atx(self.signer, target, prev, poet, post, self.config.num_units, coinbase)

    # -- state: transactions, accounts, persistence, checkpoints (S2) ---------------------

    def _init_state(self) -> None:
        self.mempool = Mempool()
        self._rejected: dict[str, str] = {}
        self._own_atxs: dict[int, dict[str, Any]] = {}
        """The node's ATX per target epoch, from its store or a checkpoint."""
        base = Base(-1, genesis_accounts(self.config.mesh.genesis_accounts))
        if self.config.checkpoint is not None:
            cp = load_checkpoint(self.config.checkpoint)
            base = Base(cp.layer, cp.accounts)
            for kind, msg in cp.messages():
                self.mesh.add(kind, msg)
            for atx in cp.atxs:
                if atx.get("smesher") == self.smesher_id:
                    self._own_atxs[int(atx["target_epoch"])] = atx
        self.ledger = Ledger(base)
        self._saved_layer = base.layer
        self.syncer = Syncer(self)
        self.gossip.subscribe("tx", self._on_tx)
        self.gossip.set_sync(self.syncer.digests, self.syncer.holdings)
        self.store = Store(self.config.data_dir) if self.config.data_dir is not None else None
        if self.store is not None:
            for kind, msg in self.store.messages():
                if kind == "tx":
                    self.mempool.add(msg)
                else:
                    self.mesh.add(kind, msg)
            self._own_atxs.update(self.store.own_atxs())
            self.gossip.learn(*self.store.peers())
        self._kept_book: tuple[set[str], set[str]] = (set(), set())
        for target, atx in self._own_atxs.items():
            self._atx_for_epoch[target] = hash_json(atx)

    def _close_state(self) -> None:
        if self.store is not None:
            self.store.close()

    async def _commit_loop(self, store: Store) -> None:
        """Commit the messages kept, every `FLUSH_S` seconds (`Store`: in batches), and the
        address book when it changed."""
        while True:
            await anyio.sleep(FLUSH_S)
            store.flush()
            book = self.gossip.address_book()
            if book != self._kept_book:
                store.save_peers(*book)
                self._kept_book = book

    def _persist(self, kind: str, msg: Json, ok: bool) -> None:
        if ok and self.store is not None:
            self.store.add_message(kind, msg)

    def _own_atx(self, target: int) -> dict[str, Any] | None:
        """The ATX this node already published for ``target`` (kept across restarts)."""
        return self._own_atxs.get(target)

    def _keep_own_atx(self, target: int, atx: dict[str, Any]) -> None:
        self._own_atxs[target] = atx
        if self.store is not None:
            self.store.keep_own_atx(target, atx)

    def _last_own_atx(self) -> str:
        """Id of the newest ATX this node published (the next one's ``prev``)."""
        return self._atx_for_epoch[max(self._atx_for_epoch)] if self._atx_for_epoch else ""

    def _apply_state(self, states: list[LayerState]) -> list[LayerState]:
        """Execute the decided layers; their state roots then cover the accounts."""
        applied = self.ledger.apply(states, self.mempool.get)
        if self.store is not None and self.ledger.applied_layer != self._saved_layer:
            accounts = {a: (x.balance, x.nonce, x.public) for a, x in self.ledger.accounts.items()}
            self.store.save_accounts(self.ledger.applied_layer, accounts)
            self._saved_layer = self.ledger.applied_layer
        return applied

    def _on_tx(self, data: Json) -> bool:
        if not self.mempool.add(data):
            return False
        self._persist("tx", data, True)
        return True

    def _pending_txs(self) -> set[str]:
        """Txs proposed for layers not applied yet (they may still land in a block)."""
        first = self.ledger.applied_layer + 1
        return {
            str(t)
            for layer in range(first, self.current_layer() + 1)
            for p in self.mesh.layer_proposals(layer).values()
            for t in p.get("txs", [])
        }

    def _offer_txs(self) -> list[str]:
        """What this node's proposal offers: held txs neither applied nor pending in a
        proposal, whose nonce is not already used."""
        self.layers()
        done = {i for i, (_, r) in self.ledger.results.items() if r != "skipped"}
        done |= self._pending_txs()
        accounts = self.ledger.accounts
        return [
            i
            for i in self.mempool.pending(done)
            if int(self.mempool.txs[i]["nonce"])
            >= accounts.get(self.mempool.txs[i]["principal"], Account()).nonce
        ]

    def submit_tx(self, raw: bytes) -> tuple[str, str | None]:
        """Validate a transaction, add it to the mempool and gossip it: (id hex, error)."""
        try:
            tx_id, tx = parse_tx(raw)
        except ValueError as exc:
            tx_id = hashlib.sha256(raw).hexdigest()
            self._rejected[tx_id] = str(exc)
            return tx_id, str(exc)
        nonce = self.account(tx["principal"])[1]
        if int(tx["nonce"]) < nonce and tx_id not in self.ledger.results:
            self._rejected[tx_id] = f"nonce {tx['nonce']} already used (next is {nonce})"
            return tx_id, self._rejected[tx_id]
        self.gossip.publish("tx", tx)
        return tx_id, None

    def tx_state(self, tx_id: str) -> str:
        """unknown, rejected, mempool, included (in a proposal or a block not applied yet)
        or applied (executed, possibly as failed: it paid its fee)."""
        self.layers()
        result = self.ledger.results.get(tx_id)
        if result is not None and result[1] != "skipped":
            return "applied"
        if tx_id in self._pending_txs():
            return "included"
        tx = self.mempool.get(tx_id)
        if tx is not None:
            if int(tx["nonce"]) < self.account(tx["principal"])[1]:
                return "rejected"  # its nonce was used by another tx
            return "mempool"
        return "rejected" if tx_id in self._rejected else "unknown"

    def account(self, address: str) -> tuple[int, int]:
        """(balance, nonce) of an account (hex address) after the last applied layer."""
        self.layers()
        account = self.ledger.accounts.get(address, Account())
        return account.balance, account.nonce

    def accounts(self) -> dict[str, tuple[int, int]]:
        """Every account after the last applied layer: address -> (balance, nonce)."""
        self.layers()
        return {a: (x.balance, x.nonce) for a, x in sorted(self.ledger.accounts.items())}

    def checkpoint(self, layer: int) -> dict[str, Any]:
        """The accounts and ATXs at an applied ``layer`` (JSON-able); ``ValueError`` when the
        layer is not applied here, or not yet verified (an applied layer the tortoise has not
        confirmed may still change its block, and the checkpoint with it)."""
        verified = self.status()["verified_layer"]
        accounts = self.ledger.accounts_after(layer)
        if accounts is None:
            raise ValueError(f"layer {layer} is not applied (applied: {self.ledger.applied_layer})")
        if verified < layer:
            raise ValueError(f"layer {layer} is applied but not verified yet (verified: {verified})")
        return make_checkpoint(self.mesh, layer, accounts)

    # -- eligibility and malfeasance (S1) ----------------------------------------------------

    def eligibilities(self, epoch: int) -> dict[str, int]:
        """Smesher id -> proposal slots in ``epoch``, as every node that holds the same ATXs
        computes them (convicted identities have none)."""
        return self.mesh.eligibilities(epoch)

    def malfeasance_proofs(self) -> list[dict[str, Any]]:
        """The proof convicting each malicious identity known here: ``smesher``, ``kind``
        (atx, ballot, hare), ``layer`` (an ATX's: its target epoch's first layer),
        ``proof`` (the two signed messages) and when it was ``received``."""
        out = []
        for smesher, proof in sorted(self.mesh.malicious.items()):
            first = proof["messages"][0]
            if proof["kind"] == "atx":
                layer = self.config.mesh.first_layer(int(first["target_epoch"]))
            else:
                layer = int(first["layer"])
            received = self._proofs_received.get(smesher, 0.0)
            out.append(
                {
                    "smesher": smesher,
                    "kind": proof["kind"],
                    "layer": layer,
                    "proof": {"messages": proof["messages"]},
                    "received": received,
                }
            )
        return out

    def _publish_proofs(self) -> None:
        proofs, self.mesh.new_proofs = self.mesh.new_proofs, []
        for proof in proofs:
            smesher = str(proof["messages"][0]["smesher"])
            self._proofs_received.setdefault(smesher, self._clock.now())
            self._log.warning("malfeasance", smesher=smesher[:16], kind=proof["kind"])
            self.gossip.publish("malfeasance", proof)

    def _too_early(self, msg: Json) -> bool:
        """A message for a layer that starts more than ``clock_tolerance`` layers from now:
        its sender's clock is too far ahead (slightly skewed ones are tolerated)."""
        try:
            layer = int(msg["layer"])
        except (KeyError, TypeError, ValueError):
            return False  # the mesh rejects it
        slack = self.config.clock_tolerance * self.config.layer_duration
        return self.layer_start(layer) > self._clock.now() + slack
