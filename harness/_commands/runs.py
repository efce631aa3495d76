"""`harness runs`: the run history, newest first."""

from __future__ import annotations

import argparse
import errno
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import orjson

from harness._commands._args import add_outputs, outputs_dir, warning_if_failing
from harness._errors import UsageError
from harness._liveness import mark_aborted_runs
from harness._outputs import is_disk_full
from harness._tell import one_line, tell
from harness.observe import HISTORY_FILE, RunRow, list_run_dirs, list_runs, sync_history
from harness.plans._checks import INT64

HELP = "list past runs (newest first) from the run history"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `harness runs`."""
    add_outputs(parser)
    parser.add_argument("--plan", metavar="PLAN[:CASE]",
                        help="only runs of this plan (and test case)")
    parser.add_argument(
        "--outcome",
        choices=["passed", "failed", "interrupted", "aborted", "error"],
        help="only runs with this outcome",
    )
    parser.add_argument("--by", metavar="TEXT",
                        help="only runs whose origin holds TEXT: a search's id for the runs "
                             "it made, 'harness replay' for replays")
    parser.add_argument("-n", "--limit", type=int, default=50, help="at most N runs (default 50)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Print the runs; 0 on success."""
    if args.limit < 1 or args.limit not in INT64:
        raise UsageError(f"--limit must be a whole number from 1 to 2**63 - 1, not {args.limit}")
    if args.by == "":
        raise UsageError("--by needs some text to look for")
    if args.plan is not None and not args.plan.partition(":")[0]:
        raise UsageError(f"--plan {args.plan!r} names no plan (PLAN or PLAN:CASE)")
    with warning_if_failing(f"marking the runs under {args.outputs}"):  # (read-only, full)
        mark_aborted_runs(outputs_dir(args.outputs), "harness runs")  # then recorded as ended
    try:
        # no history and no run: nothing to list, and no history.sqlite left in a directory
        # that is no outputs (`--outputs ~` mistyped)
        nothing = not (args.outputs / HISTORY_FILE).exists() and not list_run_dirs(args.outputs)
        rows = [] if nothing else _listed(args, None)
    except (UsageError, OSError) as e:  # no database, or one that cannot be opened
        why = e if isinstance(e, UsageError) else f"run history {e.filename}: {e.strerror}"
        tell(f"harness: warning: {why}; the runs are read from their directories")
        with tempfile.TemporaryDirectory(prefix="harness-runs-") as tmp:
            rows = _listed(args, Path(tmp) / "history.sqlite")
    if args.json:
        sys.stdout.write(
            orjson.dumps([r.to_json() for r in rows], option=orjson.OPT_INDENT_2).decode() + "\n"
        )
        return 0
    if not rows:
        print("no runs")
        return 0
    print(
        f"{'RUN':<24} {'PLAN:CASE':<24} {'OUTCOME':<11} {'INST':>5} {'FAIL':>5} {'TIME':>8}  STARTED"
    )
    for r in rows:
        started = (
            datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S") if r.started else "-"
        )
        dur = f"{r.duration_s:.1f}s" if r.duration_s is not None else "-"
        target = f"{r.plan or '-'}:{r.case or '-'}"
        print(
            f"{r.run_id:<24} {target:<24} {r.outcome or '-':<11} "
            f"{r.instances:>5} {r.failed:>5} {dur:>8}  {started}"
            + (f"  by {one_line(r.origin, 200)}" if r.origin else "")
            + "".join(f"  warning: {_gist(w)}" for w in r.warnings)
        )
    return 0


def _listed(args: argparse.Namespace, db: Path | None) -> list[RunRow]:
    """The runs asked for, from the history `db` (default: the outputs') brought up to
    date first."""
    try:
        sync_history(args.outputs, db, _unreadable)
    except OSError as e:
        if not (is_disk_full(e) or e.errno == errno.EIO):
            raise
        # what the history holds can still be listed
        tell(f"harness: warning: the run history was not brought up to date ({e.filename}: "
             f"{e.strerror}): runs it lacks are not listed")
    plan, _, case = (args.plan or "").partition(":")
    return list_runs(args.outputs, plan=plan or None, case=case or None,
                     outcome=args.outcome, limit=args.limit, db=db, origin=args.by)


def _unreadable(run_dir: Path, why: str) -> None:
    tell(f"harness: warning: run {run_dir.name} is not listed: {why}")


def _gist(warning: str) -> str:
    """A warning's head, before its figures ("the host's CPU was saturated: ...")."""
    return warning.split(":", 1)[0]
