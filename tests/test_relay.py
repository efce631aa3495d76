"""The relay the supervisor scrapes instances through on local:netns: it takes as many
requests at once as there are instances (the scraper asks them all together)."""

from __future__ import annotations

import collections
import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from .conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the relay's setns needs root")


class _Endpoint(http.server.ThreadingHTTPServer):
    # A class attribute: the backlog is passed to listen() in the constructor, so setting it
    # on the instance afterwards left the default 5, and a burst of 100 connects had SYNs
    # dropped and retried past the relay's 5 s timeout on a loaded machine.
    request_queue_size = 1024
    daemon_threads = True


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"up 1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _relay(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """The relay (as the supervisor starts it) in front of a metrics endpoint on loopback,
    "in" this process's own namespace: its socket, the endpoint's port."""
    server = _Endpoint(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hosts = tmp_path / "relay.json"
    hosts.write_text(json.dumps({"127.0.0.1": f"/proc/{os.getpid()}/ns/net"}))
    sock = tmp_path / "relay.sock"
    relay = subprocess.Popen([sys.executable, "-m", "harness.runners._relay", str(sock),
                              str(hosts)], cwd=ROOT)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline and relay.poll() is None, "no relay socket"
            time.sleep(0.05)
        yield sock, server.server_address[1]
    finally:
        relay.kill()
        relay.wait()
        server.shutdown()


def test_the_relay_answers_a_scrape_of_a_hundred_instances_at_once(tmp_path: Path) -> None:
    """socketserver's default backlog of 5 broke most concurrent connections: a 20-instance
    spacemesh run had some instances scraped once in 25 s."""
    with _relay(tmp_path) as (sock, port):

        async def scrape_all() -> collections.Counter[str]:
            got: collections.Counter[str] = collections.Counter()
            transport = httpx.AsyncHTTPTransport(uds=str(sock))
            async with httpx.AsyncClient(transport=transport, timeout=10) as client:

                async def one() -> None:
                    try:
                        r = await client.get(f"http://127.0.0.1:{port}/metrics")
                        got[f"{r.status_code} {r.text.strip()}"] += 1
                    except httpx.HTTPError as e:
                        got[f"{type(e).__name__}: {e}"] += 1

                for _ in range(2):
                    async with trio.open_nursery() as nursery:
                        for _ in range(100):
                            nursery.start_soon(one)
            return got

        assert trio.run(scrape_all) == {"200 up 1": 200}
