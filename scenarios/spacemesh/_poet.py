"""The PoET service's protocol logic: rounds, the statement, the sequential work, the proof."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from ._clock import Clock
from ._codec import Json, canonical, h
from ._keys import Signer, verify_signature
from ._merkle import hash_chain, merkle_root
from ._poet_store import PoetStore

Broadcaster = Callable[[str, bytes], Awaitable[bool]]
"""Hands a proof to one gateway; True when it accepted. Raises ``OSError`` when unreachable."""

MAX_CHAIN_LENGTH = 10_000_000
_CHUNK = 20_000

_log = structlog.get_logger("spacemesh.poet")


class PoetError(ValueError):
    """A request the PoET refuses (the message is the one-line reason)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PoetConfig:
    """Round timing and proof parameters.

    Round ``n`` closes at ``genesis + (n + 1) * round_duration``; a challenge submitted
    before then joins it. ``ack_threshold`` gateways must accept a proof for its broadcast
    to count as delivered.
    """

    genesis: float
    round_duration: float = 3.0
    chain_length: int = 1000
    ack_threshold: int = 1
    broadcast_attempts: int = 5
    retry_interval: float = 0.5
    key_seed: str = "poet-0"
    data_dir: str | None = None
    """Where the rounds and proofs are kept across restarts (`PoetStore`); None: nowhere."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.genesis):
            raise PoetError(f"genesis must be a finite time, not {self.genesis!r}")
        if not (math.isfinite(self.round_duration) and self.round_duration > 0):
            raise PoetError(f"round_duration must be > 0 seconds, not {self.round_duration!r}")
        if not 0 <= self.chain_length <= MAX_CHAIN_LENGTH:
            raise PoetError(f"chain_length must be 0..{MAX_CHAIN_LENGTH}, not {self.chain_length}")
        if self.ack_threshold < 0 or self.broadcast_attempts < 1:
            raise PoetError("ack_threshold must be >= 0 and broadcast_attempts >= 1")


@dataclasses.dataclass
class BroadcastResult:
    """How a round's proof reached the gateways."""

    round_id: int
    acks: list[str]
    errors: dict[str, str]
    delivered: bool


def chain_seed(statement: bytes, round_id: int) -> bytes:
    """The sequential work's input: the statement bound to its round."""
    return h(b"poet-chain", statement, round_id)


def _unsigned(proof: dict[str, Any]) -> bytes:
    return canonical({k: v for k, v in proof.items() if k != "signature"})


