"""Clock skew on real programs: a shell loop under libfaketime and a Python process through
the SDK read the same `fake(t)`, and follow a skew changed while they run."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness._clock import InstanceClock, find_libfaketime
from harness._clockfile import Skew

from .conftest import ROOT

# bash itself stays up (its $EPOCHREALTIME: libfaketime's cache across a change), while a
# new `date` starts every round (the shared anchor: a process started any time).
LOOP = "while :; do echo $EPOCHREALTIME; date +%s.%N; sleep 0.1; done"
# select, not time.sleep: libfaketime 0.9.10 breaks the absolute CLOCK_MONOTONIC sleeps of
# Python 3.11+'s time.sleep (EINVAL) when it leaves monotonic time alone (docs/contracts.md).
SDK_LOOP = ("import select\nfrom harness.sdk import Clock\nc = Clock.from_environ()\n"
            "while True:\n    print(c.time(), flush=True)\n    select.select([], [], [], 0.1)\n")
SLACK = 0.75  # between a reading and the test seeing its line (a loaded machine), at 1.5x
WAIT_S = 5.0  # a change must show well within this (libfaketime: the next second)


@pytest.fixture
def clock(tmp_path: Path) -> Iterator[InstanceClock]:
    find_libfaketime()  # installed by `nox` (RUNTIME_DEBS): a one-line error without it
    with InstanceClock(tmp_path, f"test-{os.getpid()}") as c:
        yield c


class Reader:
    """A program printing clock readings, one line each; each line comes with the real time
    it arrived."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True,
                                     cwd=ROOT, start_new_session=True)  # fmt: skip

    def line(self) -> tuple[float, list[float]]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        assert ready, "the program printed nothing for 10 s"
        text = self.proc.stdout.readline()
        assert text, f"the program ended (status {self.proc.wait()})"
        return time.time(), [float(v) for v in text.split()]

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _agrees(skew: Skew, arrived: float, readings: list[float]) -> bool:
    return all(_fits(skew, arrived, r) for r in readings)


def _fits(skew: Skew, arrived: float, reading: float) -> bool:
    expected = skew.at(arrived)
    return expected - SLACK <= reading <= expected + 0.01


def _follow(reader: Reader, old: Skew, new: Skew, streak: int = 4) -> float:
    """Read until `streak` lines in a row agree with `new` (each line before with `old` or
    `new`: a long-lived process may still hold the old while a new one reads the new);
    how long after the change the streak began."""
    began, count = 0.0, 0
    while count < streak:
        arrived, readings = reader.line()
        if _agrees(new, arrived, readings):
            began, count = began if count else arrived, count + 1
            continue
        count = 0
        assert all(_fits(old, arrived, r) or _fits(new, arrived, r) for r in readings), (
            arrived, readings, old, new)
        assert arrived - new.since < WAIT_S, f"still {readings} {WAIT_S} s after {new}"
    return began - new.since


def _run(clock: InstanceClock, skews: list[tuple[float, float]], env: dict[str, str],
         argv: list[str]) -> list[float]:
    old = clock.set(*skews[0])
    reader = Reader(argv, env)
    lags = []
    try:
        for _ in range(10):
            arrived, readings = reader.line()
            assert _agrees(old, arrived, readings), (arrived, readings, old)
        for offset, drift in skews[1:]:
            new = clock.set(offset, drift)
            lags.append(_follow(reader, old, new))
            for _ in range(20):  # and it keeps to the new skew, drift included
                arrived, readings = reader.line()
                assert _agrees(new, arrived, readings), (arrived, readings, new)
            old = new
    finally:
        reader.close()
    print(f"a change was seen after {', '.join(f'{lag:.2f}' for lag in lags)} s")
    return lags


SKEWS = [(1000.0, 0.0), (-500.0, 0.0), (20.0, 0.5), (-20.0, -0.5), (0.0, 0.0)]


def test_a_shell_loop_under_libfaketime_reads_the_skew_and_its_changes(
    clock: InstanceClock,
) -> None:
    # The anchor (the clock's creation) well before the skews' `since`: were it each
    # process's own start, a drift would put `date` seconds off.
    time.sleep(3)
    env = clock.environ({**os.environ, "LC_ALL": "C"})
    _run(clock, SKEWS, env, ["bash", "-c", LOOP])


def test_a_python_process_reads_the_same_through_the_sdk(clock: InstanceClock) -> None:
    env = {**os.environ, "TEST_CLOCK_FILE": str(clock.path)}
    _run(clock, SKEWS, env, [sys.executable, "-c", SDK_LOOP])


def test_a_python_process_under_libfaketime_does_not_count_the_skew_twice(
    clock: InstanceClock,
) -> None:
    env = {**clock.environ(os.environ), "TEST_CLOCK_FILE": str(clock.path)}
    _run(clock, SKEWS[:3], env, [sys.executable, "-c", SDK_LOOP])


def test_nothing_is_left_in_dev_shm_when_programs_are_killed(clock: InstanceClock) -> None:
    def ours() -> set[str]:
        return {n for n in os.listdir("/dev/shm") if "faketime" in n or clock.key in n}

    before = ours()
    clock.set(3600.0)
    env = clock.environ(os.environ)
    for _ in range(3):  # SIGKILL: no libfaketime process can clean up after itself
        reader = Reader(["bash", "-c", LOOP], env)
        reader.line()
        reader.close()
    assert ours() - before == {f"harness-ft-{clock.key}", f"sem.harness-ft-{clock.key}"}
    clock.close()
    assert ours() == before - {f"harness-ft-{clock.key}", f"sem.harness-ft-{clock.key}"}
