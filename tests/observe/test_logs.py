"""Structured logging and the merged log view."""

from __future__ import annotations

import itertools
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import harness.observe._logging
from harness._cli import main
from harness._errors import UsageError
from harness._liveness import RECORD_LOST_S, run_over
from harness.observe import (
    LogFilter,
    configure_logging,
    follow_lines,
    format_line,
    get_logger,
    merged_lines,
    resolve_run,
)
from tests.conftest import ROOT, harness_cli
from tests.observe._fixture import M0, RUN_ID, orphan


@pytest.fixture
def reset_logging() -> Iterator[None]:
    yield
    configure_logging(json_path=None, console=False)
    logging.getLogger().setLevel(logging.WARNING)


def test_configure_logging_writes_json_lines_and_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reset_logging: None
) -> None:
    path = tmp_path / "log.jsonl"
    configure_logging(json_path=path, level="debug", instance="single/3")
    log = get_logger("plan")
    log.info("dialled", peer="single/1", attempt=2)
    log.debug("details")
    logging.getLogger("foreign").warning("from stdlib %d", 7)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [ln["event"] for ln in lines] == ["dialled", "details", "from stdlib 7"]
    first = lines[0]
    assert first["level"] == "info" and first["instance"] == "single/3"
    assert first["peer"] == "single/1" and first["attempt"] == 2 and first["logger"] == "plan"
    assert isinstance(first["ts"], float) and isinstance(first["mono"], float)
    assert lines[0]["mono"] <= lines[1]["mono"] <= lines[2]["mono"]
    err = capsys.readouterr().err
    assert "dialled" in err and "peer=single/1" in err and '"mono"' not in err


def test_configure_logging_level_filters_and_replaces_outputs(
    tmp_path: Path, reset_logging: None
) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    configure_logging(json_path=a, console=False, level="warning")
    get_logger().info("hidden")
    get_logger().error("shown")
    configure_logging(json_path=b, console=False)
    get_logger().info("second file")
    assert [json.loads(x)["event"] for x in a.read_text().splitlines()] == ["shown"]
    assert [json.loads(x)["event"] for x in b.read_text().splitlines()] == ["second file"]


