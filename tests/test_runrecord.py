"""run.json: one typed RunRecord written by the supervisor and read by everything else."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness._cli import main
from harness._rundir import write_json
from harness.observe._runrecord import (
    OUTCOMES,
    GroupRecord,
    InstanceRecord,
    RecordError,
    RunRecord,
    SupervisorRecord,
    load_run,
    read_run,
    write_run,
)

_text = st.text(max_size=12)
_opt_text = st.none() | _text
_opt_int = st.none() | st.integers(-(2**31), 2**31)
_opt_float = st.none() | st.floats(allow_nan=False, allow_infinity=False)
_opt_time = st.none() | st.floats(0, 253402214400)  # 1970 to 9999
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
# Keys a newer harness might add: never one of this version's own.
_extra = st.dictionaries(st.text(min_size=1, max_size=8).map(lambda k: "x-" + k), _json_value, max_size=3)

# An instance's directory (its `dir`, else its id) lies inside the run's.
_inside = st.from_regex(r"[\w.-]{0,6}\w(/[\w.-]{0,6}\w)?", fullmatch=True)
_instances = st.builds(
    InstanceRecord,
    id=_inside,
    group=_text,
    group_seq=_opt_int,
    global_seq=_opt_int,
    role=_opt_text,
    ip=_opt_text,
    pid=_opt_int,
    outcome=st.none() | st.sampled_from(["passed", "failed"]),
    reason=_opt_text,
    exit_code=_opt_int,
    started=_opt_time,
    ended=_opt_time,
    dir=st.none() | _inside,
    down_s=st.floats(0, 1e6),
    extra=_extra,
)
_groups = st.builds(
    GroupRecord,
    id=_text,
    count=_opt_int,
    params=st.dictionaries(_text, _json_value, max_size=3),
    program=st.none() | st.lists(_text, max_size=3).map(tuple),
    extra=_extra,
)
_records = st.builds(
    RunRecord,
    run_id=st.text(min_size=1, max_size=24),
    plan=_opt_text,
    case=_opt_text,
    runner=_opt_text,
    started=_opt_time,
    ended=_opt_time,
    outcome=st.none() | st.sampled_from(OUTCOMES),
    exit_code=_opt_int,
    reason=_opt_text,
    params=st.dictionaries(_text, _json_value, max_size=3),
    composition=_opt_text,
    timeout_s=_opt_float,
    groups=st.lists(_groups, max_size=3).map(tuple),
    instances=st.lists(_instances, max_size=4).map(tuple),
    # (its keys the readers use must be of their types: `_network`; the others are free)
    network=st.none() | st.dictionaries(
        _text.filter(lambda k: k not in {"runner", "backend", "subnet", "prefix", "namespace",
                                         "hosts", "default_shape", "links"}),
        _json_value, max_size=3),
    metrics_url=_opt_text,
    supervisor=st.none() | st.builds(SupervisorRecord, st.integers(1, 2**22), st.integers(0, 2**40),
                                      pid_ns=st.none() | st.integers(1, 2**40)),
    last_seen=_opt_time,
    sock_dir=_opt_text,
    plan_dir=_opt_text,
    faults=st.none() | st.lists(st.dictionaries(_text, _json_value, max_size=3),
                                max_size=3).map(tuple),
    origin=_opt_text,
    extra=_extra,
)


@given(_records)
def test_a_record_survives_writing_and_reading(record: RunRecord) -> None:
    data = orjson.loads(orjson.dumps(record.to_json()))
    assert RunRecord.from_json(data) == record
    assert RunRecord.from_json(data).to_json() == data


@given(_records)
def test_write_then_read_through_the_file(record: RunRecord) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_run(Path(tmp), record)
        assert read_run(Path(tmp)) == record
        assert [p.name for p in Path(tmp).iterdir()] == ["run.json"]  # no .tmp left behind


# What a run.json written before the record existed looks like (keys only some versions had).
OLD_RUN: dict[str, Any] = {
    "run_id": "20261126-031500-a1b2c3",
    "plan": "pingpong",
    "case": "ping",
    "runner": "local:exec",
    "started": 1795000000,
    "ended": 1795000012.5,
    "outcome": "failed",
    "exit_code": 1,
    "reason": "1 of 2 failed",
    "params": {"rounds": 3},
    "groups": [{"id": "single", "count": 2, "params": {}, "program": None}],
    "instances": [
        {"id": "single/0", "outcome": "passed", "exit_code": 0, "started": 1795000000.1,
         "ended": 1795000011.0, "metrics_url": "http://198.18.0.2:9090/metrics"},
        {"id": "single/1", "outcome": "failed", "reason": "boom", "exit_code": 1},
    ],
    "network": None,
}


def test_an_older_run_json_reads_with_defaults_and_keeps_what_it_does_not_know(
    tmp_path: Path,
) -> None:
    (tmp_path / "run.json").write_text(json.dumps(OLD_RUN))
    run = load_run(tmp_path)
    assert (run.composition, run.timeout_s, run.metrics_url, run.supervisor) == (None,) * 4
    assert run.started == 1795000000.0 and run.duration_s == 12.5 and run.is_over
    first, second = run.instances
    assert (first.group, first.dir, first.path(tmp_path)) == ("single", None, tmp_path / "single/0")
    assert first.extra == {"metrics_url": "http://198.18.0.2:9090/metrics"}
    assert first.duration_s == pytest.approx(10.9) and second.duration_s is None
    assert [i.passed for i in run.instances] == [True, False]
    # rewritten, the unknown key is still there and nothing known is lost
    write_run(tmp_path, run)
    again = orjson.loads((tmp_path / "run.json").read_bytes())
    assert again["instances"][0]["metrics_url"] == "http://198.18.0.2:9090/metrics"
    assert {k: v for k, v in again.items() if k in OLD_RUN} == OLD_RUN | {
        "instances": [i | {"group": "single", "group_seq": None, "global_seq": None,
                           "role": None, "ip": None, "pid": None, "reason": i.get("reason"),
                           "started": i.get("started"), "ended": i.get("ended"), "dir": None,
                           "restarts": 0, "down_s": 0.0, "note": None}
                      for i in OLD_RUN["instances"]]
    }


def test_what_a_replay_needs_is_recorded_and_an_older_run_json_says_it_lacks_it() -> None:
    old = RunRecord.from_json(OLD_RUN)
    assert (old.plan_dir, old.faults) == (None, None)
    assert old.missing_for_replay == "plan_dir, faults, timeout_s"
    faults = ({"action": "kill", "at": 0.7, "duration": 0.4,
               "targets": {"group": ["single"], "count": 1, "seed": 5}},)
    data = {**OLD_RUN, "timeout_s": 30.0, "plan_dir": "/plans/pingpong", "faults": list(faults)}
    run = RunRecord.from_json(orjson.loads(orjson.dumps(RunRecord.from_json(data).to_json())))
    assert (run.plan_dir, run.faults, run.extra) == ("/plans/pingpong", faults, {})
    assert run.missing_for_replay is None
    # no faults planned is not the same as none recorded
    assert RunRecord.from_json({**data, "faults": []}).missing_for_replay is None
    with pytest.raises(RecordError, match=r"faults\[0\] must be an object"):
        RunRecord.from_json({**data, "faults": ["kill"]})


def test_a_run_without_a_run_id_takes_its_directorys_name(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"plan": "p", "instances": []}))
    assert load_run(tmp_path).run_id == tmp_path.name


def test_the_lifecycle_fields(tmp_path: Path) -> None:
    """The fields a supervisor's liveness check needs: optional, typed, round-tripped."""
    data = {**OLD_RUN, "outcome": "aborted", "supervisor": {"pid": 4242, "start_ticks": 987654},
            "last_seen": 1795000005.25, "sock_dir": "/tmp/harness-x"}
    run = RunRecord.from_json(data)
    assert run.supervisor == SupervisorRecord(4242, 987654)
    assert (run.outcome, run.last_seen, run.sock_dir) == ("aborted", 1795000005.25, "/tmp/harness-x")
    assert run.extra == {}
    assert RunRecord.from_json(run.to_json()) == run
    named = RunRecord.from_json({**data, "supervisor": {**data["supervisor"], "pid_ns": 4026531836}})
    assert named.supervisor == SupervisorRecord(4242, 987654, pid_ns=4026531836)
    assert named.to_json()["supervisor"]["pid_ns"] == 4026531836


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", "is not a run record"),
        (b'{"kind": "event", "ts": 1}', "is not a run record"),
        (b"{}", "is not a run record"),
        (b'{"run_id": "r", "started": "yesterday"}', "'started' must be a number"),
        (b'{"run_id": "r", "started": true}', "'started' must be a number"),
        # a time no date can show was an OverflowError in `harness report`
        (b'{"run_id": "r", "started": 1e300}', "'started' must be a number of Unix seconds"),
        (b'{"run_id": "r", "last_seen": -1}', "'last_seen' must be a number of Unix seconds"),
        (b'{"run_id": "r", "instances": [{"id": "a/0", "ended": 1e20}]}',
         r"instances\[0\]: 'ended' must be a number of Unix seconds \(1970 to 9999\), not 1e\+20"),
        (b'{"run_id": "r", "exit_code": 1.5}', "'exit_code' must be an integer"),
        (b'{"run_id": "r", "instances": {"a": 1}}', "'instances' must be a list"),
        (b'{"run_id": "r", "instances": [{"outcome": "passed"}]}', r"instances\[0\] has no 'id'"),
        (b'{"run_id": "r", "instances": [7]}', r"instances\[0\] must be an object"),
        (b'{"run_id": "r", "groups": [{"id": "g", "program": [1]}]}', r"program\[0\] must be a string"),
        (b'{"run_id": "r", "supervisor": {"pid": 1}}', "needs 'pid' and 'start_ticks'"),
        # `report` and `logs` read what an instance's directory holds: never outside the run
        (b'{"run_id": "r", "instances": [{"id": "a/0", "dir": "../../etc"}]}',
         r"instances\[0\]: its directory '../../etc' is not inside the run's"),
        (b'{"run_id": "r", "instances": [{"id": "a/0", "dir": "/etc"}]}', "is not inside"),
        (b'{"run_id": "r", "instances": [{"id": "../a"}]}', "'../a' is not inside"),
        (b'{"run_id": "r", "instances": [{"id": ""}]}', "'' is not inside"),
        (b"\x89PNG\r\n", "is not valid JSON"),
        # `show` and `report` read these: a traceback (AttributeError, TypeError) before
        (b'{"run_id": "r", "network": {"hosts": "x"}}',
         r"run\.json: network: 'hosts' must be an object, not 'x'"),
        (b'{"run_id": "r", "network": {"links": 7}}', "network: 'links' must be a list"),
        (b'{"run_id": "r", "network": {"prefix": ["x"]}}', "network: 'prefix' must be a string"),
    ],
)
def test_what_is_not_a_run_record_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "run.json").write_bytes(content)
    with pytest.raises(RecordError, match=message):
        load_run(tmp_path)


