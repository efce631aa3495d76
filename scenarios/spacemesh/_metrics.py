"""Prometheus metrics of one node, in the node's own registry (never the global one)."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

M = TypeVar("M", Counter, Histogram)


class ByTopic(Generic[M]):
    """A labelled metric's child per topic, looked up once (``labels()`` costs a lock, a
    tuple and a dict lookup on every call: too much for a per-frame counter)."""

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._children: dict[str, M] = {}

    def __call__(self, topic: str) -> M:
        child = self._children.get(topic)
        if child is None:
            child = self._children[topic] = self.metric.labels(topic)
        return child


class NodeMetrics:
    """The ``spacemesh_*`` series one node exposes."""

    def __init__(self) -> None:
        # No `_created` series (go-spacemesh's Go client has none): they were a fifth of
        # the lines every scrape renders and parses. A switch for the whole process.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.peers = Gauge("spacemesh_peers", "Connected gossip peers", registry=r)
        self.received = Counter(
            "spacemesh_messages_received",
            "Gossip messages received (duplicates included)",
            ["topic"],
            registry=r,
        )
        self.delivered = Counter(
            "spacemesh_messages_delivered",
            "Gossip messages delivered to the protocol (first copy, valid)",
            ["topic"],
            registry=r,
        )
        self.latency = Histogram(
            "spacemesh_message_latency_seconds",
            "From the origin's publish to delivery here",
            ["topic"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.layer_verified = Gauge(
            "spacemesh_layer_verified", "Last layer the tortoise verified", registry=r
        )
        self.layer_applied = Gauge("spacemesh_layer_applied", "Last layer applied", registry=r)
        self.layer_current = Gauge("spacemesh_layer_current", "The clock's layer", registry=r)
        self.atxs = Counter("spacemesh_atxs_received", "Valid ATXs stored", registry=r)
        self.atxs_published = Counter(
            "spacemesh_atxs_published", "ATXs this node published", registry=r
        )

        self.received_by = ByTopic(self.received)
        self.delivered_by = ByTopic(self.delivered)
        self.latency_by = ByTopic(self.latency)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)
