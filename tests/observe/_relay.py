"""A node of the live tracing test: receives messages on TCP, traces them, forwards them.

    python _relay.py ID LISTEN_IP NEXT_IP|- TRACE_PATH COUNT ORIGIN(0|1) FROM_ID

Writes trace.jsonl lines as the Spacemesh nodes do (publish / receive / deliver).
"""

from __future__ import annotations

import json
import socket
import sys
import time

PORT = 7450


def stamp(kind: str, msg: str, frm: str | None, to: str | None) -> dict[str, object]:
    return {
        "ts": time.time(),
        "mono": time.clock_gettime(time.CLOCK_MONOTONIC),
        "kind": kind,
        "msg_id": msg,
        "topic": "relay",
        "from": frm,
        "to": to,
        "size": 32,
    }


def connect(ip: str, me: str) -> socket.socket:
    deadline = time.monotonic() + 15
    while True:
        try:
            s = socket.create_connection((ip, PORT), timeout=2, source_address=(me, 0))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    me_id, me_ip, next_ip, trace_path, count, origin, from_id = sys.argv[1:8]
    trace = open(trace_path, "a", buffering=1)  # noqa: SIM115
    out = None if next_ip == "-" else connect(next_ip, me_ip)
    if origin == "1":
        time.sleep(0.3)  # the relays behind connect first
        for k in range(int(count)):
            msg = f"r{k:03d}"
            trace.write(json.dumps(stamp("publish", msg, me_id, None)) + "\n")
            assert out is not None
            out.sendall(msg.encode() + b"\n")
            time.sleep(0.08)
        assert out is not None
        out.close()
        return
    srv = socket.create_server((me_ip, PORT))
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for line in conn.makefile("rb"):
        msg = line.decode().strip()
        trace.write(json.dumps(stamp("receive", msg, from_id, me_id)) + "\n")
        trace.write(json.dumps(stamp("deliver", msg, None, me_id)) + "\n")
        if out is not None:
            out.sendall(msg.encode() + b"\n")
    if out is not None:
        out.close()


if __name__ == "__main__":
    main()
