"""The conductor with actions that only record: overlapping faults, failing actions."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from harness._conductor import Conductor
from harness._fault_actions import FaultActions
from harness.faults import Fault, FaultError, Member
from harness.observe import JsonlWriter
from harness.sync import SyncState


class _Paused:
    """Actions that keep each instance's paused state and when it changed."""

    def __init__(self) -> None:
        self.paused: dict[str, bool] = {"g/0": False, "g/1": False}
        self.changes: list[tuple[float, str, bool]] = []
        self.expects: list[str] = []

    def running(self) -> list[str]:
        return list(self.paused)

    async def gone(self, instances: Sequence[str]) -> None:
        pass

    async def pause(self, instance: str, on: bool, expect: str = "recover") -> bool:
        self.expects.append(expect)
        if self.paused[instance] != on:
            self.paused[instance] = on
            self.changes.append((trio.current_time(), instance, on))
        return True


def test_an_instance_two_timed_pauses_hold_stays_paused_until_the_later_ends(
    tmp_path: Path,
) -> None:
    """Pauses of g/0 over 0-3 s and 1-4 s: the first's end thawed it at 3 s (and the second
    had been recorded as missing it)."""
    faults = [Fault.from_data({"action": "pause", "at": at, "duration": "3s",
                               "targets": {"instances": targets}})
              for at, targets in ((0.5, ["g/0", "g/1"]), (1.5, ["g/0"]))]
    actions = _Paused()
    records: list[dict[str, Any]] = []

    async def main() -> None:
        with JsonlWriter(tmp_path / "faults.jsonl") as log:
            conductor = Conductor(faults, [Member("g/0", "g"), Member("g/1", "g")],
                                  actions, SyncState(["g/0", "g/1"]),  # type: ignore[arg-type]
                                  records.append, log, lambda why: None)
            async with trio.open_nursery() as nursery:
                await nursery.start(conductor.run)
                await trio.sleep(10)
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert actions.changes == [(0.5, "g/0", True), (0.5, "g/1", True),
                               (3.5, "g/1", False), (4.5, "g/0", False)]
    applied = [line for line in (tmp_path / "faults.jsonl").read_text().splitlines()
               if '"applied"' in line]
    assert len(applied) == 2 and not [line for line in applied if "missed" in line]


class _Refusing(_Paused):
    """Actions whose network refuses every cut, as netem refuses one of no direction."""

    async def cut(self, pairs: frozenset[tuple[str, str]], on: bool, by: str) -> None:
        from netem import RequestError

        raise RequestError("no direction given")


def _conduct(tmp_path: Path, faults: list[Fault], actions: _Paused, until: float = 10,
             events: list[dict[str, Any]] | None = None,
             ) -> tuple[list[str], list[dict[str, Any]]]:
    """Play `faults` for `until` virtual seconds: the run's failures, faults.jsonl (and the
    events it records, into `events`)."""
    failures: list[str] = []
    record = (lambda _: None) if events is None else events.append

    async def main() -> None:
        with JsonlWriter(tmp_path / "faults.jsonl") as log:
            conductor = Conductor(faults, [Member("g/0", "g"), Member("g/1", "g")],
                                  actions, SyncState(["g/0", "g/1"]),  # type: ignore[arg-type]
                                  record, log, failures.append)
            async with trio.open_nursery() as nursery:
                await nursery.start(conductor.run)
                await trio.sleep(until)
                conductor.finish(False)
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return failures, [orjson.loads(line) for line in
                      (tmp_path / "faults.jsonl").read_bytes().splitlines()]


def test_a_fault_the_network_refuses_fails_the_run_with_its_reason_not_the_supervisor(
    tmp_path: Path,
) -> None:
    """netem's RequestError from a partition escaped the conductor and ended the supervisor
    in a traceback ("the supervisor failed: RequestError")."""
    fault = Fault.from_data({"action": "partition", "at": 1,
                             "targets": {"instances": ["g/0"]}})
    failures, records = _conduct(tmp_path, [fault], _Refusing())
    assert failures == ["fault 0 could not be played: partition failed: RequestError: "
                        "no direction given"]
    assert [r["step"] for r in records] == ["failed"]


class _Cutting(_Paused):
    async def cut(self, pairs: frozenset[tuple[str, str]], on: bool, by: str) -> None:
        pass