def verify_poet_proof(proof: Json, trusted_keys: set[str] | None = None) -> str | None:
    """None when ``proof`` is valid (and signed by a trusted key, if given), else why not."""
    try:
        members = [bytes.fromhex(m) for m in proof["members"]]
        statement = bytes.fromhex(proof["statement"])
        round_id = int(proof["round"])
        length = int(proof["chain_length"])
        key = str(proof["service_pubkey"])
        output = bytes.fromhex(proof["output"])
        signature = str(proof["signature"])
        leaf_count = int(proof["leaf_count"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed PoET proof: {exc!r}"
    if trusted_keys is not None and key not in trusted_keys:
        return f"PoET proof from an unknown service {key[:16]}"
    if not verify_signature(key, _unsigned(proof), signature):
        return "PoET proof signature does not verify"
    if leaf_count != len(members) or merkle_root(members) != statement:
        return "PoET statement is not the Merkle root of its members"
    if not 0 <= length <= MAX_CHAIN_LENGTH:
        return f"PoET chain length {length} out of range"
    if hash_chain(chain_seed(statement, round_id), length) != output:
        return "PoET sequential work does not verify"
    return None


class PoetService:
    """Collects challenges into rounds and publishes each closed round's proof."""

    def __init__(self, config: PoetConfig, clock: Clock, broadcaster: Broadcaster) -> None:
        self.config = config
        self._clock = clock
        self._broadcast = broadcaster
        self._signer = Signer(config.key_seed)
        self._members: dict[int, list[bytes]] = {}
        self._executing: set[int] = set()
        self.gateways: list[str] = []
        self._started = anyio.Event()
        self.proofs: dict[int, dict[str, Any]] = {}
        self.broadcasts: dict[int, BroadcastResult] = {}
        self._store = PoetStore(config.data_dir) if config.data_dir is not None else None
        if self._store is not None:
            self.proofs = self._store.proofs()
            self._members = {
                r: m for r, m in self._store.members().items() if r not in self.proofs
            }

    @property
    def public_key(self) -> str:
        """The service key that signs proofs (hex Ed25519)."""
        return self._signer.public_hex

    def open_round_id(self) -> int:
        """The round a challenge submitted now joins."""
        elapsed = self._clock.now() - self.config.genesis
        return max(0, math.floor(elapsed / self.config.round_duration))

    def round_end(self, round_id: int) -> float:
        """When round ``round_id`` closes."""
        return self.config.genesis + (round_id + 1) * self.config.round_duration

    def submit(self, challenge: bytes) -> int:
        """Add a 32-byte challenge to the open round; returns the round id."""
        if len(challenge) != 32:
            raise PoetError(f"challenge must be 32 bytes, not {len(challenge)}")
        round_id = self.open_round_id()
        members = self._members.get(round_id)
        if members is None:
            members = self._members[round_id] = []
            closes_in = round(self.round_end(round_id) - self._clock.now(), 2)
            _log.info("poet round opened", round=round_id, closes_in=closes_in)
        if challenge not in members:
            members.append(challenge)
            if self._store is not None:
                self._store.add_member(round_id, challenge)
        return round_id

    def start(self, gateways: list[str]) -> None:
        """Set the gateways proofs are broadcast to and start closing rounds."""
        if not gateways:
            raise PoetError("gatewayAddresses must name at least one gateway")
        if any(not isinstance(g, str) or not g for g in gateways):
            raise PoetError("gatewayAddresses must be a list of host:port strings")
        self.gateways = list(gateways)
        self._started.set()

    def info(self) -> dict[str, Json]:
        """What ``GET /v1/info`` answers."""
        return {
            "openRoundId": str(self.open_round_id()),
            "executingRoundsIds": [str(r) for r in sorted(self._executing)],
            "servicePubKey": self.public_key,
        }

    async def run(self) -> None:
        """Close rounds on schedule once started, until cancelled."""
        try:
            await self._run()
        finally:
            if self._store is not None:
                self._store.close()

    async def _run(self) -> None:
        await self._started.wait()
        round_id = self.open_round_id()
        _log.info(
            "poet started",
            pubkey=self.public_key[:16],
            gateways=self.gateways,
            round_duration=self.config.round_duration,
            chain_length=self.config.chain_length,
            open_round=round_id,
        )
        async with anyio.create_task_group() as tg:
            # Rounds kept open across a restart that closed meanwhile: their proofs now.
            for closed in sorted(r for r in self._members if r < round_id):
                members = self._members.pop(closed)
                _log.info("poet round closed while down", round=closed, members=len(members))
                tg.start_soon(self._execute, closed, members)
            while True:
                await self._clock.sleep_until(self.round_end(round_id))
                members = self._members.pop(round_id, [])
                if members:  # an empty round has no proof and is not worth a line
                    _log.info("poet round closed", round=round_id, members=len(members))
                    tg.start_soon(self._execute, round_id, members)
                round_id += 1

    async def _execute(self, round_id: int, members: list[bytes]) -> None:
        self._executing.add(round_id)
        try:
            statement = merkle_root(members)
            value = chain_seed(statement, round_id)
            left = self.config.chain_length
            while left > 0:  # in chunks, so that the event loop keeps serving
                step = min(left, _CHUNK)
                value = hash_chain(value, step)
                left -= step
                await anyio.lowlevel.checkpoint()
            proof: dict[str, Any] = {
                "round": round_id,
                "statement": statement.hex(),
                "leaf_count": len(members),
                "members": [m.hex() for m in members],
                "chain_length": self.config.chain_length,
                "output": value.hex(),
                "service_pubkey": self.public_key,
            }
            proof["signature"] = self._signer.sign(_unsigned(proof))
            self.proofs[round_id] = proof
            if self._store is not None:
                self._store.keep_proof(round_id, proof)
        finally:
            self._executing.discard(round_id)
        await self._broadcast_proof(round_id, canonical(proof))

    async def _broadcast_proof(self, round_id: int, data: bytes) -> None:
        result = BroadcastResult(round_id, [], {}, False)
        self.broadcasts[round_id] = result

        async def one(gateway: str) -> None:
            for attempt in range(self.config.broadcast_attempts):
                try:
                    if await self._broadcast(gateway, data):
                        result.acks.append(gateway)
                        result.errors.pop(gateway, None)
                        return
                    result.errors[gateway] = "rejected"
                    return
                except (OSError, TimeoutError) as exc:
                    result.errors[gateway] = f"{type(exc).__name__}: {exc}"
                if attempt + 1 < self.config.broadcast_attempts:
                    await anyio.sleep(self.config.retry_interval)

        async with anyio.create_task_group() as tg:
            for gateway in self.gateways:
                tg.start_soon(one, gateway)
        needed = min(self.config.ack_threshold, len(self.gateways))
        result.delivered = len(result.acks) >= needed
        (_log.info if result.delivered else _log.warning)(
            "poet proof broadcast",
            round=round_id,
            acked=sorted(result.acks),
            failed=result.errors,
            delivered=result.delivered,
        )
