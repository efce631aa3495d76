"""The instance SDK: what a test program uses to learn its run and coordinate with peers.

    from harness import sdk

    async def case(env: sdk.RunEnv) -> None:
        seq = await env.sync.signal_entry("ready")
        await env.sync.barrier("ready", env.instance_count)

Wall time is `env.clock.time()`, not `time.time()`: the run's clock faults skew it.
Works under Trio and asyncio (`backend` in the manifest, or `sdk.invoke(case, "asyncio")`;
"uvloop" is asyncio on uvloop's event loop).
"""

from harness._runparams import RunEnvError, RunParams
from harness.plans import RoleAllocator, RoleSpec
from harness.sdk._clock import Clock
from harness.sdk._connect import connect
from harness.sdk._invoke import (
    TestFailure,
    TestFunction,
    invoke,
    load_entrypoint,
    run_instance,
    run_on,
)
from harness.sdk._network import INITIALIZED, NetworkClient
from harness.sdk._runenv import RunEnv
from harness.sdk._topic import Topic
from harness.sync import BarrierFailed, Message, SubscriptionFailed, SyncClient, SyncError
from netem._shape import LinkShape

__all__ = [
    "INITIALIZED",
    "BarrierFailed",
    "Clock",
    "LinkShape",
    "Message",
    "NetworkClient",
    "RoleAllocator",
    "RoleSpec",
    "RunEnv",
    "RunEnvError",
    "RunParams",
    "SubscriptionFailed",
    "SyncClient",
    "SyncError",
    "TestFailure",
    "TestFunction",
    "Topic",
    "connect",
    "invoke",
    "load_entrypoint",
    "run_instance",
    "run_on",
]
