"""The PoET round lifecycle in virtual time: submit, close, prove, sign, broadcast."""

from __future__ import annotations

import anyio
import pytest

from scenarios.spacemesh import LoopClock, PoetConfig, PoetError, PoetService, verify_poet_proof
from scenarios.spacemesh._codec import decode

pytestmark = pytest.mark.anyio


class Gateways:
    """A broadcaster whose gateways fail a given number of times first."""

    def __init__(self, failures: dict[str, int], reject: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.failures = dict(failures)
        self.reject = reject
        self.calls: list[str] = []
        self.proofs: list[bytes] = []

    async def __call__(self, gateway: str, data: bytes) -> bool:
        self.calls.append(gateway)
        if self.failures.get(gateway, 0) > 0:
            self.failures[gateway] -= 1
            raise ConnectionRefusedError(f"{gateway} down")
        self.proofs.append(data)
        return gateway not in self.reject


def make(gateways: Gateways, **kw: object) -> tuple[PoetService, LoopClock]:
    clock = LoopClock()
    config = PoetConfig(genesis=clock.now() + 1.0, round_duration=2.0, chain_length=50, **kw)  # type: ignore[arg-type]
    return PoetService(config, clock, gateways), clock


async def test_round_lifecycle_and_proof() -> None:
    gw = Gateways({})
    poet, clock = make(gw)
    c1, c2, c3 = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
    assert poet.submit(c1) == 0
    assert poet.submit(c2) == 0
    assert poet.submit(c2) == 0  # a duplicate joins once
    info = poet.info()
    assert info["openRoundId"] == "0" and info["executingRoundsIds"] == []
    assert info["servicePubKey"] == poet.public_key
    poet.start(["gw:1"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(poet.run)
        await clock.sleep_until(poet.round_end(0) + 0.1)
        assert poet.open_round_id() == 1
        assert poet.submit(c3) == 1
        await clock.sleep_until(poet.round_end(1) + 0.1)
        tg.cancel_scope.cancel()
    assert sorted(poet.proofs) == [0, 1]
    proof0 = poet.proofs[0]
    assert proof0["members"] == [c1.hex(), c2.hex()] and proof0["leaf_count"] == 2
    assert verify_poet_proof(proof0, {poet.public_key}) is None
    assert poet.proofs[1]["members"] == [c3.hex()]
    assert [decode(p)["round"] for p in gw.proofs] == [0, 1]
    assert poet.broadcasts[0].delivered and poet.broadcasts[0].acks == ["gw:1"]


async def test_empty_rounds_make_no_proof() -> None:
    gw = Gateways({})
    poet, clock = make(gw)
    poet.start(["gw:1"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(poet.run)
        await clock.sleep_until(poet.round_end(2) + 0.1)
        tg.cancel_scope.cancel()
    assert poet.proofs == {} and gw.calls == []


async def test_tampered_proofs_are_rejected() -> None:
    poet, clock = make(Gateways({}))
    poet.submit(bytes(32))
    poet.submit(bytes([9]) * 32)
    poet.start(["gw:1"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(poet.run)
        await clock.sleep_until(poet.round_end(0) + 0.1)
        tg.cancel_scope.cancel()
    good = poet.proofs[0]
    assert verify_poet_proof(good) is None
    assert "unknown service" in (verify_poet_proof(good, {"00" * 32}) or "")
    assert "signature" in (verify_poet_proof({**good, "members": good["members"][:1]}) or "")
    assert "signature" in (verify_poet_proof({**good, "output": "00" * 32}) or "")
    assert "malformed" in (verify_poet_proof({"round": 1}) or "")


async def test_broadcast_retries_until_acknowledged() -> None:
    gw = Gateways({"a:1": 2, "b:1": 99}, reject={"c:1"})
    poet, clock = make(gw, broadcast_attempts=3, retry_interval=0.1, ack_threshold=1)
    poet.submit(bytes(32))
    poet.start(["a:1", "b:1", "c:1"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(poet.run)
        await clock.sleep_until(poet.round_end(0) + 1.0)
        tg.cancel_scope.cancel()
    result = poet.broadcasts[0]
    assert result.acks == ["a:1"]
    assert gw.calls.count("a:1") == 3 and gw.calls.count("b:1") == 3 and gw.calls.count("c:1") == 1
    assert "ConnectionRefusedError" in result.errors["b:1"] and result.errors["c:1"] == "rejected"
    assert result.delivered


async def test_ack_threshold_not_met() -> None:
    gw = Gateways({"a:1": 99})
    poet, clock = make(gw, broadcast_attempts=2, retry_interval=0.1, ack_threshold=1)
    poet.submit(bytes(32))
    poet.start(["a:1"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(poet.run)
        await clock.sleep_until(poet.round_end(0) + 1.0)
        tg.cancel_scope.cancel()
    assert not poet.broadcasts[0].delivered


def test_bad_input_is_refused() -> None:
    poet = PoetService(PoetConfig(genesis=0.0), LoopClock(), Gateways({}))
    with pytest.raises(PoetError, match="32 bytes"):
        poet.submit(b"short")
    with pytest.raises(PoetError, match="at least one gateway"):
        poet.start([])
    with pytest.raises(PoetError, match="round_duration"):
        PoetConfig(genesis=0.0, round_duration=0)
    with pytest.raises(PoetError, match="chain_length"):
        PoetConfig(genesis=0.0, chain_length=-1)
