"""The nats-server configuration of one server of the cluster."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from scenarios.nats._names import CLIENT_PORT, CLUSTER_PORT, MONITOR_PORT

CLUSTER_NAME = "harness"


def server_config(name: str, ip: str, peers: Mapping[str, str], store_dir: Path) -> str:
    """The config of server `name` (its instance id) listening on `ip` only, with routes to
    every server of `peers` (instance id -> ip, itself included: a route to oneself is
    ignored) and JetStream storing in `store_dir`."""
    routes = [f"nats-route://{peers[p]}:{CLUSTER_PORT}" for p in sorted(peers) if p != name]
    q = json.dumps  # a JSON string is a valid quoted string in nats-server's config syntax
    return "\n".join([
        f"server_name: {q(name)}",
        f"listen: {q(f'{ip}:{CLIENT_PORT}')}",
        f"http: {q(f'{ip}:{MONITOR_PORT}')}",
        "jetstream {",
        f"  store_dir: {q(str(store_dir))}",
        "  max_memory_store: 64MB",
        "  max_file_store: 1GB",
        "}",
        "cluster {",
        f"  name: {q(CLUSTER_NAME)}",
        f"  listen: {q(f'{ip}:{CLUSTER_PORT}')}",
        f"  routes: [{', '.join(q(r) for r in routes)}]",
        "}",
        "",
    ])