def test_a_partition_s_events_are_of_kind_fault_with_its_own_kind_beside(
    tmp_path: Path,
) -> None:
    """The partition's `kind` took the event's place: {"kind": "halves", ...}, which
    `harness events` printed as a kind of its own and a filter on faults missed."""
    fault = Fault.from_data({"action": "partition", "at": 1, "duration": 1, "kind": "halves"})
    events: list[dict[str, Any]] = []
    _, records = _conduct(tmp_path, [fault], _Cutting(), events=events)
    assert [(r["step"], r.get("kind")) for r in records] == [("applied", "halves"),
                                                             ("undone", None)]
    assert [(e["kind"], e["step"], e.get("partition_kind")) for e in events] == [
        ("fault", "applied", "halves"), ("fault", "undone", None)]


def test_a_fault_whose_condition_never_comes_is_recorded_with_what_it_was(
    tmp_path: Path,
) -> None:
    """Its record had no action nor targets: `harness show` read "(?)"."""
    fault = Fault.from_data({"action": "pause", "at": {"state": "never", "count": 3},
                             "duration": 1, "targets": {"instances": ["g/1"]}})
    _, records = _conduct(tmp_path, [fault], _Paused())
    (failed,) = [r for r in records if r["step"] == "failed"]
    assert failed["action"] == "pause" and failed["targets"] == {"instances": ["g/1"]}


def test_a_refused_limit_leaves_no_cap_behind() -> None:
    """`limit --cpu 0.01 --memory 1MiB` on an instance holding more than 1 MiB: the memory
    limit was refused after the CPU cap was set, and the cap stayed for the rest of the run,
    unrecorded."""
    import types

    import pytest

    from harness._cgroup import CgroupError
    from harness.faults import FaultError

    class Group:
        dirs = {"cpu": Path("/x"), "memory": Path("/y")}

        def __init__(self, refuse: str) -> None:
            self.refuse, self.cpu, self.memory = refuse, None, None

        def set_cpu(self, cpu: float | None) -> None:
            if cpu is not None and self.refuse == "cpu":
                raise CgroupError("cannot write the quota")
            self.cpu = cpu

        def set_memory(self, memory: int | None) -> None:
            if memory is not None and self.refuse == "memory":
                raise CgroupError("memory limit 1048576 bytes is below what g/0 uses now")
            self.memory = memory

    for refuse in ("memory", "cpu"):
        group = Group(refuse)
        sup = types.SimpleNamespace(
            states={"g/0": types.SimpleNamespace(running=True)},
            cgroups=types.SimpleNamespace(group=lambda _, g=group: g))
        actions = FaultActions(sup)  # type: ignore[arg-type]
        with pytest.raises(FaultError, match="limit on g/0: "):
            trio.run(actions.limit, "g/0", 0.01, 1 << 20)
        assert (group.cpu, group.memory) == (None, None), refuse


def test_an_instance_down_as_its_hogs_loop_starts_stops_the_loop_once_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill at the moment of a hog stopped the busy loop the fork server was starting,
    before it set up its own process group: it never got there, and the hog failed the run
    10 s later ("not in the instance's process group ... the machine too loaded?")."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import types

    from harness import _fault_actions

    monkeypatch.setattr(_fault_actions, "HOG_START_S", 3.0)
    # A loop whose start (setsid) comes 0.5 s after its spawn, as on a loaded machine.
    slow = "import os, time; time.sleep(0.5); os.setsid(); time.sleep(60)"
    procs: list[subprocess.Popen[bytes]] = []

    async def spawn(launch: object) -> types.SimpleNamespace:
        procs.append(subprocess.Popen([sys.executable, "-c", slow]))  # noqa: ASYNC220 (a test)
        return types.SimpleNamespace(pid=procs[-1].pid)

    group = types.SimpleNamespace(dirs=(), paths=lambda: [], pids=lambda: [])
    state = types.SimpleNamespace(running=True)
    sup = types.SimpleNamespace(
        states={"g/0": state}, run_dir=tmp_path, host=types.SimpleNamespace(spawn=spawn),
        cgroups=types.SimpleNamespace(group=lambda _: group))
    (tmp_path / "g").mkdir()
    actions = FaultActions(sup)  # type: ignore[arg-type]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(actions.hog, "g/0", 1)
            await trio.sleep(0.1)  # spawned, not yet started: the instance goes down
            state.running = False
            actions.hogs_wait("g/0", True)

    try:
        trio.run(main)
        (pid,) = actions.hogs["g/0"]
        assert os.getpgid(pid) == pid  # it got to its own group...
        for _ in range(200):  # ...and waits there while the instance is down (a SIGSTOP
            state_of = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
            if state_of == "T":  # takes a moment to be delivered)
                break
            time.sleep(0.01)
        assert state_of == "T"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def _elf(path: Path, *segments: int) -> str:
    """A little-endian 64-bit ELF header and program headers of these types: enough of an
    executable for a look at how it is linked."""
    import struct

    header = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, 0, 64, 0, 0, 64, 56, len(segments), 0, 0, 0)
    path.write_bytes(header + b"".join(struct.pack("<I", t) + bytes(52) for t in segments))
    return str(path)


