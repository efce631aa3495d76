"""The PoET's HTTP API and the metrics endpoint (h11 adapter, real sockets on loopback)."""

from __future__ import annotations

import os

import anyio
import httpx
import pytest

from scenarios.spacemesh import (
    HttpPoetClient,
    NodeMetrics,
    PoetConfig,
    PoetService,
    WallClock,
    metrics_app,
    poet_app,
    serve_http,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _addr(last: int) -> str:
    pid = os.getpid()
    return f"127.{150 + pid % 50}.{(pid // 50) % 250}.{last}:{20000 + pid % 20000}"


async def _never(gateway: str, data: bytes) -> bool:
    raise ConnectionRefusedError(gateway)


async def test_poet_http_api() -> None:
    service = PoetService(PoetConfig(genesis=0.0, round_duration=1000.0), WallClock(), _never)
    address = _addr(1)
    async with anyio.create_task_group() as tg:
        await tg.start(serve_http, address, poet_app(service))
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            ok = await client.post("/v1/submit", json={"challenge": "ab" * 32})
            assert ok.status_code == 200 and ok.json() == {"roundId": str(service.open_round_id())}
            info = (await client.get("/v1/info")).json()
            assert info["servicePubKey"] == service.public_key
            assert info["executingRoundsIds"] == []
            for body, needle in [
                ({"challenge": "zz"}, "not hex"),
                ({"challenge": "ab"}, "32 bytes"),
                ({"challenge": 5}, "hex string"),
                ([1, 2], "JSON object"),
            ]:
                bad = await client.post("/v1/submit", json=body)
                assert bad.status_code == 400 and needle in bad.json()["error"]
            broken = await client.post("/v1/submit", content=b"{not json")
            assert broken.status_code == 400
            assert (
                await client.post("/v1/start", json={"gatewayAddresses": []})
            ).status_code == 400
            assert service.gateways == []
            started = await client.post("/v1/start", json={"gatewayAddresses": ["10.0.0.1:9092"]})
            assert started.status_code == 200 and service.gateways == ["10.0.0.1:9092"]
            assert (await client.get("/nope")).status_code == 404
        tg.cancel_scope.cancel()


async def test_the_node_s_poet_client_submits_asks_and_says_what_went_wrong() -> None:
    """`HttpPoetClient` against the PoET's server: a submission's round and the info; and
    every failure an OSError naming it (refused, a 400, no server, no answer)."""
    service = PoetService(PoetConfig(genesis=0.0, round_duration=1000.0), WallClock(), _never)
    address = _addr(3)
    async with anyio.create_task_group() as tg:
        await tg.start(serve_http, address, poet_app(service))
        client = HttpPoetClient(address)
        assert await client.submit(b"\xab" * 32) == service.open_round_id()
        assert (await client.info())["servicePubKey"] == service.public_key
        with pytest.raises(OSError, match=r"HTTP 400: .*32 bytes"):
            await client.submit(b"\xab")
        tg.cancel_scope.cancel()
    with pytest.raises(OSError, match="ConnectError"):
        await HttpPoetClient(address).submit(b"\xab" * 32)  # nobody listens any more
    silent = _addr(4)
    host, port = silent.rsplit(":", 1)
    async with await anyio.create_tcp_listener(local_host=host, local_port=int(port)):
        # The kernel accepts the connection; nobody reads or answers.
        with pytest.raises(OSError, match=r"ReadTimeout: no answer in 0\.3 s"):
            await HttpPoetClient(silent, timeout=0.3).submit(b"\xab" * 32)
    for bad in ("poet-without-a-port", "http://poet:7000"):
        with pytest.raises(ValueError, match="host:port"):
            HttpPoetClient(bad)


async def test_metrics_endpoint_uses_its_own_registry() -> None:
    a, b = NodeMetrics(), NodeMetrics()
    a.peers.set(3)
    a.delivered.labels("atx").inc()
    a.latency.labels("atx").observe(0.03)
    b.peers.set(7)
    address = _addr(2)
    async with anyio.create_task_group() as tg:
        await tg.start(serve_http, address, metrics_app(a))
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://{address}/metrics")).text
        tg.cancel_scope.cancel()
    assert "spacemesh_peers 3.0" in text and "spacemesh_peers 7.0" not in text
    assert 'spacemesh_messages_delivered_total{topic="atx"} 1.0' in text
    assert 'spacemesh_message_latency_seconds_bucket{le="0.05",topic="atx"} 1.0' in text
    assert 'spacemesh_message_latency_seconds_bucket{le="0.025",topic="atx"} 0.0' in text
    assert "_created" not in text  # as go-spacemesh's: a fifth fewer lines to render and parse
