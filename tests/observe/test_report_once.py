"""The report reads its run once, and its output is what it was before the report became a
package (golden files of a fixture run; `HARNESS_UPDATE_GOLDEN=1` rewrites them)."""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.observe import render_html, write_report

GOLDEN = Path(__file__).parent / "golden"
_opened: list[str] | None = None  # the files opened while a test listens


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | Path):
        _opened.append(os.fspath(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed: this one only listens inside `_opens`


def _opens(fn: Callable[[], object], run_dir: Path) -> Counter[str]:
    global _opened
    _opened = []
    try:
        fn()
    finally:
        seen, _opened = _opened, None
    return Counter(
        os.path.relpath(p, run_dir) for p in seen if Path(p).is_relative_to(run_dir)
    )


def test_the_report_reads_each_input_once(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(failed=(2,), lossy=(0, 1), slow_handler=3, faults=True)
    opened = _opens(lambda: write_report(run_dir), run_dir)
    for name in ("run.json", "events.jsonl", "network.jsonl", "telemetry.jsonl", "faults.jsonl",
                 "single/0/metrics.jsonl", "single/2/stderr.log"):
        assert opened[name] == 1, (name, opened)
    # the trace analysis peeks at each trace's first line (node ids), then reads it
    assert all(opened[f"single/{i}/trace.jsonl"] <= 2 for i in range(4)), opened


def test_the_report_lists_each_instance_directory_once_and_stats_none_of_its_files(
    run_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which of an instance's files exist (the links, junit's stdout, whether it has
    traces) comes from one listing of its directory: at 1,000 instances, 15,000 look-ups
    took 0.1 s."""
    run_dir = run_factory(failed=(2,), lossy=(0, 1), faults=True)
    instance_dirs = {run_dir / "single" / str(i) for i in range(4)}
    listed: Counter[Path] = Counter()
    statted: list[Path] = []
    real_listdir, real_stat = os.listdir, os.stat

    def listdir(path: Any = ".") -> list[str]:
        listed[Path(path)] += 1
        return real_listdir(path)

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if Path(path).parent in instance_dirs:
            statted.append(Path(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "stat", stat)
    write_report(run_dir)
    assert all(listed[d] == 1 for d in instance_dirs), listed
    # Only the trace reader looks its files up again, and only where the listing has them.
    assert {p.name for p in statted} <= {"trace.jsonl", "trace.jsonl.gz"}, statted


def _normalised(run_dir: Path, name: str) -> str:
    text = (run_dir / name).read_text(encoding="utf-8").replace(str(run_dir.resolve()), "RUN_DIR")
    return re.sub(r"Written [^<]* by harness report", "Written (when) by harness report", text)


def test_the_report_is_what_it_was(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(
        instances=5, failed=(2,), lossy=(0, 1), slow_handler=3, messages=10, queued=(1, 2),
        stalled=(2, 3), cpu_busy=True, faults=True,
    )
    write_report(run_dir)
    for name in ("report.html", "junit.xml", "summary.json"):
        got, golden = _normalised(run_dir, name), GOLDEN / f"rich.{name}"
        if os.environ.get("HARNESS_UPDATE_GOLDEN"):
            golden.write_text(got, encoding="utf-8")
        assert got == golden.read_text(encoding="utf-8"), f"{name} differs from {golden}"


def test_a_running_instance_has_no_exit_code_shown(run_factory: Callable[..., Path]) -> None:
    """run.json has exit_code null until an instance exits: the table shows nothing, not None."""
    html = render_html(run_factory(ended=False))
    cells = re.findall(r'<td class="num">([^<]*)</td><td class="num">[^<]* s</td>', html)
    assert cells == ["", "", "", ""]


@pytest.mark.parametrize("asset", ["report.css", "report.js"])
def test_the_styles_and_script_are_inlined_from_their_files(
    run_factory: Callable[..., Path], asset: str
) -> None:
    from importlib import resources

    text = resources.files("harness.observe._report").joinpath(asset).read_text()
    assert len(text) > 200 and text in render_html(run_factory())


def test_the_death_of_the_shaping_engine_is_drawn_and_explained(tmp_path: Path) -> None:
    import dataclasses

    from harness.observe import load_run
    from harness.observe._runrecord import write_run
    from tests.observe._fixture import make_run

    run_dir = make_run(tmp_path)
    message = "the userspace shaping engine died (SIGKILL) at 1.5 s: links passed unshaped"
    event = {"event": "backend-failed", "backend": "userspace", "message": message,
             "at_s": 1.5, "allowed": False}
    write_run(run_dir, dataclasses.replace(load_run(run_dir), network_events=(event,)))
    page = render_html(run_dir)
    assert f'<p class="alert"><b>{message}</b> (this failed the run)</p>' in page
    assert f"net: {message}" in page, "no timeline marker for the engine's death"
