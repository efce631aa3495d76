"""Reaching the sync service from an instance's environment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from harness._runparams import RunParams
from harness.sync import CONNECT_PATIENCE_S, SyncClient, SyncError, connect_tcp, connect_unix


@asynccontextmanager
async def connect(params: RunParams) -> AsyncIterator[SyncClient]:
    """A sync client for the instance `params` describe, over its Unix socket or TCP.

    `invoke` connects this way before the test function runs; a program that is not a test
    function (a launcher that ends in `exec`, a helper process beside one) uses it
    directly. It records nothing by itself: no `start`, no outcome."""
    if params.sync_socket:
        connection = connect_unix(params.sync_socket, params.instance_id, params.sync_token)
    elif params.sync_tcp:
        host, _, port = params.sync_tcp.rpartition(":")
        # on a cluster the instance may start before the service is up: it is tried again
        connection = connect_tcp(host, int(port), params.instance_id, params.sync_token,
                                 patience_s=CONNECT_PATIENCE_S)
    else:
        raise SyncError("neither TEST_SYNC_SOCKET nor TEST_SYNC_TCP is set")
    async with connection as sync:
        yield sync