def test_a_skew_of_a_statically_linked_program_is_refused_not_recorded_as_applied(
    tmp_path: Path,
) -> None:
    """libfaketime is preloaded by the dynamic linker: a static program (busybox, a Go
    binary) read the real time on, while the skew was recorded as applied to it."""
    import functools
    import types

    from harness.faults import FaultError
    from harness.runners import Launch

    class Clock:
        path = tmp_path / "clock"
        skew: tuple[float, float] | None = None

        def set(self, offset: float, drift: float) -> None:
            self.skew = (offset, drift)

    pt_load, pt_interp = 1, 3
    static = _elf(tmp_path / "static", pt_load, pt_load)
    dynamic = _elf(tmp_path / "dynamic", pt_load, pt_interp, pt_load)
    for program, refused in ((static, True), (dynamic, False)):
        clock = Clock()
        launch = Launch({"LD_PRELOAD": "libfaketimeMT.so.1",
                         "FAKETIME_TIMESTAMP_FILE": str(Clock.path)}, tmp_path, tmp_path / "o",
                        tmp_path / "e", None, [program])
        sup = types.SimpleNamespace(states={"g/0": types.SimpleNamespace(running=True)},
                                    launches={"g/0": launch}, clocks={"g/0": clock})
        actions = FaultActions(sup)  # type: ignore[arg-type]
        if refused:
            with pytest.raises(FaultError, match=f"g/0 cannot be skewed: {static} is "
                                                 f"statically linked"):
                trio.run(actions.skew, "g/0", 2.0, 0.0)
            assert clock.skew is None
            # Setting it back (the fault taken back, or ended) is harmless: not refused.
            trio.run(functools.partial(actions.skew, "g/0", 0.0, 0.0, back=True))
            assert clock.skew == (0.0, 0.0)
        else:
            assert trio.run(actions.skew, "g/0", 2.0, 0.0) and clock.skew == (2.0, 0.0)


def test_a_live_skew_of_a_program_preloading_another_library_is_refused(
    tmp_path: Path,
) -> None:
    """Run with an LD_PRELOAD of its own (and no skew planned), a program's live skew was
    recorded as applied: LD_PRELOAD was taken for libfaketime's, and its clock never moved."""
    import types

    from harness.faults import FaultError
    from harness.runners import Launch

    clock = types.SimpleNamespace(path=tmp_path / "clock", set=lambda *_: None)
    for env in ({"LD_PRELOAD": "/lib/x86_64-linux-gnu/libc.so.6"},
                {"LD_PRELOAD": "/usr/lib/faketime/libfaketimeMT.so.1",
                 "FAKETIME_TIMESTAMP_FILE": str(tmp_path / "someone-else's")}):
        launch = Launch(env, tmp_path, tmp_path / "o", tmp_path / "e", None, ["/bin/sh"])
        sup = types.SimpleNamespace(states={"g/0": types.SimpleNamespace(running=True)},
                                    launches={"g/0": launch}, clocks={"g/0": clock})
        with pytest.raises(FaultError, match="g/0 is a program started without libfaketime"):
            trio.run(FaultActions(sup).skew, "g/0", 2.0, 0.0)  # type: ignore[arg-type]


class _Settings(_Paused):
    """Actions that record every skew, limit and hog (when, whom, what); those of `refuse`
    are refused."""

    def __init__(self, refuse: str = "") -> None:
        super().__init__()
        self.refuse = refuse
        self.calls: list[tuple[float, str, str, tuple[Any, ...]]] = []

    async def _set(self, action: str, instance: str, *args: Any) -> bool:
        from harness.faults import FaultError

        if instance == self.refuse and args not in ((0.0, 0.0), (None, None), (0,)):
            raise FaultError(f"{action} on {instance}: refused")
        self.calls.append((trio.current_time(), action, instance, args))
        return True

    async def skew(self, instance: str, offset: float, drift: float, *,
                   back: bool = False) -> bool:
        return await self._set("skew", instance, offset, drift)

    async def limit(self, instance: str, cpu: float | None, memory: int | None, *,
                    back: bool = False) -> bool:
        return await self._set("limit", instance, cpu, memory)

    async def hog(self, instance: str, loops: int, *, back: bool = False) -> bool:
        return await self._set("hog", instance, loops)


def _timed(action: str, at: float, duration: float, instances: list[str],
           **args: Any) -> Fault:
    return Fault.from_data({"action": action, "at": at, "duration": duration,
                            "targets": {"instances": instances}, **args})


