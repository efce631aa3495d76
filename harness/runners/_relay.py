"""An HTTP relay from a Unix socket into the instances' network namespaces.

The data network cannot be reached from the host's namespace (by design), so the supervisor
cannot scrape an instance's metrics endpoint directly. This relay listens on a Unix socket
in the run directory and forwards each GET to the address in its Host header, from inside
that address's namespace: each request has a thread of its own, which joins the namespace
(setns acts on the calling thread only) before it connects.

    python -m harness.runners._relay SOCKET HOSTS_JSON    ({"198.18.0.1": "/run/netns/..."})
"""

from __future__ import annotations

import http.client
import json
import os
import socketserver
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

from harness import _linux

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class _Handler(BaseHTTPRequestHandler):
    netns: dict[str, str]
    protocol_version = "HTTP/1.0"  # one request per connection, hence per thread

    def do_GET(self) -> None:
        host, _, port = (self.headers.get("Host") or "").partition(":")
        if host not in self.netns:
            self._reply(403, b"the relay only reaches the run's instances\n")
            return
        try:
            _linux.setns(self.netns[host])
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
    # The supervisor scrapes every instance at once. socketserver's default backlog (5) let
    # a non-blocking connect beyond it fail (EAGAIN on a Unix socket, seen by the client as
    # a broken connection): most of a 20-instance run's scrapes were lost.
    request_queue_size = 4096


def main() -> None:
    """Serve until killed."""
    path = sys.argv[1]
    with open(sys.argv[2]) as f:
        netns = json.load(f)
    handler = type("Handler", (_Handler,), {"netns": netns})
    with _Server(path, handler) as server:
        os.chmod(path, 0o600)
        server.serve_forever()


if __name__ == "__main__":
    main()
