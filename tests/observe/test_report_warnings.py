"""A run on a saturated host says so: summary.json, the report's header, `harness show`
and the end of `harness run`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from harness._cli import main
from harness._supervisor import RunResult
from harness.observe import write_report
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
