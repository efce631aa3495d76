"""A small HTTP/1.1 server (h11 over anyio) for the PoET API and the metrics endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import h11
import orjson
from anyio.abc import SocketStream

from ._accept_fix import fix_sock_accept
from ._codec import Json
from ._metrics import NodeMetrics
from ._poet import PoetError, PoetService
from ._transport import split_address

Response = tuple[int, str, bytes]
App = Callable[[str, str, bytes], Awaitable[Response]]
"""(method, path, body) -> (status, content type, body)."""

_MAX_BODY = 1 << 20


def _json(status: int, value: Json) -> Response:
    return status, "application/json", orjson.dumps(value)


async def _handle(stream: SocketStream, app: App) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            request: h11.Request | None = None
            body = b""
            try:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        try:
                            data = await stream.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError):
                            data = b""
                        conn.receive_data(data)
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > _MAX_BODY:
                            raise h11.RemoteProtocolError("request body too large")
                    elif (
                        isinstance(event, h11.EndOfMessage | h11.ConnectionClosed)
                        or event is h11.PAUSED
                    ):
                        break
            except h11.RemoteProtocolError:
                return
            if request is None:
                return
            try:
                status, ctype, payload = await app(
                    request.method.decode(), request.target.decode(), body
                )
            except Exception as exc:  # an adapter must answer, never drop the connection
                status, ctype, payload = _json(500, {"error": f"{type(exc).__name__}: {exc}"})
            headers = [("content-type", ctype), ("content-length", str(len(payload)))]
            try:
                await stream.send(conn.send(h11.Response(status_code=status, headers=headers)))
                await stream.send(conn.send(h11.Data(data=payload)))
                await stream.send(conn.send(h11.EndOfMessage()))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()


async def serve_http(
    address: str,
    app: App,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``address`` (host:port) until cancelled."""
    host, port = split_address(address)
    fix_sock_accept()
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    task_status.started()

    async def handler(stream: SocketStream) -> None:
        await _handle(stream, app)

    async with listener:  # closed when cancelled: the port is free again, nothing accepts
        await listener.serve(handler)


def poet_app(service: PoetService) -> App:
    """The PoET's HTTP API: ``POST /v1/submit``, ``GET /v1/info``, ``POST /v1/start``."""

    async def app(method: str, path: str, body: bytes) -> Response:
        route = (method, path.split("?")[0])
        if route == ("GET", "/v1/info"):
            return _json(200, service.info())
        if route not in (("POST", "/v1/submit"), ("POST", "/v1/start")):
            return _json(404, {"error": f"no route {method} {path}"})
        try:
            request = orjson.loads(body)
            if not isinstance(request, dict):
                raise PoetError("request body must be a JSON object")
            if route[1] == "/v1/submit":
                challenge = request.get("challenge")
                if not isinstance(challenge, str):
                    raise PoetError("challenge must be a hex string")
                try:
                    raw = bytes.fromhex(challenge)
                except ValueError:
                    raise PoetError("challenge is not hex") from None
                return _json(200, {"roundId": str(service.submit(raw))})
            gateways = request.get("gatewayAddresses")
            if not isinstance(gateways, list):
                raise PoetError("gatewayAddresses must be a list")
            service.start([str(g) for g in gateways])
            return _json(200, {})
        except (PoetError, orjson.JSONDecodeError) as exc:
            return _json(400, {"error": str(exc)})

    return app


def metrics_app(metrics: NodeMetrics) -> App:
    """``GET /metrics`` in Prometheus' text format."""

    async def app(method: str, path: str, body: bytes) -> Response:
        if method == "GET" and path.split("?")[0] == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", metrics.render()
        return 404, "text/plain", b"not found\n"

    return app
