"""`harness fault` and `harness events` on live runs: a fault played from another terminal
really happens and is recorded as asked by the CLI; the events stream follows the run to its
end (tests/plans/faulty is the plan whose files show it)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness._cli import build_parser, main
from harness._commands import fault as fault_command
from harness._liveness import identity
from harness.faults import ACTIONS, Fault, When
from tests.conftest import ROOT, harness_cli

PLANS = Path(__file__).parent / "plans"


def _table(argv: str) -> dict[str, Any]:
    args = build_parser().parse_args(["fault", *shlex.split(argv)])
    fault_command._positionals(args)
    return fault_command._table(args)


# -- the command line: every action can be given, bad input is one line --------------------

EVERY_ACTION = {
    "shape": "shape --group a --latency 100ms --jitter 5 --loss 5 --bandwidth 10mbit "
             "--to-instance a/1",
    "partition": "partition --instance a/0 --kind sides --others-group b --one-way",
    "isolate": "isolate --role leader --duration 2s",
    "heal": "heal",
    "kill": "latest kill --group miners --count 2 --seed 1 --expect recover",
    "stop": "stop --percentage 50 --grace 1s",
    "pause": "pause --instance single/1 --duration 5s",
    "resume": "resume --instance single/1",
    "restart": "restart --topic leader --grace 500ms",
    "skew": "skew --instance x --offset -300ms --drift 0.001",
    "limit": "limit --group a --cpu 0.5 --memory 64MiB",
    "hog": "hog --group a --cpu 2 --at layer-5:3",
}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_action_of_the_vocabulary_can_be_given(action: str) -> None:
    fault = Fault.from_data(_table(EVERY_ACTION[action]))
    assert fault.action == action


def test_the_options_become_the_faults_table() -> None:
    shape = Fault.from_data(_table(EVERY_ACTION["shape"]))
    assert dict(shape.args["shape"]) == {"latency_ms": 100.0, "jitter_ms": 5.0,
                                         "loss_pct": 5.0, "bandwidth_bps": 10_000_000}
    assert shape.args["to"].instances == ("a/1",) and shape.targets.groups == ("a",)
    skew = Fault.from_data(_table(EVERY_ACTION["skew"]))
    assert (skew.args["offset"], skew.args["drift"], skew.at) == (-0.3, 0.001, 0.0)
    kill = Fault.from_data(_table(EVERY_ACTION["kill"]))
    assert (kill.targets.count, kill.targets.seed, kill.expect) == (2, 1, "recover")
    hog = Fault.from_data(_table(EVERY_ACTION["hog"]))
    assert (hog.at, hog.args["cpu"]) == (When("layer-5", 3), 2)
    limit = Fault.from_data(_table(EVERY_ACTION["limit"]))
    assert (limit.args["cpu"], limit.args["memory"]) == (0.5, 64 * 2**20)
    table = '{"action": "pause", "targets": {"instances": ["single/0"]}, "duration": "1s"}'
    assert Fault.from_data(_table(f"--json '{table}'")).duration == 1.0
    # --json before the action: argparse takes the action for --json's TABLE ("give ACTION
    # and its options, or --json TABLE, not both")
    for argv in ("--json pause --instance a/0 --duration 1s",
                 "--json 2026 pause --instance a/0 --duration 1s"):
        assert Fault.from_data(_table(argv)).action == "pause"


@pytest.mark.parametrize(("argv", "message"), [
    ("kill --latency 5ms", "--latency goes only with shape, not kill"),
    ("kil", "'kil' is no action"),
    ("latest kil", "unknown action 'kil'"),
    ("", "give [RUN] ACTION"),
    ("kill", "'targets' is missing"),
    ("pause --instance single/1 --duration soon", "'soon' is not a duration"),
    ("heal --group a", "takes no targets"),
    ("shape --group a", "must be a table of link shape fields"),
    ("shape --loss 200", "loss_pct 200.0 is out of range"),
    ("shape --bandwidth fast", "'fast' is not a rate"),
    ("kill --json '{bad'", "not both"),
    ("--json '{bad'", "the fault's table is not JSON"),
    ("--json '[1]'", "must be a JSON object"),
    ("--json latest", "give [RUN] ACTION"),
    ("--json a b c", "one RUN and one ACTION at most"),
    ("kill --count 0", "count must be a whole number >= 1"),
    ("kill --group a --at x:abc", "--at 'x:abc': the count after the colon must be a whole"),
    # ACTION after an option that follows RUN was "unrecognized arguments: kill"
    ("20261205-1 --instance a/0 kill --duration 1s", "no run '20261205-1' under"),
    ("latest --instance a/0 kill extra", "unrecognized arguments: kill extra"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_run_is_asked(
    tmp_path: Path, argv: str, message: str
) -> None:
    r = harness_cli("fault", *shlex.split(argv), "--outputs", str(tmp_path / "none"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_command_waits_for_the_run_s_answer_through_a_stop_s_grace() -> None:
    from harness._control import ANSWER_S

    assert fault_command._answer_within(Fault.from_data(_table("stop --instance a/0 "
                                                               "--grace 90s"))) == ANSWER_S + 90
    assert fault_command._answer_within(Fault.from_data(_table("kill --instance a/0"))) == (
        ANSWER_S)


@pytest.mark.parametrize(("text", "bits"), [
    ("9007199254740993", 9007199254740993),  # 2**53 + 1: through a float it lost the 1
    ("99999999999999999999999", 99999999999999999999999),
    ("1.5kbit", 1500),
    ("2.000001gbit", 2000001000),
])
def test_a_rate_is_read_exactly(text: str, bits: int) -> None:
    assert fault_command._rate(text) == bits


def test_a_run_whose_record_holds_no_outcome_is_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "is not running (None)". (Its supervisor, this process, is alive: the run is
    not marked aborted.)"""
    run_dir = tmp_path / "20261203-000000-aaaaaa"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps(
        {"run_id": run_dir.name, "plan": "p", "outcome": None,
         "supervisor": identity().to_json()}))  # fmt: skip
    assert main(["fault", str(run_dir), "kill", "--instance", "single/0"]) == 2
    assert capsys.readouterr().err == (
        f"harness: error: run {run_dir.name} is not running (its run.json records no "
        "outcome): faults go only to a live run\n")


