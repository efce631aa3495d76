"""The host's CPU pressure over a run: after it (`cpu_load`), live (`SaturationWatch`), and
the telemetry sampler that feeds the watch."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from harness.observe import _telemetry
from harness.observe._cpuload import SATURATED_SHARE, SaturationWatch, cpu_load
from harness.observe._stored import read_telemetry
from harness.observe._telemetry import TelemetrySampler


def _cpu(*points: tuple[float, float]) -> list[dict[str, object]]:
    """"cpu" records at (seconds, microseconds waited so far), out of order on purpose."""
    return [{"kind": "cpu", "mono": 100 + t, "wait_us_total": int(w)} for t, w in reversed(points)]


def test_the_cpu_load_is_the_share_waited_and_the_seconds_of_saturated_stretches() -> None:
    # 0-4 s: 10 % waited; 4-6 s: 90 %; 6-10 s: exactly the threshold; 10-12 s: none.
    points = _cpu((0, 0), (4, 0.4e6), (6, 2.2e6), (10, 2.2e6 + SATURATED_SHARE * 4e6), (12, 4.2e6))
    load = cpu_load([*points, {"kind": "link", "mono": 105}])
    assert load is not None
    assert load.sampled_s == 12 and load.saturated_s == 6
    assert load.waited == pytest.approx(4.2 / 12)


def test_without_two_cpu_samples_there_is_no_load() -> None:
    assert cpu_load([]) is None
    assert cpu_load(_cpu((0, 0))) is None
    assert cpu_load(_cpu((3, 0), (3, 5))) is None


def test_the_watch_tells_once_when_the_saturated_seconds_add_up() -> None:
    watch = SaturationWatch(after_s=5)
    said = [watch.add(t, w) for t, w in [
        (0, 0), (2, 1.8e6),  # 90 %: 2 s saturated
        (4, 2.0e6),  # 10 %: not counted
        (6, 3.6e6),  # 80 %: 4 s
        (7, 4.4e6),  # 80 %: 5 s, said
        (9, 6.4e6),  # still saturated: said already
    ]]  # fmt: skip
    assert said[:4] == [None] * 4 and said[5] is None
    assert said[4] is not None and said[4].startswith(
        "the host's CPU has been saturated for 5 s of this run (runnable tasks waited for a "
        "CPU 84% of that time)")


def test_the_watch_stays_quiet_on_a_busy_but_unsaturated_host() -> None:
    watch = SaturationWatch(after_s=1)
    assert all(watch.add(t, t * 0.45e6) is None for t in range(100))


def test_the_sampler_tells_each_cpu_sample_as_it_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    waited = iter(range(1000, 10_000, 1000))
    monkeypatch.setattr(_telemetry, "cpu_wait_us_total", lambda: next(waited))
    told: list[tuple[float, int]] = []

    async def main() -> None:
        three = trio.Event()

        def tell(mono: float, waited: int) -> None:
            told.append((mono, waited))
            if len(told) == 3:
                three.set()

        async with trio.open_nursery() as nursery:
            s = TelemetrySampler(tmp_path, {}, on_cpu=tell)
            await nursery.start(s.run, 0.01)
            with trio.fail_after(30):  # samples, not time: a busy machine delays them
                await three.wait()
            nursery.cancel_scope.cancel()

    trio.run(main)
    written = [(r["mono"], r["wait_us_total"]) for r in read_telemetry(tmp_path)
               if r["kind"] == "cpu"]  # fmt: skip
    assert len(told) >= 3 and told == written
