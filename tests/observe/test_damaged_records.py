"""A run directory with damaged records (a hand's edit, a full disk, another program's
writes): the commands that read it show what they can, without a traceback."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness._cli import main
from harness.observe._rundir import instance_dirs
from harness.observe._tracefile import TRACE_FILE

from ..conftest import ROOT, harness_cli
from ._fixture import M0, T0


def _append(path: Path, *records: dict[str, object]) -> None:
    with path.open("a") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")


def test_damaged_records_do_not_stop_show_report_logs_or_events(
    run_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = run_factory()
    # Each of these was a traceback (found by fuzzing a real run's files).
    _append(run_dir / "events.jsonl",  # a time no clock reaches, an instance that is a list
            {"ts": 1e300, "mono": 1e300, "kind": "signal", "instance": [1, [2]], "state": "s"})
    _append(run_dir / "supervisor.jsonl",
            {"ts": 1e300, "mono": M0 + 1, "level": "info", "event": "far in the future"})
    _append(run_dir / "network.jsonl",
            {"ts": T0 + 1, "mono": M0 + 1, "op": "request", "asked": "x"},
            {"ts": T0 + 1, "mono": "x", "asked_by": "supervisor", "request": {"default": {}}})
    _append(run_dir / "faults.jsonl",
            {"ts": T0 + 1, "mono": M0 + 1, "at_s": 1.0, "fault": "fault 0", "step": "applied",
             "action": "kill", "chosen": 5, "missed": True})
    _append(run_dir / "scraped.jsonl",
            {"ts": T0 + 1, "mono": M0 + 1, "instance": "single/0", "metric": "m",
             "type": "gauge", "sample": "m", "labels": "x", "value": 1.0})
    _append(run_dir / "single" / "0" / "trace.jsonl",  # names that are lists, a dict kind
            {"ts": T0 + 1, "mono": M0 + 1, "kind": "receive", "msg_id": "m-x", "topic": "t",
             "from": ["a"], "to": {"b": 1}, "size": 1},
            {"ts": T0 + 1, "mono": M0 + 1, "kind": {"k": 1}, "msg_id": "m-y", "topic": [],
             "from": None, "to": None, "size": 1})
    # A program that wrote 3 MB without a newline: shown cut at 1 MiB, not held whole.
    (run_dir / "single" / "0" / "stdout.log").write_bytes(b"x" * (3 << 20))
    outputs = str(run_dir.parent)
    for command in (["show"], ["report"], ["logs"], ["events"]):
        assert main([*command, "latest", "--outputs", outputs]) == 0, command
    out = capsys.readouterr().out
    assert "??:??:??.??? supervisor" in out  # the log line whose time is out of range
    assert max(len(line) for line in out.splitlines()) < (1 << 20) + 200


def test_run_files_that_are_not_regular_files_read_as_absent(
    run_factory: Callable[..., Path],
) -> None:
    """A FIFO made every reader wait for ever; a directory or a symlink loop was a
    traceback."""
    run_dir = run_factory(failed=(3,))  # the report shows a failed instance's stderr
    for name in ("events.jsonl", "supervisor.jsonl"):
        (run_dir / name).unlink()
        os.mkfifo(run_dir / name)
    (run_dir / "network.jsonl").unlink()
    (run_dir / "network.jsonl").mkdir()
    (run_dir / "single" / "0" / "log.jsonl").unlink()
    (run_dir / "single" / "0" / "log.jsonl").symlink_to("log.jsonl")  # a loop
    trace = run_dir / "single" / "1" / "trace.jsonl.gz"
    trace.unlink(missing_ok=True)
    trace.mkdir()
    # These hung `harness report` (a FIFO) or took the machine's memory (/dev/zero).
    os.mkfifo(run_dir / "scrapes.json")
    (run_dir / "single" / "3" / "stderr.log").unlink(missing_ok=True)
    (run_dir / "single" / "3" / "stderr.log").symlink_to("/dev/zero")
    for command in ("show", "report", "logs", "events"):
        r = harness_cli(command, str(run_dir), timeout=60)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (command, r.stderr)


@pytest.mark.parametrize("make", [os.mkfifo, lambda p: p.symlink_to("/dev/zero")])
def test_a_run_json_that_is_no_regular_file_is_one_line_not_a_hang(
    run_factory: Callable[..., Path], tmp_path: Path, make: Callable[[Path], None],
) -> None:
    """A FIFO hung every command that reads the runs, `harness run` too (in a thread that
    ignored SIGTERM and SIGINT); /dev/zero ended in MemoryError."""
    run_dir = run_factory()
    (run_dir / "run.json").unlink()
    make(run_dir / "run.json")
    for command in (["show", str(run_dir)], ["runs", "--outputs", str(run_dir.parent)],
                    ["report", str(run_dir)]):
        r = harness_cli(*command, timeout=60)
        assert "Traceback" not in r.stderr, (command, r.stderr)
        if command[0] != "runs":
            assert (r.returncode, r.stderr) == (
                2, f"harness: error: {run_dir / 'run.json'} is not a regular file\n"), command


def test_what_the_terminal_cannot_encode_is_escaped_not_a_traceback(
    run_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under PYTHONIOENCODING=ascii (or a C locale's terminal), `show` of a failed run
    printed half its table and a UnicodeEncodeError."""
    run_dir = run_factory(failed=(3,))
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["show", str(run_dir)]) == 0
    out.flush()
    text = out.buffer.getvalue().decode("ascii")
    assert "\\u2014 1 instance(s) failed" in text


