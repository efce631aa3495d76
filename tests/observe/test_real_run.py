"""The observability commands on a real run of the pingpong plan (local:exec)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.observe import merged_lines, resolve_run
from tests.observe import _chromium


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outputs = tmp_path_factory.mktemp("real") / "outputs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "pingpong",
            "-i",
            "3",
            "--runner",
            "local:exec",
            "--outputs",
            str(outputs),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode == 2 and "invalid choice" in proc.stderr:
        pytest.skip("`harness run` is not available")
    assert proc.returncode == 0, proc.stderr
    return resolve_run("latest", outputs)


def _harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_logs_of_a_real_run(real_run: Path) -> None:
    lines = list(merged_lines(real_run))
    assert {ln.source for ln in lines} >= {"single/0", "single/1", "single/2"}
    assert [ln.mono for ln in lines] == sorted(ln.mono for ln in lines)
    out = _harness("logs", str(real_run), "--instance", "single/1", "--no-color")
    assert out.returncode == 0 and out.stdout
    assert all(" single/1" in ln for ln in out.stdout.splitlines())


def test_report_show_runs_of_a_real_run(real_run: Path, tmp_path: Path) -> None:
    outputs = str(real_run.parent)
    rep = _harness("report", "latest", "--outputs", outputs)
    assert rep.returncode == 0, rep.stderr
    cases = ET.parse(real_run / "junit.xml").getroot().findall("testsuite/testcase")
    assert len(cases) == 3 and not any(c.find("failure") is not None for c in cases)
    assert json.loads((real_run / "summary.json").read_text())["outcome"] == "passed"
    show = _harness("show", "latest", "--outputs", outputs)
    assert "PASSED  3/3 passed" in show.stdout and "report.html" in show.stdout
    runs = _harness("runs", "--outputs", outputs, "--json")
    assert [r["run_id"] for r in json.loads(runs.stdout)] == [real_run.name]
    if _chromium.CHROMIUM is None:
        pytest.skip("chromium is not installed")
    page = _chromium.load(real_run / "report.html", tmp_path)
    assert page.console == [] and "<h2>Timeline</h2>" in page.dom
