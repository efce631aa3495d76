"""`harness list`: the plans and their test cases."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness._commands._args import add_plans
from harness._errors import UsageError
from harness.plans import find_plans

HELP = "list plans and their test cases"


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness list`."""
    add_plans(parser)


def run(args: argparse.Namespace) -> int:
    """Print one line per test case; a plan whose manifest is broken is said on stderr
    (exit code 2) after the others are listed."""
    broken: dict[Path, UsageError] = {}
    rows = [
        (
            f"{plan.name}:{case.name}",
            f"{case.min_instances}-{case.max_instances} (default {case.default_instances})",
            case.description,
        )
        for plan in find_plans(args.plans, broken).values()
        for case in plan.cases.values()
    ]
    width = max((len(target) for target, _, _ in rows), default=0)
    for target, counts, description in rows:
        print(f"{target:<{width}}  instances {counts:<20}  {description}")
    for error in broken.values():
        print(f"harness: error: {error}", file=sys.stderr)
    return 2 if broken else 0
