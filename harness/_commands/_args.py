"""Options several commands share."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.observe import DEFAULT_OUTPUTS


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