def test_a_call_that_changes_only_the_outputs_repoints_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reset_logging: None
) -> None:
    """A forked instance's call (its own file and name, all else as the process host set
    it up) keeps the handlers and formatters and re-points them."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b" / "b.jsonl"
    configure_logging(json_path=a, instance="single/1")
    handlers = list(logging.getLogger().handlers)
    get_logger("plan").info("first")
    configure_logging(json_path=b, instance="single/2")
    assert logging.getLogger().handlers == handlers
    get_logger("plan").info("second")
    logging.getLogger("foreign").warning("from stdlib")

    def records(path: Path) -> list[tuple[str, str]]:
        return [(r["event"], r["instance"]) for r in map(json.loads, path.read_text().splitlines())]

    assert records(a) == [("first", "single/1")]
    assert records(b) == [("second", "single/2"), ("from stdlib", "single/2")]
    err = capsys.readouterr().err
    assert "first" in err and "second" in err


def test_a_set_up_changed_since_is_built_again(tmp_path: Path, reset_logging: None) -> None:
    import structlog

    configure_logging(json_path=tmp_path / "a.jsonl", console=False)
    before = list(logging.getLogger().handlers)
    structlog.configure(processors=[structlog.processors.KeyValueRenderer()])  # someone else
    configure_logging(json_path=tmp_path / "b.jsonl", console=False)
    assert logging.getLogger().handlers != before
    get_logger().info("kept")
    assert [json.loads(x)["event"] for x in (tmp_path / "b.jsonl").read_text().splitlines()] == [
        "kept"
    ]


def test_a_call_below_the_level_runs_no_processor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reset_logging: None
) -> None:
    stamped: list[str] = []

    def counting_clock(logger: Any, method: str, event_dict: Any) -> Any:
        stamped.append(event_dict["event"])
        return event_dict

    monkeypatch.setattr(harness.observe._logging, "_add_clock", counting_clock)
    configure_logging(json_path=tmp_path / "log.jsonl", console=False, level="info")
    get_logger("plan").debug("per message")
    get_logger("plan").info("kept")
    assert stamped == ["kept"]


def test_configure_logging_rejects_unknown_level() -> None:
    with pytest.raises(UsageError, match="unknown log level 'loud'"):
        configure_logging(json_path=None, level="loud")


def _all_records(run_dir: Path) -> int:
    count = 0
    for path in [
        run_dir / "supervisor.jsonl",
        *run_dir.glob("*/*/*.log"),
        *run_dir.glob("*/*/log.jsonl"),
    ]:
        count += sum(1 for line in path.read_text().splitlines() if line.strip())
    return count


def test_merged_lines_are_in_time_order_and_complete(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(instances=5, log_lines=30)
    lines = list(merged_lines(run_dir))
    assert len(lines) == _all_records(run_dir)
    monos = [ln.mono for ln in lines]
    assert monos == sorted(monos)
    # the sources interleave (a merge, not one file after another)
    switches = sum(1 for x, y in itertools.pairwise(lines) if x.source != y.source)
    assert switches > len(lines) / 2
    # every JSON line keeps its own time, as a load-all-and-sort would order them
    reference = sorted(
        (rec["mono"], rec["event"])
        for p in [run_dir / "supervisor.jsonl", *run_dir.glob("*/*/log.jsonl")]
        for rec in map(orjson.loads, p.read_bytes().splitlines())
    )
    merged = [(ln.mono, ln.message) for ln in lines if ln.stream == "log"]
    assert merged == reference


def test_plain_lines_take_their_leading_timestamp_or_the_previous_time(
    run_factory: Callable[..., Path],
) -> None:
    run_dir = run_factory()
    lines = [ln for ln in merged_lines(run_dir) if ln.source == "single/1"]
    out = next(ln for ln in lines if ln.message.endswith("stdout line 1"))
    assert out.mono == pytest.approx(M0 + 0.3 + 3.1 + 0.001, abs=1e-3)  # from its ISO timestamp
    before = lines[lines.index(out) - 1]
    assert before.stream == "log" and before.mono <= out.mono
    untimed = next(ln for ln in lines if ln.message.startswith("plain stdout"))
    assert untimed.mono == pytest.approx(M0 + 0.3 + 2 * 3.1 + 0.001, abs=1e-3)  # previous line's


def test_filters(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(failed=(2,))
    only = list(merged_lines(run_dir, LogFilter(instances=("single/2",))))
    assert {ln.source for ln in only} == {"single/2"}
    errors = list(merged_lines(run_dir, LogFilter(min_level="error")))
    assert [(ln.source, ln.message) for ln in errors] == [("single/2", "height mismatch")]
    warn = list(merged_lines(run_dir, LogFilter(min_level="warning")))
    assert warn and all(ln.level in ("warning", "error") for ln in warn)
    grep = list(merged_lines(run_dir, LogFilter(grep="step 13")))
    assert len(grep) == 4 and all(ln.message == "step 13" for ln in grep)
    sup = list(merged_lines(run_dir, LogFilter(instances=("supervisor",))))
    assert [ln.message for ln in sup] == ["run starting", "run finished"]
    group = list(merged_lines(run_dir, LogFilter(groups=("single",))))
    assert "supervisor" not in {ln.source for ln in group} and len(group) > 40
    assert not list(merged_lines(run_dir, LogFilter(groups=("other",))))


def test_grep_matches_the_lines_as_printed(run_factory: Callable[..., Path]) -> None:
    """It matched the message and each field's value alone: "id=single/0", "WARN" or an
    instance's id, all in the printed line, matched nothing (or one line of 31)."""
    run_dir = run_factory(failed=(2,))
    printed = [format_line(ln, colour=False) for ln in merged_lines(run_dir)]
    with_fields = next(ln for ln in merged_lines(run_dir) if len(ln.fields) > 1)
    key, value = next((k, v) for k, v in with_fields.fields.items() if k != "logger")
    for needle in (f"{key}={value}", "single/2", "ERROR", "step 13"):
        grepped = [format_line(ln, colour=False)
                   for ln in merged_lines(run_dir, LogFilter(grep=needle))]
        assert grepped == [p for p in printed if needle in p] and grepped, needle


def test_format_line_colours_only_when_asked(run_factory: Callable[..., Path]) -> None:
    line = next(iter(merged_lines(run_factory(), LogFilter(instances=("single/0",)))))
    plain, coloured = format_line(line, colour=False), format_line(line, colour=True)
    assert "\x1b[" not in plain and "single/0" in plain
    assert "\x1b[" in coloured


