"""Clock skew: the one formula, the clock file both readers share, the supervisor's side and
the SDK's (tests/test_clock_live.py runs real programs under libfaketime)."""

from __future__ import annotations

import fcntl
import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import _clock
from harness._clock import InstanceClock, find_libfaketime
from harness._clockfile import REAL, Skew
from harness._errors import EnvironmentProblem
from harness._runid import new_run_id
from harness.sdk import Clock, RunEnv

_t = st.floats(1e9, 3e9)
_offset = st.floats(-1e6, 1e6)
_drift = st.floats(-0.5, 0.5)


@given(_offset, _drift, _t, st.floats(0, 1e5))
def test_the_formula(offset: float, drift: float, since: float, later: float) -> None:
    skew = Skew(offset, drift, since)
    t = since + later
    assert skew.at(t) == pytest.approx(t + offset + drift * (t - since), abs=1e-6)
    assert skew.at(since) == pytest.approx(since + offset, abs=1e-6)  # a jump to `offset`
    assert skew.real(skew.at(t)) == pytest.approx(t, abs=1e-5)


@given(_offset, _drift, _t, st.floats(0, 1e5), _t)
def test_what_libfaketime_computes_from_the_file_is_the_formula(
    offset: float, drift: float, since: float, later: float, anchor: float
) -> None:
    # libfaketime, for "+O xR" and the shared start time `anchor`:
    #   fake(t) = anchor + O + R * (t - anchor)      (libfaketime.c, fake_clock_gettime)
    skew = Skew(offset, drift, since)
    line = skew.render(anchor).splitlines()[1]
    assert not set(line) & set("mhdy"), line  # libfaketime would read a unit
    o_text, r_text = line.split(" x")
    o, r = float(o_text), float(r_text)
    t = since + later
    assert anchor + o + r * (t - anchor) == pytest.approx(skew.at(t), abs=1e-5)


@given(_offset, _drift, _t)
def test_the_file_reads_back(offset: float, drift: float, since: float) -> None:
    skew = Skew(offset, drift, since)
    assert Skew.parse(skew.render(since - 5)) == skew


def test_a_new_skew_is_a_jump_and_offset_at_makes_it_continuous(tmp_path: Path) -> None:
    clock = InstanceClock(tmp_path, "unit-0")
    clock.set(10.0, 0.1, now=1000.0)
    at_1100 = clock.skew.at(1100.0)
    assert at_1100 == pytest.approx(1100 + 10 + 10)
    clock.set(-3.0, 0.0, now=1100.0)  # a jump: the new offset from that moment
    assert clock.skew.at(1100.0) == pytest.approx(1097.0)
    clock.set(10.0, 0.1, now=1000.0)
    clock.set(clock.offset_at(1100.0), -0.2, now=1100.0)  # continuous
    assert clock.skew.at(1100.0) == pytest.approx(at_1100)
    assert clock.skew.at(1110.0) == pytest.approx(at_1100 + 10 - 2)


@pytest.mark.parametrize("offset, drift", [(0.0, 0.6), (0.0, -0.51), (math.nan, 0.0),
                                           (math.inf, 0.0)])
def test_a_bad_skew_is_refused_and_changes_nothing(tmp_path: Path, offset: float,
                                                   drift: float) -> None:
    clock = InstanceClock(tmp_path, "unit-0")
    clock.set(1.0, 0.0, now=5.0)
    before = clock.path.read_text()
    with pytest.raises(ValueError, match=r"drift|finite"):
        clock.set(offset, drift)
    assert clock.path.read_text() == before and clock.skew == Skew(1.0, 0.0, 5.0)


def test_the_clock_file_is_written_at_the_first_skew_and_until_then_reads_real_time(
        tmp_path: Path) -> None:
    clock = InstanceClock(tmp_path, "unit-0")
    sdk = Clock(clock.path, check_every=0)
    assert clock.path == tmp_path / "clock"
    assert list(tmp_path.iterdir()) == [] and sdk.skew() == REAL
    clock.set(3.0, 0.0, now=7.0)
    assert Skew.parse(clock.path.read_text()) == Skew(3.0, 0.0, 7.0) == sdk.skew()
    assert [p.name for p in tmp_path.iterdir()] == ["clock"]  # no temporary file left
    clock.set(0.0, 0.0, now=8.0)
    assert Skew.parse(clock.path.read_text()) == sdk.skew() == Skew(0.0, 0.0, 8.0)


def test_a_program_under_libfaketime_has_a_clock_file_from_its_start(tmp_path: Path) -> None:
    with InstanceClock(tmp_path, f"unit-{os.getpid()}-file") as clock:
        env = clock.environ({}, library=tmp_path / "libfaketimeMT.so.1")
        assert env["FAKETIME_TIMESTAMP_FILE"] == str(clock.path)
        assert Skew.parse(clock.path.read_text()) == REAL


