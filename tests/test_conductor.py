"""The conductor with actions that only record: overlapping faults, failing actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import trio
import trio.testing

from harness._conductor import Conductor
from harness.faults import Fault, Member
from harness.observe import JsonlWriter
from harness.sync import SyncState


class _Paused:
    """Actions that keep each instance's paused state and when it changed."""

    def __init__(self) -> None:
        self.paused: dict[str, bool] = {"g/0": False, "g/1": False}
        self.changes: list[tuple[float, str, bool]] = []

    def running(self) -> list[str]:
        return list(self.paused)

    async def pause(self, instance: str, on: bool) -> bool:
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


def _conduct(tmp_path: Path, faults: list[Fault], actions: _Paused,
             until: float = 10) -> tuple[list[str], list[dict[str, Any]]]:
    """Play `faults` for `until` virtual seconds: the run's failures, faults.jsonl."""
    failures: list[str] = []

    async def main() -> None:
        with JsonlWriter(tmp_path / "faults.jsonl") as log:
            conductor = Conductor(faults, [Member("g/0", "g"), Member("g/1", "g")],
                                  actions, SyncState(["g/0", "g/1"]),  # type: ignore[arg-type]
                                  lambda _: None, log, failures.append)
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
    from harness._fault_actions import FaultActions
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
