"""`harness logs RUN`: every log of a run, merged in time order."""

from __future__ import annotations

import argparse
import errno
import functools
import sys
from pathlib import Path

from harness._commands._args import add_run, print_lines, warn_unreadable
from harness._errors import UsageError
from harness._liveness import run_over, tell_if_aborted
from harness._openfiles import raise_to, too_few_files
from harness.observe import (
    LEVELS,
    LogFilter,
    follow_lines,
    format_line,
    load_run,
    merged_lines,
    resolve_run,
)
from harness.observe._jsonl import ReadFailed
from harness.observe._logmerge import INSTANCE_FILES
from harness.observe._rundir import instance_dirs

HELP = "show the logs of a run's instances and supervisor, merged in time order"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `harness logs`."""
    add_run(parser)
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="only these groups' instances (repeatable)",
    )
    parser.add_argument(
        "--instance",
        action="append",
        default=[],
        metavar="ID",
        help="only these instances, e.g. single/3, or 'supervisor' (repeatable)",
    )
    parser.add_argument("--level", choices=[lv for lv in LEVELS], help="minimum level to show")
    parser.add_argument("--grep", metavar="TEXT",
                        help="only lines containing TEXT as printed (e.g. 'layer=5', 'WARN')")
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep following a live run until it ends, its supervisor is gone, or Ctrl-C",
    )
    colour = parser.add_mutually_exclusive_group()
    colour.add_argument(
        "--color",
        "--colour",
        dest="color",
        action="store_true",
        default=None,
        help="colour by instance even when not writing to a terminal",
    )
    colour.add_argument("--no-color", dest="color", action="store_false", help="never colour")


def run(args: argparse.Namespace) -> int:
    """Print the merged logs; 0 on success."""
    run_dir = resolve_run(args.run, args.outputs)
    for iid in args.instance:
        if iid != "supervisor" and "/" not in iid:
            raise UsageError(f"--instance {iid!r}: an instance id is <group>/<seq>, e.g. single/0")
    _check_named(run_dir, args.group, args.instance)
    flt = LogFilter(tuple(args.group), tuple(args.instance), args.level, args.grep)
    colour = sys.stdout.isatty() if args.color is None else args.color
    # The merge holds every file open at once: a run of 300 instances merges 901 files
    instances = len(instance_dirs(run_dir))
    files = 64 + len(INSTANCE_FILES) * instances
    raise_to(files)
    if args.follow:  # until the run ends, or its supervisor is found gone
        lines = follow_lines(run_dir, flt, ended=functools.partial(run_over,
                                                                   found_by="harness logs"),
                             unreadable=warn_unreadable)
    else:
        lines = merged_lines(run_dir, flt, warn_unreadable)
    try:
        code = print_lines((format_line(line, colour=colour) for line in lines), args.follow)
    except ReadFailed as e:
        if e.errno == errno.EMFILE:  # a line left out would be a log that lies
            raise too_few_files(f"merging the logs of {instances} instances", files) from None
        raise
    if args.follow:
        tell_if_aborted(run_dir)
    return code


def _check_named(run_dir: Path, groups: list[str], instances: list[str]) -> None:
    """A group or instance the run does not have is a typo: an empty output would hide it.
    (Not checked while the run's record is missing: a run that has not written it yet.)"""
    try:
        record = load_run(run_dir)
    except UsageError:
        return
    known = {g.id for g in record.groups}
    for gid in groups:
        if gid not in known:
            raise UsageError(f"run {record.run_id} has no group {gid!r} "
                             f"(its groups: {', '.join(sorted(known)) or 'none'})")
    ids = {i.id for i in record.instances}
    for iid in instances:
        if iid != "supervisor" and iid not in ids:
            raise UsageError(f"run {record.run_id} has no instance {iid!r} "
                             f"({len(ids)} instances, e.g. {min(ids, default='none')})")