def test_no_run_json(tmp_path: Path) -> None:
    assert read_run(tmp_path) is None
    with pytest.raises(RecordError, match=r"has no run\.json"):
        load_run(tmp_path)


@pytest.mark.parametrize("command", ["show", "report"])
@pytest.mark.parametrize(("content", "message"), [
    ('{"run_id": "r", "instances": [{"id": 3}]}', "'id' must be a string"),
    ('{"run_id": "r", "started": 1e300}', "run.json: 'started' must be a number of Unix"),
    ('{"run_id": "r", "network": {"hosts": -1}}', "run.json: network: 'hosts' must be an obj"),
])  # fmt: skip
def test_the_cli_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: str, message: str
) -> None:
    (tmp_path / "run.json").write_text(content)
    assert main([command, str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error: ") and message in err
    assert "\n" not in err


def test_the_supervisor_writes_what_the_record_reads(tmp_path: Path) -> None:
    """InstanceState writes its entry as an InstanceRecord (the verdict filled in)."""
    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    state = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), ip="198.18.0.2", pid=9)
    state.status = 0
    state.record({"type": "success"})
    entry = state.to_record()
    assert (entry.outcome, entry.reason, entry.dir, entry.exit_code) == ("passed", None, "g/0", 0)
    record = RunRecord("20261126-031500-a1b2c3", instances=(entry,))
    assert RunRecord.from_json(orjson.loads(orjson.dumps(record.to_json()))) == record
    assert dataclasses.replace(entry, extra={}) == entry