def test_overlapping_limits_and_hogs_stack_the_latest_wins_until_it_ends(
    tmp_path: Path,
) -> None:
    """A limit (or hog) that ended lifted the instance's cap while a later one, still in
    force, had set another: that one's cap was gone for the rest of its time."""
    faults = [_timed("limit", 1, 3, ["g/0"], cpu=0.5), _timed("limit", 2, 4, ["g/0"], cpu=0.2),
              _timed("hog", 1, 5, ["g/1"], cpu=1), _timed("hog", 2, 2, ["g/1"], cpu=2)]
    actions = _Settings()
    failures, _ = _conduct(tmp_path, faults, actions)
    assert not failures
    assert sorted(actions.calls) == [  # at one time, in no order
        (1, "hog", "g/1", (1,)), (1, "limit", "g/0", (0.5, None)),
        (2, "hog", "g/1", (2,)), (2, "limit", "g/0", (0.2, None)),
        (4, "hog", "g/1", (1,)),  # the later hog ended: the earlier one's again
        # 4: the earlier limit ended while the later one holds g/0: nothing changes
        (6, "hog", "g/1", (0,)), (6, "limit", "g/0", (None, None)),
    ]


def test_a_skew_that_ends_gives_back_the_earlier_one_with_its_drift_run_on(
    tmp_path: Path,
) -> None:
    faults = [_timed("skew", 1, 5, ["g/0"], offset=10, drift=0.1),
              _timed("skew", 2, 2, ["g/0"], offset=-3)]
    actions = _Settings()
    _conduct(tmp_path, faults, actions)
    assert [(t, args) for t, _, _, args in actions.calls] == [
        (1, (10, 0.1)), (2, (-3, 0.0)), (4, (pytest.approx(10.3), 0.1)), (6, (0.0, 0.0))]


def test_a_limit_one_instance_refuses_is_taken_back_from_those_it_reached(
    tmp_path: Path,
) -> None:
    """g/0 was limited, g/1 refused: the run failed with the reason and g/0 stayed capped
    (half the fault applied, and never undone)."""
    actions = _Settings(refuse="g/1")
    failures, records = _conduct(tmp_path, [_timed("limit", 1, 3, ["g/0", "g/1"], cpu=0.5)],
                                 actions)
    assert failures == ["fault 0 could not be played: limit on g/1: refused"]
    assert actions.calls == [(1, "limit", "g/0", (0.5, None)),
                             (1, "limit", "g/0", (None, None))]
    assert [r["step"] for r in records] == ["failed"]


def test_a_pause_for_good_holds_its_instance_past_a_timed_one_until_a_resume(
    tmp_path: Path,
) -> None:
    """A timed pause that ended thawed an instance a pause without a duration held."""
    faults = [Fault.from_data({"action": "pause", "at": 1, "targets": {"instances": ["g/0"]}}),
              _timed("pause", 2, 1, ["g/0"]),
              Fault.from_data({"action": "resume", "at": 5, "targets": {"instances": ["g/0"]}}),
              _timed("pause", 6, 1, ["g/0"])]
    actions = _Paused()
    _conduct(tmp_path, faults, actions)
    assert actions.changes == [(1, "g/0", True), (5, "g/0", False),
                               (6, "g/0", True), (7, "g/0", False)]


def test_a_live_fault_refused_as_it_is_played_does_not_use_up_a_number(tmp_path: Path) -> None:
    """A refused cut took "live 0", and the next accepted fault was "live 1": faults.jsonl
    held no live 0 (contracts §4: N counts the live faults the run accepted)."""
    from harness.faults import FaultError

    names: list[str] = []

    async def main() -> None:
        with JsonlWriter(tmp_path / "faults.jsonl") as log:
            conductor = Conductor([], [Member("g/0", "g"), Member("g/1", "g")],
                                  _Refusing(), SyncState(["g/0", "g/1"]),  # type: ignore[arg-type]
                                  lambda _: None, log, lambda _: None)
            async with trio.open_nursery() as nursery:
                await nursery.start(conductor.run)
                with pytest.raises(FaultError, match="no direction given"):
                    await conductor.inject(Fault.from_data(
                        {"action": "isolate", "at": 0, "targets": {"instances": ["g/0"]}}), "me")
                for _ in range(2):
                    chosen = await conductor.inject(Fault.from_data(
                        {"action": "pause", "at": 0, "targets": {"instances": ["g/1"]}}), "me")
                    names.append(chosen["fault"])
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert names == ["live 0 (me)", "live 1 (me)"]