def test_a_key_that_cannot_name_a_shared_object_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clock key"):
        InstanceClock(tmp_path, "miners/0")


def test_the_sdk_clock_reads_the_supervisors_file(tmp_path: Path) -> None:
    supervisor = InstanceClock(tmp_path, "unit-0")
    sdk = Clock(supervisor.path, check_every=0)
    assert sdk.offset() == pytest.approx(0, abs=1e-3)
    supervisor.set(-42.5, 0.0)
    assert sdk.offset() == pytest.approx(-42.5, abs=1e-3)
    import time

    assert sdk.time() - time.time() == pytest.approx(-42.5, abs=0.05)
    skew = supervisor.set(7.0, 0.25, now=time.time() - 4)  # set 4 s ago: 1 s drifted
    assert sdk.skew() == skew and sdk.offset() == pytest.approx(8.0, abs=0.05)
    assert sdk.monotonic() == pytest.approx(time.monotonic(), abs=0.05)  # not skewed


def test_the_sdk_clock_stats_the_file_at_most_every_check_interval(tmp_path: Path) -> None:
    supervisor = InstanceClock(tmp_path, "unit-0")
    supervisor.set(100.0)
    sdk = Clock(supervisor.path, check_every=3600)
    assert sdk.offset() == pytest.approx(100.0, abs=1e-3)
    supervisor.set(-100.0)
    assert sdk.offset() == pytest.approx(100.0, abs=1e-3)  # not looked at again yet
    sdk._next_check = float("-inf")  # the interval is over
    assert sdk.offset() == pytest.approx(-100.0, abs=1e-3)


def test_without_a_clock_file_the_sdk_clock_is_real(tmp_path: Path) -> None:
    import time

    for clock in (Clock(None), Clock(tmp_path / "never-written", check_every=0)):
        assert clock.skew() == REAL
        assert clock.time() == pytest.approx(time.time(), abs=0.05)


def test_a_broken_clock_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "clock").write_text("+5 x1\n")
    with pytest.raises(ValueError, match="not a harness clock file: '\\+5 x1'"):
        Clock(tmp_path / "clock").time()


def test_the_environment_of_a_program_under_libfaketime(tmp_path: Path) -> None:
    lib = tmp_path / "libfaketimeMT.so.1"
    with InstanceClock(tmp_path, f"unit-{os.getpid()}") as clock:
        base = {"PATH": "/bin", "LD_PRELOAD": "/opt/other.so", "FAKETIME": "+1d",
                "FAKETIME_XRESET": "1", "FAKETIME_NO_CACHE": "1", "FAKETIME_DISABLE_SHM": "1"}
        env = clock.environ(base, library=lib)
        name = f"/harness-ft-unit-{os.getpid()}"
        assert env == {
            "PATH": "/bin",
            "LD_PRELOAD": f"{lib}:/opt/other.so",
            "FAKETIME_TIMESTAMP_FILE": str(clock.path),
            "FAKETIME_CACHE_DURATION": "0",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_SHARED": f"{name} {name}",
        }
        assert clock.environ(env, library=lib) == env  # the same again
        shm = Path("/dev/shm") / name[1:]
        assert shm.is_file() and (shm.parent / f"sem.{name[1:]}").is_file()
    assert not shm.exists() and not (shm.parent / f"sem.{name[1:]}").exists()


def test_the_shared_start_time_is_the_anchor_the_file_is_relative_to(tmp_path: Path) -> None:
    with InstanceClock(tmp_path, f"unit-{os.getpid()}") as clock:
        clock.environ({}, library=tmp_path / "lib.so")
        raw = (Path("/dev/shm") / f"harness-ft-unit-{os.getpid()}").read_bytes()
        ticks, idx, sec, nsec, *_ = _clock._SHARED.unpack(raw[:_clock._SHARED.size])
        assert (ticks, idx) == (0, 0) and 0 <= nsec < 1_000_000_000
        skew = clock.set(2.0, 0.5, now=sec - 10.0)
        o = float(clock.path.read_text().splitlines()[1].split()[0])
        assert o == pytest.approx(skew.offset_at(sec + nsec / 1e9), abs=1e-6)


