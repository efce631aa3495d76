"""`harness list`: the plans and their test cases."""

from __future__ import annotations

import argparse

from harness._commands._args import add_plans
from harness.plans import find_plans

HELP = "list plans and their test cases"


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness list`."""
    add_plans(parser)


def run(args: argparse.Namespace) -> int:
    """Print one line per test case."""
    rows = [
        (
            f"{plan.name}:{case.name}",
            f"{case.min_instances}-{case.max_instances} (default {case.default_instances})",
            case.description,
        )
        for plan in find_plans(args.plans).values()
        for case in plan.cases.values()
    ]
    width = max((len(target) for target, _, _ in rows), default=0)
    for target, counts, description in rows:
        print(f"{target:<{width}}  instances {counts:<20}  {description}")
    return 0
