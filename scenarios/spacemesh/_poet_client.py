"""How a node reaches a PoET: over HTTP (httpx), or directly in the same process."""

from __future__ import annotations

import logging
from typing import Protocol

import httpcore  # noqa: F401  (httpx imports it at a first client; now, before genesis is set)
import httpx

from ._codec import Json
from ._poet import PoetError, PoetService

# httpx logs every request at info; the node logs what matters ("poet challenge submitted").
logging.getLogger("httpx").setLevel(logging.WARNING)


class PoetClient(Protocol):
    """The two PoET calls a smesher makes."""

    address: str

    async def submit(self, challenge: bytes) -> int:
        """Submit a challenge; the round it joined. Raises ``OSError`` when unreachable."""
        ...

    async def info(self) -> dict[str, Json]:
        """The PoET's ``/v1/info`` answer."""
        ...


class HttpPoetClient:
    """The PoET's HTTP API (``POST /v1/submit``, ``GET /v1/info``)."""

    def __init__(self, address: str, timeout: float = 3.0) -> None:
        self.address = address
        base = address if "://" in address else f"http://{address}"
        # Plain HTTP: no TLS context with the CA bundle loaded (a tenth of a second of
        # CPU per node, paid by a hundred nodes at once between genesis and their start).
        verify = base.startswith("https://")
        self._client = httpx.AsyncClient(base_url=base, timeout=timeout, verify=verify)

    async def submit(self, challenge: bytes) -> int:
        try:
            resp = await self._client.post("/v1/submit", json={"challenge": challenge.hex()})
        except httpx.TransportError as exc:
            raise OSError(_describe(exc)) from None
        if resp.status_code != 200:
            raise OSError(f"HTTP {resp.status_code}: {resp.text[:200]}")
        return int(resp.json()["roundId"])

    async def info(self) -> dict[str, Json]:
        try:
            resp = await self._client.get("/v1/info")
        except httpx.TransportError as exc:
            raise OSError(_describe(exc)) from None
        resp.raise_for_status()
        result: dict[str, Json] = resp.json()
        return result

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class LocalPoetClient:
    """Calls a :class:`PoetService` in the same process; ``reachable`` cuts it off."""

    def __init__(self, service: PoetService, address: str = "poet", reachable: bool = True) -> None:
        self.address = address
        self.service = service
        self.reachable = reachable

    async def submit(self, challenge: bytes) -> int:
        if not self.reachable:
            raise ConnectionRefusedError(f"PoET {self.address} is unreachable")
        try:
            return self.service.submit(challenge)
        except PoetError as exc:
            raise OSError(str(exc)) from None

    async def info(self) -> dict[str, Json]:
        if not self.reachable:
            raise ConnectionRefusedError(f"PoET {self.address} is unreachable")
        return self.service.info()