class _Ends(_Paused):
    """Actions where g/1 has exited before any fault: an end or a clock fault misses it."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[str] = []
        self.skews: list[tuple[str, float, bool]] = []

    async def end(self, instance: str, why: str, grace: float | None, comeback: str | None,
                  expect: str) -> bool:
        return instance != "g/1"

    async def start(self, instance: str, why: str) -> bool:
        self.started.append(instance)
        return True

    async def skew(self, instance: str, offset: float, drift: float, *,
                   back: bool = False) -> bool:
        self.skews.append((instance, offset, back))
        return back or instance != "g/1"


def _play(faults: list[Fault], actions: _Paused, tmp_path: Path) -> None:
    async def main() -> None:
        with JsonlWriter(tmp_path / "faults.jsonl") as log:
            conductor = Conductor(faults, [Member("g/0", "g"), Member("g/1", "g")],
                                  actions, SyncState(["g/0", "g/1"]),  # type: ignore[arg-type]
                                  lambda _: None, log, lambda why: None)
            async with trio.open_nursery() as nursery:
                await nursery.start(conductor.run)
                await trio.sleep(10)
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("action", ["kill", "stop"])
def test_a_timed_end_starts_again_only_those_it_ended(tmp_path: Path, action: str) -> None:
    """g/1 had exited (failed) before the fault, which missed it: its end started g/1 again,
    and a failed run could pass."""
    actions = _Ends()
    _play([_timed(action, 1, 2, ["g/0", "g/1"])], actions, tmp_path)
    assert actions.started == ["g/0"]


@pytest.mark.parametrize("action", ["kill", "stop", "restart"])
def test_a_pause_after_an_end_of_a_paused_instance_ends_when_it_should(
    tmp_path: Path, action: str
) -> None:
    """A pause for good, then a kill (stop, restart) of its instance, which ends that pause,
    then a pause of 1 s: the first pause still counted as holding the instance, so the last
    one's end did not thaw it (frozen to the run's end, recorded as undone)."""

    class Thawing(_Ends):
        async def end(self, instance: str, why: str, grace: float | None,
                      comeback: str | None, expect: str) -> bool:
            self.paused[instance] = False  # as the supervisor thaws one it ends
            return True

    actions = Thawing()
    faults = [Fault.from_data({"action": "pause", "at": 0.5, "targets": {"instances": ["g/0"]}}),
              Fault.from_data({"action": action, "at": 1.0, "targets": {"instances": ["g/0"]},
                               **({} if action == "restart" else {"duration": "1s"})}),
              Fault.from_data({"action": "pause", "at": 3.0, "duration": "1s",
                               "targets": {"instances": ["g/0"]}})]
    _play(faults, actions, tmp_path)
    assert actions.changes == [(0.5, "g/0", True), (3.0, "g/0", True), (4.0, "g/0", False)]
    # the first pause is recorded as over when the end came (the report drew it to the end)
    steps = [json.loads(line) for line in (tmp_path / "faults.jsonl").read_text().splitlines()]
    assert [(s["fault"], s["step"], s["at_s"], s.get("by")) for s in steps
            if s["fault"] == "fault 0"] == [("fault 0", "applied", 0.5, None),
                                            ("fault 0", "undone", 1.0, "fault 1")]


class _SlowToExit(_Ends):
    """Actions whose ended instances take 2 s to exit (a program that takes its grace)."""

    def __init__(self) -> None:
        super().__init__()
        self.gone_at: list[float] = []

    async def gone(self, instances: Sequence[str]) -> None:
        await trio.sleep(2)
        self.gone_at.append(trio.current_time())

    async def start(self, instance: str, why: str) -> bool:
        self.started.append(f"{instance} at {trio.current_time():g}")
        return True


@pytest.mark.parametrize("action", ["kill", "stop", "restart"])
def test_an_end_is_applied_once_its_instances_are_down_and_its_duration_counts_from_then(
    tmp_path: Path, action: str
) -> None:
    """A stop's undo came `duration` after its SIGTERM: a program that took its grace to
    exit was started again the moment it exited (down for no time), and faults.jsonl said
    "undone" while it still ran."""
    actions = _SlowToExit()
    fault = _timed(action, 1, 3, ["g/0"]) if action != "restart" else Fault.from_data(
        {"action": "restart", "at": 1, "targets": {"instances": ["g/0"]}})
    _play([fault], actions, tmp_path)
    steps = [orjson.loads(line) for line in (tmp_path / "faults.jsonl").read_bytes().splitlines()]
    applied = next(s for s in steps if s["step"] == "applied")
    assert actions.gone_at == [3.0]  # the clock starts at 0; applied at 1, down at 3
    assert applied["took_s"] == pytest.approx(2.0)
    if action != "restart":  # (a restart comes back by itself as it exits)
        undone = next(s for s in steps if s["step"] == "undone")
        assert actions.started == ["g/0 at 6"]  # down from 3 s for its 3 s
        assert undone["at_s"] - applied["at_s"] == pytest.approx(3.0)


def test_a_timed_skew_is_set_back_on_an_instance_that_is_down(tmp_path: Path) -> None:
    """Set back only where the instance ran at the fault's end: one down then (killed, to
    be restarted) kept the skewed clock in its next process, the fault recorded undone."""
    actions = _Ends()
    _play([_timed("skew", 1, 2, ["g/0"], offset=100.0)], actions, tmp_path)
    assert actions.skews == [("g/0", 100.0, False), ("g/0", 0.0, True)]


@pytest.mark.parametrize(("status", "recorded", "ended_by", "revived"), [
    (1, None, None, False),  # failed of itself: stays failed
    (0, "success", None, True),  # passed: may run again
    (-9, None, "killed by fault 0 (kill)", True),  # a fault ended it
])
def test_a_restart_starts_again_no_instance_that_failed_of_itself(
    status: int, recorded: str | None, ended_by: str | None, revived: bool
) -> None:
    """An instance that exited 1 before any fault, restarted (or started by a timed kill's
    end), recorded success in its new process: the failure was gone and the run passed."""
    import types

    from harness._outcome import InstanceState

    st = InstanceState(spec=None, pid=10, status=status, recorded=recorded,  # type: ignore[arg-type]
                       ended_by=ended_by)
    started: list[str] = []
    sup = types.SimpleNamespace(states={"g/0": st}, comeback={}, revive=started.append)
    assert trio.run(FaultActions(sup).start, "g/0", "f") is revived  # type: ignore[arg-type]
    assert started == (["g/0"] if revived else [])


def test_a_kill_as_an_instance_is_started_again_is_missed_not_sent_to_its_old_process(
) -> None:
    """Between a restart and its new process's pid, the instance counted as running with
    the old pid: a kill then (5 ms after a timed kill's end) was a SIGKILL to a process
    gone, recorded as applied, and the instance, running on, was failed as "expected to
    recover but never did"."""
    import types

    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    dead = subprocess.Popen(["true"])
    dead.wait()
    st = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=dead.pid, status=-9,
                       ended_by="killed by fault 0 (kill)")
    st.restarted(None)
    sup = types.SimpleNamespace(states={"g/0": st}, comeback={}, revive=lambda _: None)
    actions = FaultActions(sup)  # type: ignore[arg-type]
    assert not st.running and "g/0" not in actions.running()
    assert trio.run(actions.end, "g/0", "killed by fault 1 (kill)", None, None, "may_die") is False
    assert trio.run(actions.start, "g/0", "f") is False  # already being started
    assert st.ended_by is None and st.to_record(final=False).outcome is None
    st.pid, st.starting = 12345, False  # its new process is known
    assert st.running


