"""A run on a saturated host says so: summary.json, the report's header, `harness show`
and the end of `harness run`."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from harness._cli import main
from harness._supervisor import RunResult
from harness.observe import _tracefile, list_runs, record_run, write_report
from tests.observe._fixture import RUN_ID


def test_a_run_on_a_saturated_host_is_warned_about_everywhere_it_is_read(
    run_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = run_factory(stalled=(1, 2), cpu_busy=True, change_at=None)
    write_report(run_dir)
    warnings = json.loads((run_dir / "summary.json").read_text())["warnings"]
    assert len(warnings) == 1
    warning = warnings[0]
    assert warning.startswith("the host's CPU was saturated: runnable tasks waited for a CPU 60%")
    assert "out-of-line hops are put down to it" in warning
    assert '<p class="warn">The host&#x27;s CPU was saturated' in (
        run_dir / "report.html").read_text()
    assert main(["show", str(run_dir)]) == 0
    assert f"warning: {warning}" in capsys.readouterr().out
    result = RunResult(RUN_ID, run_dir, "passed", 0, None, [], 12.0)
    assert f"\nwarning: {warning}\n" in result.summary()
    record_run(run_dir)  # as the end of a run does, after the report
    assert [r.warnings for r in list_runs(run_dir.parent)] == [[warning]]
    assert main(["runs", "--outputs", str(run_dir.parent)]) == 0
    (line,) = capsys.readouterr().out.splitlines()[1:]
    assert line.endswith("  warning: the host's CPU was saturated")
    assert main(["runs", "--outputs", str(run_dir.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["warnings"] == [warning]


def test_a_saturated_run_without_traces_is_warned_about_without_hops(
    run_factory: Callable[..., Path],
) -> None:
    run_dir = run_factory(stalled=(1, 2), cpu_busy=True, change_at=None)
    traces = list(run_dir.glob("*/*/trace.jsonl*"))
    assert traces
    for trace in traces:
        trace.unlink()
    write_report(run_dir)
    (warning,) = json.loads((run_dir / "summary.json").read_text())["warnings"]
    assert "waited for a CPU 60% of the time" in warning and "hops" not in warning


def test_a_run_on_a_quiet_host_has_no_warning(
    run_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = run_factory(change_at=None)
    write_report(run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["warnings"] == []
    assert 'class="warn"' not in (run_dir / "report.html").read_text()
    assert main(["show", str(run_dir)]) == 0
    assert "warning" not in capsys.readouterr().out
    assert "warning" not in RunResult(RUN_ID, run_dir, "passed", 0, None, [], 12.0).summary()
    record_run(run_dir)
    assert [r.warnings for r in list_runs(run_dir.parent)] == [[]]
    assert main(["runs", "--outputs", str(run_dir.parent)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_a_history_written_before_warnings_were_kept_gets_them_from_the_run_dirs(
    run_factory: Callable[..., Path],
) -> None:
    """An older harness's history.sqlite has no warnings column: the first look at it adds
    the column and fills it from each recorded run's summary.json."""
    run_dir = run_factory(stalled=(1, 2), cpu_busy=True, change_at=None)
    write_report(run_dir)
    (warning,) = json.loads((run_dir / "summary.json").read_text())["warnings"]
    db = run_dir.parent / "history.sqlite"
    with sqlite3.connect(db) as conn:  # the schema before the column, and one run in it
        conn.execute(
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, plan TEXT, \"case\" TEXT, runner TEXT,"
            " started REAL, ended REAL, duration_s REAL, outcome TEXT, exit_code INTEGER,"
            " reason TEXT, instances INTEGER, failed INTEGER, params TEXT, dir TEXT,"
            " report TEXT)"
        )
        conn.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_dir.name, "pingpong", "ping", "local:exec", 1.0, 13.0, 12.0, "passed", 0,
             None, 4, 0, "{}", str(run_dir), None),
        )  # fmt: skip
    (row,) = list_runs(run_dir.parent)
    assert (row.run_id, row.warnings, row.origin) == (run_dir.name, [warning], None)
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "origin": "harness search x"}))
    record_run(run_dir)  # and the new schema takes new records
    assert [(r.warnings, r.origin) for r in list_runs(run_dir.parent)] == [
        ([warning], "harness search x")]


