"""The sync service: barriers, signals and pub/sub for the instances of a run.

The server side (`SyncState`, `SyncServer`) runs inside the supervisor on Trio; the client
(`connect_unix`, `connect_tcp`, `SyncClient`) runs in instances under Trio or asyncio.
The wire protocol is documented in docs/contracts.md (section 4).
"""

from harness.sync._client import (
    CONNECT_PATIENCE_S,
    BarrierFailed,
    Message,
    Subscription,
    SubscriptionFailed,
    SyncClient,
    SyncError,
    connect_tcp,
    connect_unix,
)
from harness.sync._protocol import (
    CONTROL,
    METRICS_TOPIC,
    NETWORK_INITIALIZED,
    EventType,
    ProtocolError,
)
from harness.sync._server import FaultHandler, NetworkHandler, SyncServer
from harness.sync._state import SyncState
from harness.sync._tokens import Tokens

__all__ = [
    "CONNECT_PATIENCE_S",
    "CONTROL",
    "METRICS_TOPIC",
    "NETWORK_INITIALIZED",
    "BarrierFailed",
    "EventType",
    "FaultHandler",
    "Message",
    "NetworkHandler",
    "ProtocolError",
    "Subscription",
    "SubscriptionFailed",
    "SyncClient",
    "SyncError",
    "SyncServer",
    "SyncState",
    "Tokens",
    "connect_tcp",
    "connect_unix",
]
