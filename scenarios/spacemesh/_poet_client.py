"""How a node reaches a PoET: over HTTP (h11, as the server), or directly in the same
process."""

from __future__ import annotations

from typing import Protocol

import anyio
import h11
import orjson

from ._codec import Json
from ._poet import PoetError, PoetService
from ._transport import split_address

_MAX_ANSWER = 1 << 20


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
    """The PoET's HTTP API (``POST /v1/submit``, ``GET /v1/info``) at ``host:port``.

    One HTTP/1.1 request per connection, framed by h11 as the server's are: a smesher asks
    about once an epoch, so there is no pool to keep. The client's CPU a submission: 1.3 ms,
    against 2.2 ms through a pooled httpx client (on a VM running at half its usual speed;
    the PoET client was 4.5 % of a 100-node run's node CPU with httpx). Every failure, the
    PoET's refusals included, is an ``OSError`` saying what happened.
    """

    def __init__(self, address: str, timeout: float = 3.0) -> None:
        self.address = address
        self._host, self._port = split_address(address)
        self.timeout = timeout

    async def submit(self, challenge: bytes) -> int:
        body = orjson.dumps({"challenge": challenge.hex()})
        answer = await self._request("POST", "/v1/submit", body)
        try:
            return int(answer["roundId"])
        except (KeyError, TypeError, ValueError):
            raise OSError(f"no round in the PoET's answer: {str(answer)[:200]}") from None

    async def info(self) -> dict[str, Json]:
        return await self._request("GET", "/v1/info", b"")

    async def aclose(self) -> None:
        """Nothing to close: no connection outlives its request."""

    async def _request(self, method: str, path: str, body: bytes) -> dict[str, Json]:
        """The JSON object a 200 answer holds; OSError for anything else."""
        try:
            with anyio.fail_after(self.timeout):
                stream = await anyio.connect_tcp(self._host, self._port)
        except TimeoutError:
            raise OSError(f"ConnectTimeout: no connection in {self.timeout:g} s") from None
        except OSError as exc:
            raise OSError(f"ConnectError: {exc}") from None
        conn = h11.Connection(h11.CLIENT)
        headers = [("host", self.address), ("content-length", str(len(body))),
                   ("content-type", "application/json"), ("connection", "close")]  # fmt: skip
        status, answer = 0, b""
        try:
            async with stream:
                with anyio.fail_after(self.timeout):
                    request = h11.Request(method=method, target=path, headers=headers)
                    await stream.send(conn.send(request) + conn.send(h11.Data(data=body))
                                      + conn.send(h11.EndOfMessage()))  # fmt: skip
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            try:
                                conn.receive_data(await stream.receive())
                            except anyio.EndOfStream:
                                conn.receive_data(b"")
                        elif isinstance(event, h11.Response):
                            status = event.status_code
                        elif isinstance(event, h11.Data):
                            answer += event.data
                            if len(answer) > _MAX_ANSWER:
                                raise OSError("the PoET's answer is too large")
                        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                            break
        except TimeoutError:
            raise OSError(f"ReadTimeout: no answer in {self.timeout:g} s") from None
        except (h11.ProtocolError, anyio.BrokenResourceError) as exc:
            raise OSError(f"the PoET's answer broke off: {exc or type(exc).__name__}") from None
        if status != 200:
            raise OSError(f"HTTP {status}: {answer[:200].decode(errors='replace')}")
        try:
            result = orjson.loads(answer)
        except orjson.JSONDecodeError:
            result = None
        if not isinstance(result, dict):
            raise OSError(f"the PoET's answer is not a JSON object: {answer[:200]!r}")
        return result


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
