"""An HTTP relay from a Unix socket into the data network.

The data network cannot be reached from the host's namespace (by design), so the supervisor
cannot scrape an instance's metrics endpoint directly. This relay runs inside the hub
namespace, listens on a Unix socket in the run directory (reachable from any namespace) and
forwards each GET to the address in its Host header, which must be on the data subnet.

    python -m harness.runners._relay SOCKET SUBNET
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socketserver
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class _Handler(BaseHTTPRequestHandler):
    subnet: ipaddress.IPv4Network
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        host, _, port = (self.headers.get("Host") or "").partition(":")
        try:
            if ipaddress.IPv4Address(host) not in self.subnet:
                raise ValueError
        except ValueError:
            self._reply(403, b"the relay only reaches the run's data network\n")
            return
        try:
            conn = http.client.HTTPConnection(host, int(port or 80), timeout=5)
            conn.request("GET", self.path, headers={"Accept": self.headers.get("Accept", "*/*")})
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
        except (OSError, http.client.HTTPException) as e:
            self._reply(502, f"relay: {host}:{port}: {e}\n".encode())
            return
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
        self._reply(resp.status, body, headers)

    def _reply(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "relay"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main() -> None:
    """Serve until killed."""
    path, subnet = sys.argv[1], ipaddress.IPv4Network(sys.argv[2])
    handler = type("Handler", (_Handler,), {"subnet": subnet})
    with _Server(path, handler) as server:
        os.chmod(path, 0o600)
        server.serve_forever()


if __name__ == "__main__":
    main()