def test_a_running_instance_is_recorded_without_an_outcome_until_it_ends() -> None:
    """`harness show` of a live run said every running instance had failed: did not start."""
    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    state = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), ip="198.18.0.2", pid=9)
    assert (state.to_record().outcome, state.to_record().reason) == (None, None)
    state.record({"type": "failure", "error": "height mismatch"})  # known before it exits
    assert (state.to_record().outcome, state.to_record().reason) == (
        "failed", "failed: height mismatch")
    never = InstanceState(InstanceSpec("g/1", "g", 1, 1, "", {}, None), ip="198.18.0.3")
    assert (never.to_record().outcome, never.to_record().reason) == ("failed", "did not start")


def test_an_instance_s_time_down_between_its_lives_is_not_counted_as_running() -> None:
    """A restarted instance "ran for" the time from its first start to its last exit, less
    its time down in between (it was counted as running)."""
    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    state = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=9, started=100.0)
    for exit_at, back_at in ((102.0, 105.0), (107.0, 107.5)):
        state.status, state.ended = -9, exit_at
        state.restarted(back_at)
        assert state.to_record(final=False).ended is None  # running again: not ended
    state.status, state.ended, state.starting = 0, 110.0, False
    record = state.to_record()
    assert record.down_s == pytest.approx(3.5) and record.duration_s == pytest.approx(6.5)
    assert record.note == "restarted 2 time(s) by faults, down 3.5 s in all"
    again = InstanceRecord.from_json(orjson.loads(orjson.dumps(record.to_json())), "i")
    assert again.duration_s == pytest.approx(6.5)


