"""A lossy link that retransmits (a shape fault in simulation) behaves as TCP does: a lost
frame comes late, the frames behind it wait, and once the loss has ended it costs no more
than the retransmission timer then running."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
import trio.testing

from scenarios.spacemesh import MemoryLink, MemoryNetwork
from scenarios.spacemesh._memnet import RTO

DELAY = 0.05
A, B = "10.0.0.1", "10.0.0.2"


def _lossy_then_healed(seed: int, loss: float, lossy_for: float, sends: int,
                       ) -> tuple[float, list[tuple[float, bytes]], float]:  # fmt: skip
    """Frames sent every 0.1 s from A to B while A -> B loses `loss` of the tries (with
    retransmission) for `lossy_for` seconds, then one more frame 10 s after the heal: when
    the loss began, every frame's arrival time, and when the loss ended."""
    out: dict[str, object] = {}

    async def main() -> None:
        net = MemoryNetwork(seed=seed, default=MemoryLink(delay=DELAY))
        arrivals: list[tuple[float, bytes]] = []
        async with anyio.create_task_group() as tg:
            await tg.start(net.run)
            listener = await net.transport(f"{B}:1").listen(f"{B}:1")

            async def keep(conn: object) -> None:
                receive: Callable[[], Awaitable[list[bytes]]] = conn.receive_many  # type: ignore[attr-defined]
                while True:
                    for frame in await receive():
                        arrivals.append((anyio.current_time(), frame))

            tg.start_soon(listener.serve, keep)
            dialer = await net.transport(A).dial(f"{B}:1")
            net.set_link(A, B, MemoryLink(DELAY, loss=loss, retransmit=True), both=False)
            start = anyio.current_time()
            for i in range(sends):
                await dialer.send(b"%d" % i)
                await anyio.sleep(lossy_for / sends)
            net.reset_link(A, B)
            healed = anyio.current_time()
            await anyio.sleep(10)
            await dialer.send(b"after")
            await anyio.sleep(1)
            out.update(start=start, arrivals=arrivals, healed=healed)
            tg.cancel_scope.cancel()

    anyio.run(main, backend="trio",
              backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)})
    return out["start"], out["arrivals"], out["healed"]  # type: ignore[return-value]


def test_a_frame_lost_until_the_heal_arrives_on_the_next_try_with_those_behind_it() -> None:
    """Every try lost for 2 s: the first frame is tried again after 0.2, 0.4, 0.8 and 1.6 s
    (3.0 s after it was sent, the first try after the heal) and gets through then, the 19
    frames sent behind it with it, in order; a frame sent later takes the link's delay."""
    start, arrivals, healed = _lossy_then_healed(seed=1, loss=1.0, lossy_for=2.0, sends=20)
    assert [f for _, f in arrivals] == [b"%d" % i for i in range(20)] + [b"after"]
    retried = start + RTO * (1 + 2 + 4 + 8) + DELAY
    assert healed < retried
    assert [t for t, _ in arrivals[:20]] == pytest.approx([retried] * 20)
    assert arrivals[20][0] == pytest.approx(healed + 10 + DELAY)


@pytest.mark.parametrize("seed", range(8))
def test_a_loss_that_has_ended_delays_no_frame_beyond_the_timer_then_running(seed: int) -> None:
    """64 % of the tries lost for 3 s: the longest timer running at the heal is 3.2 s
    (0.2 + 0.4 + 0.8 + 1.6 s fit in the 3 s), so every frame is in by then. (Before, each
    frame drew all its losses when sent, as if the loss went on: a frame could come tens
    of seconds late and hold the stream that long.)"""
    start, arrivals, healed = _lossy_then_healed(seed=seed, loss=0.64, lossy_for=3.0, sends=30)
    assert [f for _, f in arrivals] == [b"%d" % i for i in range(30)] + [b"after"]
    assert max(t for t, _ in arrivals[:30]) <= healed + 16 * RTO + DELAY + 1e-9
    assert any(t > start + 0.2 + DELAY for t, _ in arrivals[:30])  # some were lost
