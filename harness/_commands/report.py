"""`harness report RUN`: (re)write a run's report.html, junit.xml and summary.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness._commands._args import add_run, failing_as
from harness._errors import HarnessError, UsageError
from harness._tell import tell
from harness.observe import load_run, record_run, resolve_run, write_report

HELP = "write a run's report: report.html, junit.xml and summary.json"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `harness report`."""
    add_run(parser)


def run(args: argparse.Namespace) -> int:
    """Write the report and print its path; 0 on success."""
    run_dir = resolve_run(args.run, args.outputs)
    with failing_as(f"writing the report in {run_dir}"):
        if _goes_on(run_dir):  # its supervisor may be gone: then it is not running
            from harness._liveness import mark_aborted  # with the sync client: only then

            mark_aborted(run_dir, "harness report")
        path = write_report(run_dir)
    if load_run(run_dir).is_over:
        try:
            record_run(run_dir)
        except (HarnessError, OSError) as e:  # the report is written all the same
            tell(f"harness: warning: the run history was not updated: "
                 f"{getattr(e, 'strerror', None) or e}")
    print(path)
    return 0


def _goes_on(run_dir: Path) -> bool:
    try:
        return load_run(run_dir).goes_on
    except UsageError:  # damaged: the report says so
        return False