# -- a live run ----------------------------------------------------------------------------


def _start(out: Path, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "faulty:beat", "--plans", str(PLANS),
         "--outputs", str(out), "-q", "-p", f"seconds={seconds}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


@contextlib.contextmanager
def _reaped(*procs: subprocess.Popen[str]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _wait_for(what: str, found: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not seen within {timeout} s")


def _run_dir(out: Path) -> Path:
    found = _wait_for("the run directory", lambda: list(out.glob("*/run.json")))
    return Path(found[0]).parent


def _lines(path: Path) -> list[dict[str, Any]]:
    with contextlib.suppress(FileNotFoundError):
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return []


def _fault_now(run_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`harness fault RUN ARGV`, again while the run has not started its instances yet."""
    def attempt() -> subprocess.CompletedProcess[str] | None:
        r = harness_cli("fault", str(run_dir), *argv)
        not_yet = ("not started its instances", "takes no faults now", "not ready yet",
                   "cannot reach")
        return None if r.returncode == 1 and any(w in r.stderr for w in not_yet) else r

    result: subprocess.CompletedProcess[str] = _wait_for("an answer", attempt)
    return result


def test_a_fault_from_the_command_line_is_played_recorded_and_streamed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = _start(out, seconds=20)  # time for a few commands on a busy machine
    with _reaped(run):
        run_dir = _run_dir(out)
        events = subprocess.Popen(
            [sys.executable, "-m", "harness", "events", str(run_dir), "--follow", "--json"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with _reaped(events):
            token = run_dir / "control.token"
            assert stat.S_IMODE(token.stat().st_mode) == 0o600
            refused = _fault_now(run_dir, "kill", "--group", "nobody")
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert "no group 'nobody'" in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1
            r = harness_cli("fault", str(run_dir), "kill", "--instance", "single/1",
                            "--duration", "1s")
            assert r.returncode == 0, r.stdout + r.stderr
            assert len(r.stdout.splitlines()) == 1 and "kill single/1" in r.stdout, r.stdout
            later = harness_cli("fault", str(run_dir), "pause", "--instance", "single/0",
                                "--at", "200ms", "--duration", "300ms", "--json")
            assert later.returncode == 0, later.stdout + later.stderr
            assert json.loads(later.stdout)["fault"].startswith("live 1 (harness fault pid ")
            # Due after the run's timeout (the default 300 s): refused now, not failed later.
            never = harness_cli("fault", str(run_dir), "pause", "--instance", "single/0",
                                "--at", "1h")
            assert never.returncode == 1, never.stdout + never.stderr
            assert "at 3600s from now is past the run's timeout (300s, " in never.stderr
            assert run.wait(timeout=120) == 0, run.communicate()
            streamed, errors = events.communicate(timeout=60)  # it ends with the run
            assert events.returncode == 0, errors
    record = json.loads((run_dir / "run.json").read_text())
    single1 = next(i for i in record["instances"] if i["id"] == "single/1")
    assert single1["restarts"] == 1 and single1["outcome"] == "passed"
    steps = _lines(run_dir / "faults.jsonl")
    applied, undone = [f for f in steps if f["fault"].startswith("live 0 ")]
    assert applied["step"] == "applied" and applied["chosen"] == ["single/1"]
    assert applied["asked_by"].startswith("harness fault pid ") and undone["step"] == "undone"
    paused = [(f["step"], f.get("chosen")) for f in steps if f["fault"].startswith("live 1 ")]
    assert paused == [("applied", ["single/0"]), ("undone", None)]
    assert not token.exists(), "the control token outlived the run"
    # The stream has the fault as the run recorded it, and everything up to the end.
    lines = [json.loads(ln) for ln in streamed.splitlines()]
    faults = [e for e in lines if e["kind"] == "fault"]
    assert [(f["fault"], f["step"]) for f in faults] == [(f["fault"], f["step"]) for f in steps]
    assert [e["status"] for e in lines if e.get("instance") == "single/1"
            and e["kind"] == "instance"] == ["started", "exited", "restarting", "started",
                                             "exited"]  # fmt: skip
    assert lines == _lines(run_dir / "events.jsonl")  # local:exec: no network.jsonl
    # The run is over: one line, and no fault.
    late = harness_cli("fault", str(run_dir), "kill", "--instance", "single/0")
    assert late.returncode == 2, late.stdout + late.stderr
    assert late.stderr.strip().splitlines() == [
        f"harness: error: run {run_dir.name} is not running (passed): faults go only to a "
        f"live run"]
    # Without --follow, and for people: a line per event, time since the start first.
    shown = harness_cli("events", str(run_dir))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.splitlines()
    assert len(text) == len(lines)
    assert any(" fault " in t and "live 0" in t and "applied" in t for t in text)
    assert all(t.lstrip().startswith("+") for t in text)


def test_a_fault_that_reaches_none_of_its_instances_says_so_and_fails(tmp_path: Path) -> None:
    """It printed the instances it chose and exited 0, as if they had been hit."""
    out = tmp_path / "out"
    run = _start(out, seconds=20)
    with _reaped(run):
        run_dir = _run_dir(out)
        first = _fault_now(run_dir, "kill", "--instance", "single/1")  # for good
        assert first.returncode == 0 and "missed" not in first.stdout, first.stdout
        again = harness_cli("fault", str(run_dir), "kill", "--instance", "single/1")
        assert again.returncode == 1, again.stdout + again.stderr
        assert again.stdout.strip().endswith("kill single/1; missed (not running): single/1")
        run.send_signal(signal.SIGINT)  # the run has nothing more to show: it cleans up
        run.wait(timeout=60)


def test_events_follow_ends_when_the_supervisor_is_gone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = _start(out, seconds=30)
    pids: list[int] = []
    with _reaped(run):
        run_dir = _run_dir(out)
        events = subprocess.Popen(
            [sys.executable, "-m", "harness", "events", str(run_dir), "--follow"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with _reaped(events):
            try:
                started = _wait_for("two instances", lambda: [
                    e for e in _lines(run_dir / "events.jsonl") if e.get("status") == "started"
                ] if len([e for e in _lines(run_dir / "events.jsonl")
                          if e.get("status") == "started"]) == 2 else None)
                pids = [e["pid"] for e in started]
                assert (run_dir / "control.token").exists()
                run.kill()  # SIGKILL: run.json stays "running"
                run.wait()
                _, errors = events.communicate(timeout=60)
                assert events.returncode == 0, errors
            finally:
                for pid in pids:  # the instances the killed supervisor left
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
    assert json.loads((run_dir / "run.json").read_text())["outcome"] == "aborted"
    assert not (run_dir / "control.token").exists()


def test_the_control_token_is_read_only_from_a_regular_file(tmp_path: Path) -> None:
    """A FIFO in its place made `harness fault` wait forever."""
    from harness._control import CONTROL_FILE, ControlError, read_token, write_token

    with pytest.raises(ControlError, match="does not exist: the run is not ready yet"):
        read_token(tmp_path)
    os.mkfifo(tmp_path / CONTROL_FILE)
    with pytest.raises(ControlError, match="is not a regular file: it holds no token"):
        read_token(tmp_path)
    (tmp_path / CONTROL_FILE).unlink()
    write_token(tmp_path, "abc")
    assert read_token(tmp_path) == "abc"
