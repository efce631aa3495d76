"""The plan's sync names: what the servers, the clients and a composition share."""

from __future__ import annotations

SERVERS_TOPIC = "nats:servers"
"""Each server's `{"id", "ip", "port"}`, published once by its launcher's first start."""

LEADER_TOPIC = "nats:leader"
"""The stream leader's instance id (a JSON string), published whenever it changes."""

FOLLOWERS_TOPIC = "nats:followers"
"""The other servers' instance ids (a JSON list, sorted), published with each leader."""

FOLLOWER_TOPIC = "nats:follower"
"""The first of those (a JSON string): one follower to pause or kill."""

CLIENTS_DONE = "clients-done"
"""Signalled by every client once it has checked (or failed): the servers then stop."""

STREAM_READY = "stream-ready"
"""Signalled by each client once the stream exists with its replicas and it can publish."""


def published(count: int) -> str:
    """The state a client signals when `count` of its messages are acknowledged."""
    return f"published-{count}"


def outage(n: int) -> str:
    """The state a client signals when its `n`-th stretch of unacknowledged publishes starts."""
    return f"outage-{n}"


def recovered(n: int) -> str:
    """The state a client signals when a publish is acknowledged again after outage `n`."""
    return f"recovered-{n}"


CLIENT_PORT = 4222
CLUSTER_PORT = 6222
MONITOR_PORT = 8222