def test_a_trace_read_only_up_to_the_cap_is_warned_about(
    run_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trace that inflates past what a reader takes (a runaway writer, a gzip bomb) is
    read up to the cap, and the report says whose was cut."""
    monkeypatch.setattr(_tracefile, "MAX_TRACE_BYTES", 1 << 20)
    run_dir = run_factory(change_at=None)
    trace = sorted(run_dir.glob("*/*/trace.jsonl*"))[0]
    with trace.open("ab") as f:  # 2 MiB more: blank lines, or zeros in a gzip member
        f.write(gzip.compress(bytes(2 << 20)) if trace.suffix == ".gz" else b"\n" * (2 << 20))
    write_report(run_dir)
    (warning,) = json.loads((run_dir / "summary.json").read_text())["warnings"]
    who = f"{trace.parent.parent.name}/{trace.parent.name}"
    assert warning.startswith(f"the message traces of {who} hold more than 1 MiB once "
                              "decompressed: only that much of each was read")
    assert '<p class="warn">The message traces of' in (run_dir / "report.html").read_text()


def test_damaged_lines_of_the_runs_own_records_are_warned_about(
    run_factory: Callable[..., Path],
) -> None:
    """They were left out of the report without a word."""
    run_dir = run_factory(change_at=None)
    with (run_dir / "events.jsonl").open("ab") as f:
        f.write(b'{"kind": "signal", cut short\n[1, 2]\n\n')
    with (run_dir / "faults.jsonl").open("ab") as f:
        f.write(b"garbage\n{\"kind\": \"app")  # the last line: the run has ended, so cut
    for name in ("network.jsonl", "telemetry.jsonl"):
        with (run_dir / name).open("ab") as f:
            f.write(b'"a string"\n{"mono": 1.0, "kind": "cpu", "wait_us_total": 5}\n{"x\n')
    write_report(run_dir)
    warnings = json.loads((run_dir / "summary.json").read_text())["warnings"]
    end = " (not a JSON object), left out of this report: the record was cut short or edited."
    assert warnings == [f"the run's events.jsonl has 2 damaged lines{end}",
                        f"the run's faults.jsonl has 2 damaged lines{end}",
                        f"the run's network.jsonl has 2 damaged lines{end}",
                        f"the run's telemetry.jsonl has 2 damaged lines{end}"]
    page = (run_dir / "report.html").read_text()
    assert "The run&#x27;s events.jsonl has 2 damaged lines" in page


def test_a_record_of_a_few_mib_is_read_not_called_damaged(
    run_factory: Callable[..., Path],
) -> None:
    """Records up to 16 MiB are read: an instance's failure with a 2 MiB message, a
    partition's step over hundreds of instances. The logs' 1 MiB cut had taken the
    readers' limit, so they were left out and called cut short or edited."""
    run_dir = run_factory(change_at=None, faults=True)
    big = "x" * (2 << 20)
    with (run_dir / "events.jsonl").open("ab") as f:
        f.write(json.dumps({"ts": 1795000009.0, "mono": 1009.0, "kind": "event",
                            "type": "failure", "instance": "single/1",
                            "error": f"TestFailure: {big}"}).encode() + b"\n")
    chosen = [f"single/{i}" for i in range(4)]
    with (run_dir / "faults.jsonl").open("ab") as f:
        f.write(json.dumps({"ts": 1795000010.0, "mono": 1010.0, "fault": "fault 3",
                            "step": "applied", "action": "pause", "chosen": chosen,
                            "directions": [[big[:40], big[:40]]] * 40000}).encode() + b"\n")
    write_report(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["warnings"] == []
    pause = next(f for f in summary["faults"] if f["fault"] == "fault 3")
    assert pause["played"] and pause["chosen"] == chosen
    assert "single/1 failure TestFailure: xxx" in (run_dir / "report.html").read_text()
