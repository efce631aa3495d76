"""Options several commands share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from harness.observe import DEFAULT_OUTPUTS
from harness.plans import PLANS_ENV


def add_outputs(parser: argparse.ArgumentParser) -> None:
    """--outputs: the directory holding the runs (and history.sqlite)."""
    parser.add_argument(
        "--outputs",
        type=Path,
        default=DEFAULT_OUTPUTS,
        help=f"the outputs root holding the runs (default: ./{DEFAULT_OUTPUTS})",
    )


def add_run(parser: argparse.ArgumentParser) -> None:
    """RUN (which run) and --outputs (where runs are)."""
    parser.add_argument(
        "run",
        nargs="?",
        default="latest",
        help="run id, a unique prefix of one, 'latest' (default) or a path",
    )
    add_outputs(parser)


def add_plans(parser: argparse.ArgumentParser) -> None:
    """--plans: where to look for plans, before $HARNESS_PLANS and scenarios/."""
    parser.add_argument(
        "--plans",
        type=Path,
        action="append",
        metavar="DIR",
        help=f"look for plans in DIR (repeatable) instead of ${PLANS_ENV} "
        "(DIR:DIR...) or the project's scenarios/",
    )


def print_lines(lines: Iterable[str], follow: bool) -> int:
    """Print `lines` as they come (flushed each, when following a live run); 0 also when
    the reader goes away (`| head`) or a follower is stopped with Ctrl-C."""
    try:
        for line in lines:
            sys.stdout.write(line + "\n")
            if follow:
                sys.stdout.flush()
    except BrokenPipeError:
        sys.stderr.close()
    except KeyboardInterrupt:
        if not follow:
            raise
    return 0