def test_a_kill_for_good_after_a_recovered_timed_kill_is_judged_by_its_own_expectation(
) -> None:
    """The strongest expectation stood for the whole run: an instance killed for 500 ms,
    started again and recording success, then killed for good (may die), was failed as
    "expected to recover but never did". The fault that ends an instance judges it: also
    where its new process had not recorded success yet (a server records it at its end, so
    none that was ever restarted or paused could be killed for good)."""
    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    def killed(st: InstanceState, fault: str, expect: str) -> None:
        st.expecting(expect, ends=True)
        st.ended_by, st.status = f"killed by {fault} (kill)", -9

    st = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=10)
    killed(st, "fault 0", "recover")
    st.restarted(None)
    st.pid, st.starting = 11, False
    st.record({"type": "success"})
    killed(st, "fault 1", "may_die")
    assert st.verdict() == (True, None)
    for last, passes in (("may_die", True), ("recover", False)):
        again = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=10)
        killed(again, "fault 0", "recover")
        again.restarted(None)
        again.pid, again.starting = 11, False  # no success in its new process
        killed(again, "fault 1", last)
        assert again.verdict() == ((True, None) if passes else (
            False, "killed by fault 1 (kill), and it was expected to recover but never did"))
    paused = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=10)
    paused.expecting("recover")  # a pause, undone since
    paused.expecting("may_die")  # another pause: the strictest of pauses stands
    assert paused.expect == "recover"
    killed(paused, "fault 2", "may_die")
    assert paused.verdict() == (True, None)