def test_a_directory_that_is_no_instance_is_not_listed_as_one(
    run_factory: Callable[..., Path],
) -> None:
    """`notes/1/` beside the groups was an instance "notes/1" in show, logs and the report;
    a live run's own group directories still count before run.json lists them."""
    run_dir = run_factory()
    (run_dir / "notes" / "1").mkdir(parents=True)
    (run_dir / "single" / "9").mkdir()  # an instance of a group the run has
    ids = [i.id for i in instance_dirs(run_dir)]
    assert "notes/1" not in ids and "single/9" in ids
    (run_dir / "run.json").unlink()  # no record: every <group>/<seq>/ is all there is
    assert "notes/1" in [i.id for i in instance_dirs(run_dir)]


def test_a_record_longer_than_the_limit_is_damage_read_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One record of a gigabyte (a program that logged a whole buffer) was read whole, then
    parsed: as much memory as the line, for every command that reads the file."""
    import tracemalloc

    from harness.observe import _jsonl

    monkeypatch.setattr(_jsonl, "MAX_LINE", 1 << 16)
    path = tmp_path / "log.jsonl"
    with path.open("wb") as f:
        f.write(b'{"n": 1}\n{"big": "' + b"x" * (40 << 20) + b'"}\n{"n": 2}\n{"n": 3}')
    damaged: dict[Path, int] = {}
    tracemalloc.start()
    try:
        got = list(_jsonl.read_jsonl(path, damaged))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [{"n": 1}, {"n": 2}, {"n": 3}]  # the unfinished last line read too
    assert damaged == {path: 1}
    assert peak < 8 << 20, peak


def _unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS` without root's bypass of file permissions."""
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    return subprocess.run([*drop, sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_a_file_that_cannot_be_read_is_a_warning_naming_it_not_absent(
    run_factory: Callable[..., Path],
) -> None:
    """An unreadable events.jsonl, log.jsonl or stderr.log was read as absent, without a
    word; an unreadable trace failed the report ("writing the report ... failed") and show."""
    run_dir = run_factory(failed=(3,))
    unreadable = [run_dir / "events.jsonl", run_dir / "single" / "1" / "log.jsonl",
                  run_dir / "single" / "3" / "stderr.log", run_dir / "single" / "2" / TRACE_FILE]
    for path in unreadable:
        path.chmod(0)
    events = _unprivileged("events", str(run_dir))
    assert events.returncode == 0 and events.stdout  # network.jsonl's
    assert events.stderr == (f"harness: warning: reading {unreadable[0]} failed: "
                             "Permission denied; left out\n")
    logs = _unprivileged("logs", str(run_dir))
    assert logs.returncode == 0 and "single/0" in logs.stdout
    assert logs.stderr.splitlines() == [
        f"harness: warning: reading {path} failed: Permission denied; left out"
        for path in unreadable[:3]]
    report = _unprivileged("report", str(run_dir))
    assert (report.returncode, report.stderr) == (0, ""), report.stderr
    show = _unprivileged("show", str(run_dir))
    assert show.returncode == 0, show.stderr
    assert ("warning: the run's events.jsonl could not be read (Permission denied): left out "
            "of this report.") in show.stdout
    assert ("warning: the message trace of single/2 could not be read (Permission denied)"
            in show.stdout)
    assert "stderr.log could not be read (Permission denied)" in (
        run_dir / "report.html").read_text()
    (run_dir / "run.json").chmod(0)
    show = _unprivileged("show", str(run_dir))
    assert (show.returncode, show.stderr) == (
        2, f"harness: error: cannot read {run_dir / 'run.json'}: Permission denied\n")


def test_a_history_that_is_no_database_leaves_the_report_written_and_says_so(
    run_factory: Callable[..., Path],
) -> None:
    """`harness report` failed with exit 2 after it had written the report, and printed
    no path."""
    run_dir = run_factory()
    (run_dir.parent / "history.sqlite").write_bytes(b"not a database" * 1000)
    r = harness_cli("report", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(run_dir / "report.html")
    assert r.stderr.startswith("harness: warning: the run history was not updated: run "
                               "history ") and "is unusable" in r.stderr
    assert len(r.stderr.splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a read-only bind mount needs root and unshare")
def test_runs_on_a_read_only_outputs_directory_lists_them(
    run_factory: Callable[..., Path],
) -> None:
    """It failed: "cannot open run history ...: unable to open database file"."""
    run_dir = run_factory()
    outputs = run_dir.parent
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$1" "$1" && exec "$2" -m harness '
         'runs --outputs "$1" --json', "sh", str(outputs), sys.executable],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert [row["run_id"] for row in json.loads(r.stdout)] == [run_dir.name]
    assert "the runs are read from their directories" in r.stderr


def test_without_events_jsonl_times_count_from_the_run_s_start_and_it_is_said(
    run_factory: Callable[..., Path],
) -> None:
    """Its times since the start were taken from events.jsonl alone: without it every one
    was the machine's uptime ("fault 0 at 50025.7 s"), without a word why."""
    from harness.observe._report import summary

    run_dir = run_factory(faults=True)
    before = summary(run_dir)
    (run_dir / "events.jsonl").unlink()
    after = summary(run_dir)
    assert after["faults"] == before["faults"]
    assert after["faults"][0]["applied_s"] == 3.0
    assert ("the run's events.jsonl could not be read (it is missing): left out of this "
            "report.") in after["warnings"]


def test_without_faults_jsonl_the_faults_are_read_from_events_jsonl_and_it_is_said(
    run_factory: Callable[..., Path],
) -> None:
    """Gone or unreadable, every fault read as "not played (the run ended before it was
    applied)", though events.jsonl holds each of its steps too."""
    from harness.observe._report import summary

    run_dir = run_factory(faults=True)
    before = summary(run_dir)
    steps = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]
    events = []
    for step in steps:  # as the conductor records them
        event = {**step, "kind": "fault"}
        if "kind" in step:
            event["partition_kind"] = step["kind"]
        events.append(event)
    _append(run_dir / "events.jsonl", *events)
    (run_dir / "faults.jsonl").unlink()
    after = summary(run_dir)
    assert after["faults"] == before["faults"]
    assert any(f["played"] for f in after["faults"])
    assert ("the run's faults.jsonl could not be read (it is missing): what it holds was "
            "taken from events.jsonl.") in after["warnings"]


@pytest.mark.parametrize("ended", [True, False])
def test_an_ended_run_s_record_cut_mid_line_is_damage_a_live_one_s_is_not(
    run_factory: Callable[..., Path], ended: bool,
) -> None:
    """A finished run whose events.jsonl was cut in a line read as whole: its last line was
    taken for one a live writer had not finished."""
    from harness.observe._report import summary

    run_dir = run_factory(ended=ended)
    events = run_dir / "events.jsonl"
    events.write_bytes(events.read_bytes()[:-10])
    said = "the run's events.jsonl has 1 damaged line (not a JSON object)"
    assert any(w.startswith(said) for w in summary(run_dir)["warnings"]) is ended