def test_an_instance_yet_to_start_has_no_outcome_while_the_run_goes_on() -> None:
    """`harness show` in a run's first seconds said the instances not started yet had
    failed: did not start (and `harness report` wrote them as failures in junit.xml)."""
    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    def state(**kw: Any) -> InstanceState:
        return InstanceState(InstanceSpec("g/1", "g", 1, 1, "", {}, None), **kw)

    assert (state().to_record(final=False).outcome, state().to_record().reason) == (
        None, "did not start")
    assert state(start_error="no such file").to_record(final=False).reason == (
        "did not start: no such file")
    assert state(not_started="interrupted").to_record(final=False).outcome == "failed"


def test_an_exit_code_says_when_the_sync_service_had_closed_the_connection() -> None:
    """A 20 MB frame: the service refused the connection ("frame longer than ..." in
    events.jsonl), and the instance's reason was a bare "exit code 1"."""
    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    st = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=9, status=1)
    assert st.verdict() == (False, "exit code 1")
    st.sync_closed = "frame longer than 16777216 bytes"
    assert st.verdict() == (False, "exit code 1 (the sync service had closed its connection: "
                                   "frame longer than 16777216 bytes)")


def test_a_timeout_says_at_which_barrier_an_instance_waited(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """It said only "still running at the run's timeout", of instances at a barrier that
    another instance never reached."""
    import subprocess
    import sys

    manifest = ('name = "stuck"\n[[testcases]]\nname = "case"\n'
                'instances = { min = 1, max = 3, default = 3 }\nentrypoint = "stuck.plan:case"\n')
    code = ("import os, signal, time\n"
            "def late_end(*_):\n    time.sleep(0.5)\n    os._exit(1)\n"
            "async def case(env):\n    if env.global_seq == 1:\n"
            "        signal.signal(signal.SIGTERM, late_end)  # ends after those that wait\n"
            "        time.sleep(600)\n"
            "    await env.sync.signal_and_wait('ready', env.instance_count)\n")
    plans = make_plan("stuck", manifest, code)
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", "stuck", "--plans", str(plans), "-q",
         "--outputs", str(tmp_path / "out"), "--metrics-listen", "off", "--timeout", "3",
         "--json"], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1])
    run = json.loads(r.stdout)
    reasons = sorted(i["reason"] for i in run["instances"])
    stacks = "every thread's stack at the stop is in stderr.log"
    waited = ("still running at the run's timeout (3s), waiting at barrier 'ready' (2 of 3 "
              f"arrived); it was awaiting in case (plan.py:9): {stacks}")
    assert reasons == [
        waited,
        waited,
        f"still running at the run's timeout (3s); it was in case (plan.py:8): {stacks}",
    ]
    # the one that waited on no other, not whichever ended first from its SIGTERM
    assert run["reason"] == ("3 of 3 failed; first: single/1: still running at the run's "
                             f"timeout (3s); it was in case (plan.py:8): {stacks}"), run["reason"]