def test_follow_reads_a_live_run_until_it_ends(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(ended=False, instances=2, log_lines=3)
    log = run_dir / "single" / "1" / "log.jsonl"
    run_json = run_dir / "run.json"
    polls: list[int] = []

    def sleep(_: float) -> None:
        n = len(polls)
        polls.append(n)
        if n < 3:
            with log.open("ab") as f:
                rec = {"ts": 0.0, "mono": M0 + 20 + n, "event": f"live {n}", "level": "info"}
                f.write(orjson.dumps(rec) + b"\n")
                if n == 2:
                    f.write(b'{"ts": 0.0, "mono": ')  # a half-written line waits for its end
        else:
            with log.open("ab") as f:
                f.write(b'%f, "event": "completed", "level": "info"}\n' % (M0 + 30))
            run = orjson.loads(run_json.read_bytes())
            run["ended"] = run["started"] + 40
            run_json.write_bytes(orjson.dumps(run))

    lines = list(follow_lines(run_dir, LogFilter(instances=("single/1",)), sleep=sleep))
    messages = [ln.message for ln in lines if ln.stream == "log"]
    assert messages[-4:] == ["live 0", "live 1", "live 2", "completed"]
    assert len(polls) == 4


@pytest.mark.parametrize("outcome", ["running", None])
@pytest.mark.parametrize("command", ["logs", "events"])
def test_following_a_run_whose_supervisor_is_gone_ends(
    run_factory: Callable[..., Path], command: str, outcome: str | None
) -> None:
    """`logs --follow` waited for run.json to record the end a SIGKILLed supervisor never
    writes; `events --follow` too when the record held no outcome at all. Its end is said
    (it ended in silence, as if the run had ended as usual)."""
    run_dir = run_factory(ended=False, instances=2, log_lines=3)
    orphan(run_dir, outcome)
    done = harness_cli(command, "--follow", str(run_dir), timeout=60)
    after = orjson.loads((run_dir / "run.json").read_bytes())
    assert done.returncode == 0
    assert done.stderr == f"harness: run {run_dir.name} was aborted: {after['reason']}\n"
    assert done.stdout  # what the run wrote before its supervisor died
    assert after["outcome"] == "aborted"
    assert after["aborted"]["found_by"] == f"harness {command}"


@pytest.mark.parametrize("record", ["removed", "empty"])
@pytest.mark.parametrize("command", ["logs", "events"])
def test_following_a_run_without_a_record_nobody_writes_ends_with_that_error(
    run_factory: Callable[..., Path], command: str, record: str
) -> None:
    """Both waited for ever for the end of a run whose run.json was removed or emptied:
    without the record there is no supervisor to look for, and none will write it."""
    run_dir = run_factory(ended=True, instances=2, log_lines=3)
    run_json = run_dir / "run.json"
    if record == "removed":
        run_json.unlink()
    else:
        run_json.write_bytes(b"")
    assert not run_over(run_dir, "test")  # just now: as a run still setting up
    old = time.time() - RECORD_LOST_S - 1  # as nothing wrote the record since then
    for path in (run_dir, run_json):
        if path.exists():
            os.utime(path, (old, old))
    done = harness_cli(command, "--follow", str(run_dir), timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "run.json" in done.stderr
    if (command, record) != ("logs", "empty"):  # (which reads the record first, and says so)
        assert "no supervisor wrote one" in done.stderr
        assert f"{run_dir} has no {'readable ' if record == 'empty' else ''}run.json" in (
            done.stderr)


def test_resolve_run(tmp_path: Path, run_factory: Callable[..., Path]) -> None:
    outputs = tmp_path / "outputs"
    a = run_factory(run_id="20261126-031500-aaaaaa")
    b = run_factory(run_id="20261126-041500-bbbbbb")
    assert resolve_run("latest", outputs) == b
    assert resolve_run("20261126-03", outputs) == a
    assert resolve_run(str(a), outputs) == a
    with pytest.raises(UsageError, match="ambiguous"):
        resolve_run("20261126", outputs)
    with pytest.raises(UsageError, match="no run 'zzz'"):
        resolve_run("zzz", outputs)
    with pytest.raises(UsageError, match="no runs under"):
        resolve_run("latest", tmp_path / "empty")
    # A directory that is no run, an empty name, a name too long to look up: said so
    (tmp_path / "notes").mkdir()
    with pytest.raises(UsageError, match=r"notes is not a run directory \(it has no run.json"):
        resolve_run(str(tmp_path / "notes"), outputs)
    with pytest.raises(UsageError, match="an empty run names none"):
        resolve_run("", outputs)
    with pytest.raises(UsageError, match="File name too long"):
        resolve_run(str(tmp_path / ("d" * 300)), outputs)


def test_cli_logs(
    run_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_factory()
    outputs = str(tmp_path / "outputs")
    assert (
        main(
            [
                "logs",
                RUN_ID[:10],
                "--outputs",
                outputs,
                "--instance",
                "single/0",
                "--level",
                "warning",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out and all("single/0" in ln and "WARN" in ln for ln in out)
    assert "\x1b[" not in "".join(out)
    assert main(["logs", "latest", "--outputs", outputs, "--instance", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "instance id is <group>/<seq>" in err
    # A group or instance the run does not have printed nothing, exit 0.
    for option, name, message in [("--instance", "single/9", "has no instance 'single/9'"),
                                  ("--group", "nosuch", "has no group 'nosuch'")]:
        assert main(["logs", "latest", "--outputs", outputs, option, name]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"run {RUN_ID} {message}" in err, err


def test_console_renderings_of_json_records_are_not_shown_twice(
    run_factory: Callable[..., Path],
) -> None:
    run_dir = run_factory(instances=2)
    inst = run_dir / "single" / "1"
    rendered = f"[info     ] pinged    instance=single/1 mono={M0 + 5.5:.9f} peers=3\n"
    (inst / "stderr.log").write_text(rendered)
    lines = list(merged_lines(run_dir, LogFilter(instances=("single/1",))))
    assert not [ln for ln in lines if "pinged" in ln.message]  # log.jsonl holds it already
    (inst / "log.jsonl").unlink()
    (line,) = [ln for ln in merged_lines(run_dir) if "pinged" in ln.message]
    assert line.mono == pytest.approx(M0 + 5.5) and line.stream == "stderr"


def test_untimed_lines_start_at_their_instance_start(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(instances=2)
    (run_dir / "single" / "1" / "stderr.log").write_text("no time here\n")
    (line,) = [ln for ln in merged_lines(run_dir) if ln.message == "no time here"]
    assert line.mono == pytest.approx(M0 + 0.11)  # single/1 started at 0.11 s


def test_go_style_local_timestamps(run_factory: Callable[..., Path]) -> None:
    from datetime import datetime

    from tests.observe._fixture import T0

    run_dir = run_factory(instances=1)
    local = datetime.fromtimestamp(T0 + 7.25).strftime("%Y/%m/%d %H:%M:%S.%f")
    (run_dir / "single" / "0" / "stderr.log").write_text(f"{local} go node says hi\n")
    (line,) = [ln for ln in merged_lines(run_dir) if ln.message.endswith("go node says hi")]
    assert line.mono == pytest.approx(M0 + 7.25, abs=1e-3)


def test_console_lines_without_mono_are_not_shown_twice(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(instances=1)
    (run_dir / "single" / "0" / "stderr.log").write_text(
        "[info     ] pinged    [instance] peers=3\n"
        "\x1b[2m2026-11-26T02:00:00Z\x1b[0m [\x1b[32minfo     \x1b[0m] coloured\n"
        "a real [info] message from the program\n"
    )
    stderr = [ln.message for ln in merged_lines(run_dir) if ln.stream == "stderr"]
    assert stderr == ["a real [info] message from the program"]


CRASHING = """
name = "crashing"
[[testcases]]
name = "main"
instances = { min = 1, max = 1, default = 1 }
entrypoint = "crashing.plan:main"
"""
CRASHING_CODE = """
import trio

async def main(env):
    env.log.info("working")
    await trio.sleep(1.0)
    raise ValueError("boom")
"""


def test_a_crash_is_logged_at_its_time_and_level(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """A real run: the traceback on stderr is placed when the crash happened (not at the
    instance's last record before it), and the crash itself is an error record."""
    from tests.conftest import harness_cli, only_run_dir

    root = make_plan("crashing", CRASHING, CRASHING_CODE)
    r = harness_cli("run", "crashing", "--plans", str(root), "--runner", "local:exec",
                    "--outputs", str(tmp_path / "out"), "-q")  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    lines = list(merged_lines(only_run_dir(tmp_path / "out")))
    working = next(ln for ln in lines if ln.message == "working")
    crashed = next(ln for ln in lines if ln.message == "crash")
    traceback = next(ln for ln in lines if ln.message.startswith("Traceback"))
    assert (crashed.level, crashed.stream, crashed.fields["error"]) == (
        "error", "log", "ValueError: boom (at plan.py:7)"  # where in the plan's code
    )
    assert crashed.mono - working.mono >= 0.9
    assert 0 <= traceback.mono - crashed.mono < 0.1
    assert [ln.message for ln in lines].count("crash") == 1  # not again from stderr
    errors = list(merged_lines(only_run_dir(tmp_path / "out"), LogFilter(min_level="warning")))
    assert "crash" in [ln.message for ln in errors]


@pytest.mark.parametrize("ts", [1764800000.123, 1764800000.9999996, 1764800000.0004, 0.0, -1.5,
                                1e20, float("nan"), float("inf")])
def test_a_line_s_clock_time_is_its_local_time_to_the_millisecond(ts: float) -> None:
    """Each second is formatted once and cached; the millisecond and a carry into the next
    second (x.9999996 s shows as x+1.000) are as datetime gives them."""
    from datetime import datetime

    from harness.observe._logmerge import _clock_time

    try:
        expected = datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):
        expected = "??:??:??.???"
    assert _clock_time(ts) == expected


def test_latest_of_two_runs_started_in_the_same_second_is_the_later_one(
    tmp_path: Path, run_factory: Callable[..., Path]
) -> None:
    """Their ids differ only in the random part, which decided."""
    later = run_factory(run_id="20261126-031500-aaaaaa")
    earlier = run_factory(run_id="20261126-031500-ffffff")
    record = orjson.loads((earlier / "run.json").read_bytes())
    record["started"] -= 0.5
    (earlier / "run.json").write_bytes(orjson.dumps(record))
    assert resolve_run("latest", tmp_path / "outputs") == later


def test_the_merged_view_holds_a_chunk_per_file_not_a_mebibyte(tmp_path: Path) -> None:
    """Each file's reader held its last 1 MiB chunk and that chunk's lines: 2.4 MB a file,
    0.7 GB for a 300-file run's `harness logs`."""
    import tracemalloc

    from harness.observe import merged_lines
    from tests.observe.bench_logmerge import write_logs

    run_dir = tmp_path / "20260101-000000-000000"
    write_logs(run_dir, 40, 8000)  # 1 MB a file
    tracemalloc.start()
    try:
        count = sum(1 for _ in merged_lines(run_dir))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 40 * 8000
    assert peak < 40 * 300_000, f"{peak / 1e6:.1f} MB for 40 files"


def test_level_warning_shows_the_instance_whose_failure_ended_the_run(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path
) -> None:
    """An instance that exited 13 (no failure event of its own) was nowhere in
    `--level warning`: only the run's end, at info, and the instances it left waiting."""
    from tests.conftest import harness_cli

    root = make_plan("dies", """
name = "dies"
[defaults]
runner = "local:exec"
[[testcases]]
name = "one"
instances = { min = 1, max = 4, default = 3 }
program = ["sh", "-c", "if [ \\"$TEST_GLOBAL_SEQ\\" = 1 ]; then exit 13; fi; sleep 30"]
""", "")
    out = tmp_path / "out"
    r = harness_cli("run", "dies:one", "--plans", str(root), "--outputs", str(out), "-q")
    assert r.returncode == 1, r.stderr
    logs = harness_cli("logs", "latest", "--level", "warning", "--outputs", str(out))
    assert logs.returncode == 0, logs.stderr
    warned = [line for line in logs.stdout.splitlines() if "instance failed" in line]
    assert len(warned) == 1 and "single/1" in warned[0] and "exit code 13" in warned[0], \
        logs.stdout
    assert any("run ended" in line and "failed" in line for line in logs.stdout.splitlines())


def test_follow_times_plain_lines_before_run_json_knows_the_instance_started(
    run_factory: Callable[..., Path],
) -> None:
    """Until run.json's next refresh an instance has no `started`: every plain line of its
    stdout showed as ??:??:??.??? and came before the supervisor's first line."""
    run_dir = run_factory(ended=False, instances=2)
    run_json = run_dir / "run.json"
    run = orjson.loads(run_json.read_bytes())
    for inst in run["instances"]:
        inst["started"] = None
    run_json.write_bytes(orjson.dumps(run))
    (run_dir / "single" / "1" / "stdout.log").write_text("plain stdout a\nplain stdout b\n")

    def sleep(_: float) -> None:
        run["ended"] = run["started"] + 40
        run_json.write_bytes(orjson.dumps(run))

    lines = list(follow_lines(run_dir, LogFilter(instances=("single/1",)), sleep=sleep))
    plain = [ln for ln in lines if ln.message.startswith("plain stdout")]
    assert plain
    for ln in plain:
        assert ln.ts is not None and ln.ts >= run["started"], format_line(ln, colour=False)
        assert "??" not in format_line(ln, colour=False)


def _logs_with_files(run_dir: Path, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    """`harness logs RUN` in a process that may open `soft` files (`hard` at most)."""
    return subprocess.run(
        [sys.executable, "-m", "harness", "logs", str(run_dir)], capture_output=True,
        text=True, timeout=120, cwd=ROOT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))


def test_logs_out_of_file_descriptors_is_an_error_not_lines_left_out(
    run_factory: Callable[..., Path],
) -> None:
    """With 64 files to open, `harness logs` of 40 instances (121 files, merged at once)
    printed the lines of the files it could open and exited 0: every file it could not open
    read as absent."""
    run_dir = run_factory(instances=40, messages=1)
    whole = harness_cli("logs", str(run_dir))
    assert whole.returncode == 0 and len(whole.stdout.splitlines()) > 40 * 20
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = _logs_with_files(run_dir, 64, hard)  # it raises its own soft limit
    assert (raised.returncode, raised.stdout, raised.stderr) == (0, whole.stdout, "")
    capped = _logs_with_files(run_dir, 64, 64)
    assert capped.returncode == 3, capped.stderr
    assert capped.stderr.startswith("harness: error: too many open files: this process may "
                                    "open 64"), capped.stderr
    assert "ulimit -n 184" in capped.stderr and len(capped.stderr.splitlines()) == 1


def test_a_record_with_neither_outcome_nor_end_nor_supervisor_is_aborted_everywhere(
    run_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run.json written before supervisors recorded themselves (no outcome, no end) read
    "RUNNING" in show, was left out of runs, and `logs --follow` and `events --follow`
    waited on it for ever: no one will ever end it (docs/contracts.md: aborted)."""
    run_dir = run_factory()
    record = json.loads((run_dir / "run.json").read_text())
    for key in ("outcome", "ended", "exit_code", "supervisor", "last_seen"):
        record.pop(key, None)
    (run_dir / "run.json").write_text(json.dumps(record))
    for command in ("logs", "events"):
        r = harness_cli(command, str(run_dir), "--follow", timeout=60)
        assert r.returncode == 0, command
        assert " was aborted: the run's record names no supervisor" in r.stderr, command
    assert json.loads((run_dir / "run.json").read_text())["outcome"] == "aborted"
    assert main(["show", str(run_dir)]) == 0
    assert "outcome  ABORTED" in capsys.readouterr().out
    (run_dir / "run.json").write_text(json.dumps(record))
    assert main(["runs", "--outputs", str(run_dir.parent), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["outcome"] for r in runs if r["run_id"] == record["run_id"]] == ["aborted"]


@pytest.mark.parametrize(("written", "level"), [
    ("[4242] {go} [INF] Server is ready", "info"),  # nats-server
    ("[4242] {go} [ERR] Error trying to connect to route", "error"),
    ("[4242] {go} [WRN] slow consumer", "warning"),
    ("4242:M {redis} # User requested shutdown...", "warning"),  # redis-server
    ("4242:M {redis} * Ready to accept connections tcp", "info"),
    ("4242:C {redis_s} . DB saved on disk", "debug"),
])  # fmt: skip
def test_the_servers_plans_run_have_their_lines_timed_and_levelled(
    run_factory: Callable[..., Path], written: str, level: str
) -> None:
    """nats-server's and redis-server's lines (the README's own third-party examples) all
    took their instance's start time, so the log was not in time order, and their errors
    were info: `--level warning` hid every one."""
    from datetime import datetime

    from tests.observe._fixture import T0

    run_dir = run_factory(instances=1)
    at = datetime.fromtimestamp(T0 + 7.25)
    text = written.format(go=at.strftime("%Y/%m/%d %H:%M:%S.%f"),
                          redis=at.strftime("%d %b %Y %H:%M:%S.%f")[:-3],
                          redis_s=at.strftime("%d %b %Y %H:%M:%S"))
    (run_dir / "single" / "0" / "stderr.log").write_text(text + "\n")
    (line,) = [ln for ln in merged_lines(run_dir) if ln.message == text]
    assert line.mono == pytest.approx(M0 + 7.25, abs=1e-3 if "redis_s" not in written else 1)
    assert line.level == level
