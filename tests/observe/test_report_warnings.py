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
from harness.observe._report._warnings import SATURATED_SHARE, cpu_load
from tests.observe._fixture import RUN_ID


def _cpu(*points: tuple[float, float]) -> list[dict[str, object]]:
    """"cpu" records at (seconds, microseconds waited so far), out of order on purpose."""
    return [{"kind": "cpu", "mono": 100 + t, "wait_us_total": int(w)} for t, w in reversed(points)]


def test_the_cpu_load_is_the_share_waited_and_the_seconds_of_saturated_stretches() -> None:
    # 0-4 s: 10 % waited; 4-6 s: 90 %; 6-10 s: exactly the threshold; 10-12 s: none.
    points = _cpu((0, 0), (4, 0.4e6), (6, 2.2e6), (10, 2.2e6 + SATURATED_SHARE * 4e6), (12, 4.2e6))
    load = cpu_load([*points, {"kind": "link", "mono": 105}])
    assert load is not None
    assert load.sampled_s == 12 and load.saturated_s == 6
    assert load.waited == pytest.approx(4.2 / 12)


def test_without_two_cpu_samples_there_is_no_load() -> None:
    assert cpu_load([]) is None
    assert cpu_load(_cpu((0, 0))) is None
    assert cpu_load(_cpu((3, 0), (3, 5))) is None


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
