"""A large item goes to every subscriber without a copy per connection."""

from __future__ import annotations

import socket
import tracemalloc

import orjson
import pytest
import trio

from ._util import run, running_server

ITEM = "z" * (15 << 20)  # as JSON: 15 MiB and its two quotes


def _slow_reader(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(path)
    return s


@pytest.mark.parametrize("backlog", [True, False])
def test_slow_readers_of_a_large_item_share_it(backlog: bool) -> None:
    """40 subscribers that do not read one 15 MiB item held 600 MB of copies of it (each
    connection's frame, then its batch); a reader that reads gets the item whole."""

    async def main() -> None:
        async with running_server() as (path, state, _):
            if backlog:  # published before they subscribe: sent from the topic
                state.publish("big", ITEM)
            readers = [_slow_reader(path) for _ in range(40)]
            for s in readers:
                s.sendall(b'{"id":1,"op":"subscribe","topic":"big"}\n')
            await trio.sleep(0.3)
            tracemalloc.start()
            try:
                if not backlog:  # published to them: sent as replies
                    state.publish("big", ITEM)
                await trio.sleep(0.5)
                held, _ = tracemalloc.get_traced_memory()  # (the peak is publish's own)
            finally:
                tracemalloc.stop()
            assert held < 4 * len(ITEM), f"{held / 2**20:.0f} MiB held for 40 readers"
            s = readers[0]
            s.setblocking(False)
            data = b""
            with trio.fail_after(20):
                while data.count(b"\n") < 2:
                    await trio.lowlevel.wait_readable(s)
                    data += s.recv(1 << 20)
            ok, item = (orjson.loads(line) for line in data.splitlines())
            assert ok == {"id": 1, "ok": True}
            assert item == {"id": 1, "seq": 1, "item": ITEM}
            for r in readers:
                r.close()

    run(main)
