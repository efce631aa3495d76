"""Options several commands share."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from harness._errors import EnvironmentProblem, UsageError
from harness._tell import tell
from harness.observe import DEFAULT_OUTPUTS
from harness.plans import PLANS_ENV

if TYPE_CHECKING:
    from harness.observe._jsonl import ReadFailed


def add_outputs(parser: argparse.ArgumentParser) -> None:
    """--outputs: the directory holding the runs (and history.sqlite)."""
    parser.add_argument(
        "--outputs",
        type=_outputs_path,
        default=DEFAULT_OUTPUTS,
        help=f"the outputs root holding the runs (default: ./{DEFAULT_OUTPUTS})",
    )


def _outputs_path(text: str) -> Path:
    """--outputs' value: not empty (that would be the current directory), and a path the
    system can look up (not one with a name too long); whether it exists is each command's
    business."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no directory")
    try:
        os.stat(text)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text}: {e.strerror}") from None
    return Path(text)


def outputs_dir(outputs: Path) -> Path:
    """`outputs`, which must be a directory: a typo would otherwise read as "no runs"."""
    if not outputs.is_dir():
        raise UsageError(f"no outputs directory {outputs}")
    return outputs


@contextlib.contextmanager
def failing_as(what: str) -> Iterator[None]:
    """An OSError inside (a full disk, a read-only file system) as one line: `what` failed."""
    try:
        yield
    except OSError as e:
        raise EnvironmentProblem(f"{what} failed: {e.strerror or e}") from None


@contextlib.contextmanager
def warning_if_failing(what: str) -> Iterator[None]:
    """An OSError inside (a read-only outputs directory) as a one-line warning: a command
    that only shows runs goes on with what is recorded."""
    try:
        yield
    except OSError as e:
        tell(f"harness: warning: {what} failed: {e.strerror or e}; shown as recorded")


def warn_unreadable(error: ReadFailed) -> None:
    """A run's file that is there but cannot be read: a one-line warning, and the command
    goes on without it."""
    tell(f"harness: warning: {error}; left out")


def add_run(parser: argparse.ArgumentParser) -> None:
    """RUN (which run) and --outputs (where runs are)."""
    parser.add_argument(
        "run",
        nargs="?",
        default="latest",
        help="run id, a unique prefix of one, 'latest' (default) or a path",
    )
    add_outputs(parser)


def _plans_path(text: str) -> Path:
    """--plans' value: not empty (that would be the current directory, silently)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no directory")
    return Path(text)


def add_plans(parser: argparse.ArgumentParser) -> None:
    """--plans: where to look for plans, before $HARNESS_PLANS and scenarios/."""
    parser.add_argument(
        "--plans",
        type=_plans_path,
        action="append",
        metavar="DIR",
        help=f"look for plans in DIR (repeatable) instead of ${PLANS_ENV} "
        "(DIR:DIR...) or the project's scenarios/",
    )


def print_lines(lines: Iterable[str], follow: bool) -> int:
    """Print `lines` as they come (flushed each, when following a live run); 0 also when
    a follower is stopped with Ctrl-C (and, as every command, when the reader goes away:
    `harness._cli.main`)."""
    try:
        for line in lines:
            sys.stdout.write(line + "\n")
            if follow:
                sys.stdout.flush()
    except KeyboardInterrupt:
        if not follow:
            raise
    return 0