def test_leftovers_of_a_killed_supervisor_are_removed_by_run_id(tmp_path: Path) -> None:
    run_id = new_run_id()
    lease = _clock.RunLease(run_id)  # a run starting meanwhile must take these for a live run's
    lease.hold()
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        InstanceClock(tmp_path / str(i), f"{run_id}-{i}").environ({}, library=tmp_path / "lib")
    other = InstanceClock(tmp_path, f"{run_id}0-1")  # another run's id that starts the same
    other.environ({}, library=tmp_path / "lib.so")
    # A damaged run record's id names nothing: "2" was every clock of 2026's runs.
    assert _clock.remove_shared(run_id[:1]) == _clock.remove_shared("") == []
    removed = _clock.remove_shared(run_id)
    assert removed == sorted(f"{s}harness-ft-{run_id}-{i}" for i in range(2)
                             for s in ("", "sem."))  # fmt: skip
    assert (Path("/dev/shm") / f"harness-ft-{run_id}0-1").exists()
    other.close()
    lease.close()


def _objects(shm: Path, run_id: str, seqs: int = 2) -> set[str]:
    names = {f"{s}harness-ft-{run_id}-{i}" for i in range(seqs) for s in ("", "sem.")}
    for name in names:
        (shm / name).write_bytes(b"\0")
    return names


def test_a_killed_run_s_clocks_go_without_its_record_and_a_live_run_s_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supervisor killed (SIGKILL) left its clocks in /dev/shm, and only its run record
    led to them: with its outputs deleted, nothing removed them."""
    monkeypatch.setattr(_clock, "SHM_DIR", tmp_path)
    live, killed, old = new_run_id(), new_run_id(), new_run_id()
    assert len({live, killed, old}) == 3
    lease = _clock.RunLease(live)
    lease.hold()
    kept = _objects(tmp_path, live)
    gone = _objects(tmp_path, killed)
    # a lease its killed holder left: the file stays, the kernel let the lock go
    (tmp_path / f"harness-ft-{killed}.lock").write_bytes(b"")
    alone = new_run_id()  # one whose objects went by its record (`remove_shared`)
    (tmp_path / f"harness-ft-{alone}.lock").write_bytes(b"")
    # no lease at all: a harness from before leases, whose live runs keep theirs
    others = _objects(tmp_path, old, 1) | {"harness-ft-unit-7", "sem.harness-ft-unit-7",
                                           "unrelated"}  # (the last three: no run id)
    for name in others:
        (tmp_path / name).write_bytes(b"")
    assert sorted(_clock.remove_stale_shared()) == sorted(
        gone | {f"harness-ft-{killed}.lock", f"harness-ft-{alone}.lock"})
    assert {p.name for p in tmp_path.iterdir()} == kept | others | {f"harness-ft-{live}.lock"}
    lease.close()  # as the run ends: its objects go first, then its lease
    assert not (tmp_path / f"harness-ft-{live}.lock").exists()
    assert _clock.remove_stale_shared() == []


def test_a_lease_a_sweep_removed_before_it_was_locked_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep that found a run's lease made but not yet locked took it for a dead run's
    and removed it: the run then locked a file nobody could see, and once it was killed its
    objects, without a lease, stayed for good."""
    monkeypatch.setattr(_clock, "SHM_DIR", tmp_path)
    run_id = new_run_id()
    lease = _clock.RunLease(run_id)
    real = fcntl.flock
    calls = []

    def swept_first(fd: int, op: int) -> None:
        if op == fcntl.LOCK_EX:  # the run's (the sweep's own do not block)
            calls.append(op)
            if len(calls) == 1:  # between the run's open and its lock: a sweep
                assert _clock.remove_stale_shared() == [f"harness-ft-{run_id}.lock"]
        real(fd, op)

    monkeypatch.setattr(_clock.fcntl, "flock", swept_first)
    lease.hold()
    monkeypatch.setattr(_clock.fcntl, "flock", real)
    assert len(calls) == 2  # then locked a second file, one a sweep can see
    names = _objects(tmp_path, run_id)
    assert _clock.remove_stale_shared() == []  # held: the run's objects stay
    assert {p.name for p in tmp_path.iterdir()} == names | {f"harness-ft-{run_id}.lock"}
    lease.close()


def test_a_missing_libfaketime_is_named_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_clock, "LIBRARY", "libfaketimeMT-absent.so.1")
    with pytest.raises(EnvironmentProblem, match=r"libfaketime is not installed.*apt-get install"):
        find_libfaketime()


def test_run_params_carry_the_clock_file_and_the_restarts() -> None:
    from .test_runparams import _minimal

    env = RunEnv.from_environ({**_minimal(), "TEST_CLOCK_FILE": "/r/g/0/clock",
                               "TEST_RESTARTS": "2"})
    assert (env.clock_file, env.restarts, env.is_restart) == ("/r/g/0/clock", 2, True)
    assert env.clock.path == "/r/g/0/clock"
    first = RunEnv.from_environ(_minimal())
    assert (first.clock_file, first.restarts, first.is_restart) == (None, 0, False)
    assert first.clock.path is None
