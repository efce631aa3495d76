"""The run report: a self-contained report.html, junit.xml and summary.json for CI.

The run directory is read once (`RunData`) and handed to each writer: the page
(`_page`, with `report.css` and `report.js` shipped beside it), JUnit (`_junit`) and the
summary (`_summary`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from harness._rundir import write_files
from harness.observe._report._data import RunData
from harness.observe._report._junit import junit_bytes, write_junit_file
from harness.observe._report._page import render_page
from harness.observe._report._summary import run_summary
from harness.observe._tracefile import no_gc


def render_html(run_dir: Path) -> str:
    """The report of `run_dir` as one self-contained HTML document."""
    return render_page(RunData.load(run_dir))


def write_junit(run_dir: Path) -> Path:
    """junit.xml: one testcase per instance, a failure element with the reason."""
    return write_junit_file(RunData.load(run_dir))


def summary(run_dir: Path) -> dict[str, Any]:
    """The machine-readable summary of a run (what summary.json holds)."""
    return run_summary(RunData.load(run_dir))


def write_report(run_dir: Path) -> Path:
    """Write report.html, junit.xml and summary.json into `run_dir`; returns report.html.
    One writer at a time per run, each reading the run once it may write: a `harness report`
    of a live run that read it before the end and wrote after the supervisor's final report
    would replace that with the live one."""
    # The page is made while the trace analysis (millions of objects, none in a cycle) is
    # alive: the cyclic GC, run by the page's own allocations, would walk them all again
    # and again (0.3 s of a 100-instance run's report). Cycles made meanwhile wait.
    with report_lock(run_dir), no_gc():
        return _write_report(run_dir)


@contextlib.contextmanager
def report_lock(run_dir: Path, wait: float = 120.0) -> Iterator[None]:
    """Hold the run's report lock (flock on its directory); after `wait` seconds without it
    (a writer stopped with SIGSTOP, say), go on without."""
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_report(run_dir: Path) -> Path:
    data = RunData.load(run_dir)
    path = run_dir / "report.html"
    summary_json = orjson.dumps(
        run_summary(data), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
    )
    # The three together or none: a CI job never reads a new summary beside an old junit.xml.
    write_files({path: render_page(data).encode(), run_dir / "junit.xml": junit_bytes(data),
                 run_dir / "summary.json": summary_json})  # fmt: skip
    return path


__all__ = ["RunData", "render_html", "summary", "write_junit", "write_report"]