def test_a_sigkill_by_the_memory_limit_says_out_of_memory() -> None:
    """It read "killed by SIGKILL", as any kill does."""
    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    st = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=9, status=-9)
    assert st.verdict() == (False, "killed by SIGKILL")
    st.oom_killed = True
    assert st.verdict() == (False, "killed by SIGKILL: out of memory (its cgroup's memory "
                                   "limit)")


def test_only_a_sigkill_after_a_new_oom_kill_reads_out_of_memory() -> None:
    """The kernel counts OOM kills per cgroup: once an instance had been killed for memory,
    a fault's later SIGKILL of its restarted process read "out of memory" too."""
    import signal

    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    st = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=9)
    reasons = []
    for status, kills in ((-signal.SIGKILL, 1), (-signal.SIGKILL, 1), (1, 2),
                          (-signal.SIGKILL, 2), (-signal.SIGKILL, 3)):
        st.status = status
        st.exited_with_oom_kills(kills)
        reasons.append(st.verdict()[1])
        st.restarted(None)
    assert ["out of memory" in (r or "") for r in reasons] == [True, False, False, False, True]


def test_an_exit_after_the_memory_limit_killed_a_child_says_so() -> None:
    """A program whose child the kernel killed for the cgroup's memory limit, and which then
    exited 137 (a shell) or was killed by a fault, read only "exit code 137": nothing
    said that the memory limit was why."""
    import signal

    from harness._outcome import InstanceState
    from harness.plans import InstanceSpec

    st = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None), pid=9)
    reasons = []
    for status, kills in ((137, 1), (137, 1), (-signal.SIGTERM, 3), (-signal.SIGKILL, 4)):
        st.status = status
        st.exited_with_oom_kills(kills)
        reasons.append(st.verdict()[1])
        st.restarted(None)
    assert reasons == [
        "exit code 137 (the kernel killed 1 other process of its cgroup for its memory limit)",
        "exit code 137",
        "killed by SIGTERM (the kernel killed 2 other processes of its cgroup for its memory "
        "limit)",
        "killed by SIGKILL: out of memory (its cgroup's memory limit)",
    ]


def test_a_run_ended_by_an_error_records_the_exit_code_the_command_gives() -> None:
    """run.json had exit_code null for a run that ended in an error, while `harness run`
    exited 3 (null is for a run that goes on)."""
    import errno

    from harness._errors import EnvironmentProblem, UsageError
    from harness._supervisor import _exit_code_of

    nested = ExceptionGroup("nursery", [OSError(errno.ENOSPC, "No space left on device")])
    assert [_exit_code_of(e) for e in (
        EnvironmentProblem("no netns"), UsageError("bad"), nested, KeyboardInterrupt(),
        ExceptionGroup("g", [RuntimeError("bug")]))] == [3, 2, 3, 130, 1]


def test_writers_of_one_file_at_once_each_write_it_whole(tmp_path: Path) -> None:
    """Processes marking one dead run aborted at once (runs starting together on the same
    outputs, `harness clean` beside `harness show`) shared one temporary file: one's
    rename failed (FileNotFoundError), and run.json could be left no JSON."""
    path = tmp_path / "run.json"
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for n in range(300):
                write_json(path, {"writer": k, "n": n, "pad": "x" * (1000 * k + n)})
        except BaseException as e:
            errors.append(e)

    writers = [threading.Thread(target=write, args=(k,)) for k in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert errors == []
    record = json.loads(path.read_text())
    assert record["pad"] == "x" * (1000 * record["writer"] + record["n"])
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
