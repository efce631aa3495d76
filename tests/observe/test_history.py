"""The SQLite run history and the `runs` / `show` commands."""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness._cli import main
from harness._errors import UsageError
from harness.observe import instance_rows, list_runs, record_run, sync_history

from ..conftest import ROOT


def test_record_and_list(run_factory: Callable[..., Path], tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    a = run_factory(run_id="20261126-031500-aaaaaa")
    b = run_factory(run_id="20261126-041500-bbbbbb", failed=(1, 3))
    # b started later in the fixture? make it so, to test the order
    run = json.loads((b / "run.json").read_text())
    run["started"] += 3600
    run["ended"] += 3600
    (b / "run.json").write_text(json.dumps(run))
    record_run(a)
    record_run(b)
    record_run(b)  # again: an update, not a duplicate
    rows = list_runs(outputs)
    assert [r.run_id for r in rows] == [b.name, a.name]
    assert (rows[0].outcome, rows[0].failed, rows[0].instances) == ("failed", 2, 4)
    assert rows[1].duration_s == pytest.approx(12.0) and rows[1].params["rounds"] == 3
    assert [r.run_id for r in list_runs(outputs, outcome="passed")] == [a.name]
    assert list_runs(outputs, plan="other") == []
    insts = instance_rows(b.name, outputs)
    assert [(i["id"], i["outcome"]) for i in insts if i["outcome"] == "failed"] == [
        ("single/1", "failed"),
        ("single/3", "failed"),
    ]
    with sqlite3.connect(outputs / "history.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM instances").fetchone() == (8,)
        assert conn.execute(
            "SELECT value FROM params WHERE run_id=? AND name='payload'", (a.name,)
        ).fetchone() == ('"hello"',)


def test_a_history_a_newer_harness_added_a_column_to_still_reads_and_takes_runs(
    run_factory: Callable[..., Path], tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    a = run_factory(run_id="20261126-031500-aaaaaa")
    record_run(a)
    with sqlite3.connect(outputs / "history.sqlite") as conn:
        conn.execute("ALTER TABLE runs ADD COLUMN newer TEXT")
    b = run_factory(run_id="20261126-041500-bbbbbb", failed=(1,))
    record_run(b)
    rows = {r.run_id: (r.outcome, r.origin, r.warnings) for r in list_runs(outputs)}
    assert rows == {a.name: ("passed", None, []), b.name: ("failed", None, [])}


def test_sync_adds_unrecorded_finished_runs(
    run_factory: Callable[..., Path], tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    run_factory(run_id="20261126-031500-aaaaaa")
    run_factory(run_id="20261126-041500-bbbbbb", ended=False)
    assert sync_history(outputs) == 1
    assert sync_history(outputs) == 0
    assert [r.run_id for r in list_runs(outputs)] == ["20261126-031500-aaaaaa"]


def test_runs_by_their_origin(run_factory: Callable[..., Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """`--by TEXT` keeps the runs whose origin holds TEXT as it is (no wildcards)."""
    outputs = tmp_path / "outputs"
    origins = {"20261126-031500-aaaaaa": "harness search 20261206-010000-abc_ef (list 1)",
               "20261126-041500-bbbbbb": "harness search 20261206-010000-abcXef (list 1)",
               "20261126-051500-cccccc": "harness replay 20261126-031500-aaaaaa",
               "20261126-061500-dddddd": None}
    for run_id, origin in origins.items():
        run_json = run_factory(run_id=run_id) / "run.json"
        run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "origin": origin}))
    for text, listed in (("20261206-010000-abc_ef", ["20261126-031500-aaaaaa"]),
                         ("harness replay", ["20261126-051500-cccccc"]),
                         ("20261126-031500-aaaaaa", ["20261126-051500-cccccc"]),
                         ("harness search", ["20261126-041500-bbbbbb",
                                             "20261126-031500-aaaaaa"]),
                         ("%", [])):
        assert main(["runs", "--outputs", str(outputs), "--by", text, "--json"]) == 0
        shown = [row["run_id"] for row in json.loads(capsys.readouterr().out)]
        assert sorted(shown) == sorted(listed), text
    assert main(["runs", "--outputs", str(outputs), "--by", ""]) == 2
    assert capsys.readouterr().err.strip() == "harness: error: --by needs some text to look for"
    for plan in ("", ":ping"):  # (an empty one listed every run, as if not given)
        assert main(["runs", "--outputs", str(outputs), "--plan", plan]) == 2
        assert capsys.readouterr().err.strip() == (f"harness: error: --plan {plan!r} names no "
                                                   f"plan (PLAN or PLAN:CASE)")


def test_a_run_json_that_cannot_be_read_is_not_listed_and_a_warning_says_so(
    run_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs"
    run_factory(run_id="20261126-031500-aaaaaa")
    bad = run_factory(run_id="20261126-041500-bbbbbb") / "run.json"
    bad.write_text(json.dumps({**json.loads(bad.read_text()), "started": "noon"}))
    assert main(["runs", "--outputs", str(outputs)]) == 0
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()[1:]] == [
        "20261126-031500-aaaaaa"]
    (warning,) = captured.err.splitlines()
    assert warning.startswith("harness: warning: run 20261126-041500-bbbbbb is not listed: ")
    assert "started" in warning, warning


def test_runs_of_a_directory_without_runs_leaves_no_history_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness runs --outputs ~` (mistyped) left a history.sqlite in the home directory."""
    (tmp_path / "notes").mkdir()
    assert main(["runs", "--outputs", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "no runs\n"
    assert main(["runs", "--outputs", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


def test_runs_say_where_the_run_is_now_after_its_outputs_moved(
    run_factory: Callable[..., Path], tmp_path: Path
) -> None:
    """The history kept the absolute path each run was recorded at: outputs moved elsewhere
    listed directories that were no longer there."""
    import shutil

    record_run(run_factory(run_id="20261126-031500-aaaaaa"))
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "outputs", moved)
    (row,) = list_runs(moved)
    assert row.dir == str((moved / "20261126-031500-aaaaaa").resolve())
    assert row.report is None  # (none was written)


def test_record_needs_run_json(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no run\.json"):
        record_run(tmp_path)


def test_a_corrupt_history_is_a_warning_and_the_run_directories_are_listed(
    run_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was an error (exit 2), and nothing was listed."""
    run_dir = run_factory()
    (tmp_path / "outputs" / "history.sqlite").write_bytes(b"not a database at all" * 100)
    assert main(["runs", "--outputs", str(tmp_path / "outputs")]) == 0
    out, err = capsys.readouterr()
    assert err == (f"harness: warning: run history {tmp_path / 'outputs' / 'history.sqlite'} "
                   "is unusable: file is not a database; the runs are read from their "
                   "directories\n")
    assert run_dir.name in out


def test_a_write_the_file_system_refuses_still_lists_what_the_history_holds(
    run_factory: Callable[..., Path], tmp_path: Path
) -> None:
    """SQLite reports a quota or a file size limit as "disk I/O error", not "disk full";
    the history was then called unusable. A file size limit of 1 byte stands in here."""
    old = run_factory(run_id="20261126-031500-aaaaaa")
    run_factory(run_id="20261126-041500-bbbbbb")
    record_run(old)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write fails with EFBIG

    r = subprocess.run(
        [sys.executable, "-m", "harness", "runs", "--json", "--outputs", str(tmp_path / "outputs")],
        capture_output=True, text=True, timeout=60, preexec_fn=limited, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("harness: warning: the run history was not brought up to date (")
    assert "disk I/O error" in r.stderr and r.stderr.count("\n") == 1
    assert [row["run_id"] for row in json.loads(r.stdout)] == [old.name]


def test_a_run_deleted_without_foreign_keys_is_recorded_again(
    run_factory: Callable[..., Path], tmp_path: Path
) -> None:
    """sqlite3's shell leaves foreign keys off: deleting a run there leaves its instances,
    which made recording it again fail ("UNIQUE constraint failed")."""
    run = run_factory(run_id="20261126-031500-aaaaaa")
    record_run(run)
    with sqlite3.connect(tmp_path / "outputs" / "history.sqlite") as conn:
        conn.execute("DELETE FROM runs")
    assert sync_history(tmp_path / "outputs") == 1
    assert [r.run_id for r in list_runs(tmp_path / "outputs")] == [run.name]
    assert len(instance_rows(run.name, tmp_path / "outputs")) == 4


def test_cli_runs_and_show(
    run_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = str(tmp_path / "outputs")
    run_factory(run_id="20261126-031500-aaaaaa", failed=(2,))
    assert main(["runs", "--outputs", outputs, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["run_id"] == "20261126-031500-aaaaaa" and row["outcome"] == "failed"
    assert main(["runs", "--outputs", outputs, "--outcome", "passed"]) == 0
    assert capsys.readouterr().out.strip() == "no runs"
    # PLAN:CASE as the table shows it ("no runs" before), and a case the run is not of
    for plan, listed in (("pingpong:ping", 1), ("pingpong", 1), ("pingpong:pong", 0),
                         ("ping", 0)):
        assert main(["runs", "--outputs", outputs, "--plan", plan, "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)) == listed, plan
    assert main(["runs", "--outputs", outputs]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("RUN") and "pingpong:ping" in table[1] and "failed" in table[1]
    assert main(["show", "latest", "--outputs", outputs]) == 0
    out = capsys.readouterr().out
    assert "FAILED  3/4 passed" in out and "single/2: height mismatch at layer 7 (exit code 1)\n" in out
    assert "harness report" in out  # no report yet: says how to write one
    run_json = next((tmp_path / "outputs").glob("*/run.json"))
    record = json.loads(run_json.read_text())
    for inst in record["instances"]:  # as a crash is recorded: the reason is the code
        if inst["id"] == "single/2":
            inst["reason"], inst["exit_code"] = "exit code 13", 13
    run_json.write_text(json.dumps(record))
    assert main(["show", "latest", "--outputs", outputs]) == 0
    assert "  single/2: exit code 13\n" in capsys.readouterr().out  # not "(exit code 13)" again
    # A search's run says which search made it (run.json's `origin`)
    record["origin"] = "harness search 20261206-010000-abcdef (list 2 of 10)"
    run_json.write_text(json.dumps(record))
    record_run(run_json.parent)
    assert main(["runs", "--outputs", outputs]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith(f"  by {record['origin']}")
    assert main(["runs", "--outputs", outputs, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["origin"] == record["origin"]
    record["origin"] = "line 1\nline 2" + "x" * 5000  # (a record written by something else)
    run_json.write_text(json.dumps(record))
    record_run(run_json.parent)
    assert main(["runs", "--outputs", outputs]) == 0
    (row,) = capsys.readouterr().out.splitlines()[1:]
    assert "by line 1\\nline 2xxx" in row and len(row) < 400, row
    assert main(["runs", "--outputs", str(tmp_path / "nowhere")]) == 2
    assert main(["runs", "--outputs", outputs, "--limit", "0"]) == 2
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "plan": None}))
    assert main(["show", "latest", "--outputs", outputs]) == 0
    assert "plan     -:ping  runner" in capsys.readouterr().out  # was "None:ping"


def test_rows_of_the_wrong_types_read_as_missing_and_the_others_still_list(
    run_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs"
    good = run_factory(run_id="20261126-031500-aaaaaa")
    record_run(good)
    with sqlite3.connect(outputs / "history.sqlite") as conn:  # as a hand's edit leaves it
        conn.execute("INSERT INTO runs (run_id, started, duration_s, params, warnings, failed) "
                     "VALUES ('20261126-041500-bbbbbb', 'abc', 'x', '{bad', '[1, \"w: 2\"]', -3)")
        conn.execute("INSERT INTO runs (run_id) VALUES ('20261126-051500-cccccc')")
        conn.execute("INSERT INTO runs (run_id, plan) VALUES (NULL, 'pingpong')")
    rows = {r.run_id: r for r in list_runs(outputs)}
    assert set(rows) == {good.name, "20261126-041500-bbbbbb", "20261126-051500-cccccc"}
    bad = rows["20261126-041500-bbbbbb"]
    assert (bad.started, bad.duration_s, bad.params, bad.failed) == (None, None, {}, 0)
    assert bad.warnings == ["w: 2"]
    assert rows[good.name].params["rounds"] == 3
    assert main(["runs", "--outputs", str(outputs)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines.keys() == rows.keys()
    assert lines["20261126-051500-cccccc"].split() == ["20261126-051500-cccccc", "-:-", "-",
                                                       "0", "0", "-", "-"]
    assert lines["20261126-041500-bbbbbb"].endswith("  warning: w")


def test_runs_limit_beyond_64_bits_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outputs").mkdir()
    assert main(["runs", "--outputs", str(tmp_path / "outputs"), "-n", str(2**64)]) == 2
    assert capsys.readouterr().err == (
        "harness: error: --limit must be a whole number from 1 to 2**63 - 1, "
        f"not {2**64}\n")