def test_the_busy_loops_of_an_exited_instance_wait_until_it_is_started_again() -> None:
    import subprocess
    import time
    import types


    loop = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        actions = FaultActions(types.SimpleNamespace())  # type: ignore[arg-type]
        actions.hogs["g/0"] = [loop.pid]

        def comes_to(letter: str) -> bool:  # the process's state, /proc/PID/stat
            for _ in range(50):
                if Path(f"/proc/{loop.pid}/stat").read_text().split(") ", 1)[1][0] == letter:
                    return True
                time.sleep(0.02)
            return False

        actions.hogs_wait("g/0", True)
        assert comes_to("T")  # stopped
        actions.hogs_wait("g/0", False)
        assert comes_to("S")  # sleeping: going on
    finally:
        loop.kill()
        loop.wait()


def _state_of(pid: int, letter: str) -> list[str]:
    """The process's states (/proc/PID/stat) read until it is in `letter`, for up to a
    second (a signal takes a moment to land)."""
    import time

    seen: list[str] = []
    for _ in range(50):
        seen.append(Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0])
        if seen[-1] == letter:
            break
        time.sleep(0.02)
    return seen


@contextlib.contextmanager
def _fake_hogs(tmp_path: Path, running: bool,
               spawning: Callable[[], Awaitable[None]] | None = None, session: bool = True,
               ) -> Iterator[tuple[FaultActions, list[subprocess.Popen[bytes]], Any]]:
    """FaultActions on instance g/0 whose busy loops are `sleep`s (killed at the end), each
    after `spawning()`, each leading a session of its own unless not `session` (a loop that
    never starts); with the loops and the instance's state (`running`)."""
    import types

    procs: list[subprocess.Popen[bytes]] = []

    class Host:
        async def spawn(self, launch: object) -> types.SimpleNamespace:
            if spawning is not None:
                await spawning()
            procs.append(subprocess.Popen(["sleep", "30"],  # noqa: ASYNC220 (a fork: fast)
                                          start_new_session=session))
            return types.SimpleNamespace(pid=procs[-1].pid)

    group = types.SimpleNamespace(dirs={}, paths=lambda: ())
    state = types.SimpleNamespace(running=running)
    sup = types.SimpleNamespace(cgroups=types.SimpleNamespace(group=lambda _: group),
                                host=Host(), run_dir=tmp_path, states={"g/0": state})
    try:
        yield FaultActions(sup), procs, state  # type: ignore[arg-type]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_hog_given_back_while_its_instance_is_down_starts_its_loops_with_it(
    tmp_path: Path,
) -> None:
    """Loops started while the instance was down ran until they were stopped (the live
    test saw them running then); they are owed to it and start with its next start."""

    async def main() -> None:
        assert not await actions.hog("g/0", 2)  # down, not given back: nothing
        assert await actions.hog("g/0", 2, back=True)
        assert procs == [] and actions.owed == {"g/0": 2}
        actions.hogs_wait("g/0", True)  # still down
        await trio.sleep(0.05)
        assert procs == []
        state.running = True
        actions.hogs_wait("g/0", False)  # started again: its loops with it
        with trio.fail_after(5):
            while len(actions.hogs.get("g/0", [])) < 2:  # noqa: ASYNC110 (a system task's)
                await trio.sleep(0.01)
        assert actions.owed == {} and actions.hogs["g/0"] == [p.pid for p in procs]
        state.running = False
        assert await actions.hog("g/0", 1, back=True)  # a new hog replaces what was owed
        assert actions.owed == {"g/0": 1} and "g/0" not in actions.hogs

    with _fake_hogs(tmp_path, running=False) as (actions, procs, state):
        trio.run(main)


def test_a_kill_that_takes_an_instance_down_for_a_while_stops_its_loops_at_once() -> None:
    """Not only once its exit is seen (under load, its loops ran on meanwhile)."""
    import types

    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    node = subprocess.Popen(["sleep", "30"], start_new_session=True)
    loop = subprocess.Popen(["sleep", "30"], start_new_session=True)
    st = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=node.pid)
    sup = types.SimpleNamespace(states={"g/0": st}, comeback={})
    actions = FaultActions(sup)  # type: ignore[arg-type]
    actions.hogs["g/0"] = [loop.pid]
    try:
        assert trio.run(actions.end, "g/0", "killed by fault 0 (kill)", None, "later",
                        "recover")
        # Without the supervisor seeing the exit: the loop is stopped.
        assert _state_of(loop.pid, "T")[-1] == "T"
        assert node.wait(timeout=5) == -9 and "g/0" in sup.comeback
    finally:
        for p in (node, loop):
            p.kill()
            p.wait()


