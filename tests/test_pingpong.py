"""The pingpong plan's pings: a peer that does not answer fails them naming it, within
max_rtt, rather than crashing on a timeout or hanging to the run's timeout."""

from __future__ import annotations

import socket

import pytest
import trio

from harness import sdk
from scenarios.pingpong.plan import Peer, _ping


async def _ping_fails(peer: Peer) -> str:
    with trio.fail_after(5), pytest.raises(sdk.TestFailure) as e:
        await _ping(peer, rounds=2, max_rtt=0.2)
    return str(e.value)


def test_a_peer_that_accepts_but_never_echoes_fails_the_ping_naming_it() -> None:
    async def main() -> str:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def mute(stream: trio.SocketStream) -> None:
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, mute, listeners)
            reason = await _ping_fails(Peer(3, "127.0.0.1", port))
            nursery.cancel_scope.cancel()
        return reason

    assert trio.run(main) == "peer 3 did not echo ping 0 within max_rtt=0.2s"


def test_a_peer_whose_handshake_never_completes_fails_the_ping_naming_it() -> None:
    """A listener whose accept queue is full drops further SYNs, as a cut link would."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        queued = []
        for _ in range(4):  # fill the accept queue; these connects complete or give up
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            queued.append(s)
        try:
            reason = trio.run(_ping_fails, Peer(2, "127.0.0.1", port))
        finally:
            for s in queued:
                s.close()
    assert reason == f"peer 2 (127.0.0.1:{port}) did not accept a connection within max_rtt=0.2s"