def test_a_hog_that_ends_while_owed_loops_start_leaves_none_running(tmp_path: Path) -> None:
    """The owed loops start in a task of their own: a hog ending (or replaced) meanwhile
    stopped only those started yet, and the rest ran on, out of `hogs`' count, until the
    run's end."""
    go_on = trio.Event()

    async def main() -> None:
        assert await actions.hog("g/0", 2, back=True)  # owed while it is down
        state.running = True
        actions.hogs_wait("g/0", False)  # its start: the owed loops begin to start
        await trio.testing.wait_all_tasks_blocked()
        assert await actions.hog("g/0", 0)  # the hog ends before they are up
        go_on.set()
        await trio.testing.wait_all_tasks_blocked()
        assert "g/0" not in actions.hogs
        for p in procs:
            assert p.wait(timeout=5) == -9

    # a slow fork: the hog ends meanwhile
    with _fake_hogs(tmp_path, running=False, spawning=go_on.wait) as (actions, procs, state):
        trio.run(main)


def test_owed_loops_of_an_instance_down_again_as_they_start_wait_with_it(
    tmp_path: Path,
) -> None:
    async def down_again() -> None:
        state.running = False

    with _fake_hogs(tmp_path, running=True, spawning=down_again) as (actions, procs, state):
        trio.run(actions._spawn_hogs, "g/0", 1, actions._group("g/0", "hog"))
        assert _state_of(procs[0].pid, "T")[-1] == "T"


def test_a_hog_whose_loop_never_starts_fails_and_leaves_no_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loop not in its instance's process group in time was given up without a word: the
    hog counted as played, and a loop out of the group's reach could outlive it."""
    import harness._fault_actions as fa

    monkeypatch.setattr(fa, "HOG_START_S", 0.2)
    with _fake_hogs(tmp_path, running=True, session=False) as (actions, procs, _):
        with pytest.raises(FaultError, match=r"hog on g/0: a busy loop was not in the "
                                             r"instance's process group .* 0.2 s"):
            trio.run(actions.hog, "g/0", 2)
        assert len(procs) == 1 and procs[0].wait(timeout=5) == -9
        assert "g/0" not in actions.hogs


@pytest.mark.parametrize("expect", [None, "may_die", "recover"])
def test_a_pause_expects_what_its_fault_says(tiny: Path, tmp_path: Path,
                                             expect: str | None) -> None:
    """`expect = "may_die"` on a pause was recorded and ignored: an instance a pause held
    frozen at the run's timeout failed as still running. With may_die it is left to its
    pause, as one a kill for good is ending is left to that kill."""
    import types

    from harness._supervisor import RunOptions, Supervisor
    from harness.plans import build_run_spec

    fault = Fault.from_data({"action": "pause", "at": 0.5, "targets": {"instances": ["g/0"]},
                             **({"expect": expect} if expect else {})})
    actions = _Paused()
    _play([fault], actions, tmp_path)
    assert actions.expects == [expect or "recover"]

    sup = Supervisor(build_run_spec("tiny", instances=3, plan_roots=[tiny]), RunOptions())
    frozen = "frozen by fault 0 (pause) since 0.5 s"
    sup.conductor = types.SimpleNamespace(  # type: ignore[assignment]
        pausing=lambda iid: frozen if iid == "single/0" else None)
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        st = sup.states["single/0"]
        st.pid, st.starting, st.paused = sleeper.pid, False, True
        st.expecting(expect or "recover")

        async def stop() -> None:
            sup._stop_all("still running at the run's timeout (10s)")

        trio.run(stop)
        st.status = sleeper.wait(timeout=5)
        passed, why = st.verdict()
        assert passed == (expect == "may_die"), why
        if passed:
            assert st.note() == f"{frozen} (it may die: expected)"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_run_s_stop_leaves_an_instance_a_fault_is_ending_to_its_fault(tiny: Path) -> None:
    """A kill for good (may die) sent just before the timeout, its process not yet reaped
    when the run stopped: the instance failed as "still running at the run's timeout"."""
    from harness._supervisor import RunOptions, Supervisor
    from harness.plans import build_run_spec

    sup = Supervisor(build_run_spec("tiny", instances=3, plan_roots=[tiny]), RunOptions())
    procs = [subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in range(3)]
    try:
        states = [sup.states[f"single/{i}"] for i in range(3)]
        for st, proc in zip(states, procs, strict=True):
            st.pid, st.starting = proc.pid, False
        dying, owed, running = states
        for st, expect in ((dying, "may_die"), (owed, "recover")):
            st.expecting(expect)
            st.ended_by = "killed by fault 0 (kill)"
        reason = "still running at the run's timeout (10s)"

        async def stop() -> None:
            sup._stop_all(reason)

        trio.run(stop)
        assert (dying.stopped, owed.stopped, running.stopped) == (None, reason, reason)
        dying.status = procs[0].wait(timeout=5)  # the run's SIGTERM, or the fault's SIGKILL
        assert dying.verdict() == (True, None)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
