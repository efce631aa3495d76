"""`harness list`: the plans and their test cases."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness._commands._args import add_plans
from harness._errors import UsageError
from harness._tell import one_line
from harness.plans import default_roots, find_plans
from harness.plans._discovery import roots_hint

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
            one_line(case.description.replace("\n", " "), 500),
        )
        for plan in find_plans(args.plans, broken).values()
        for case in plan.cases.values()
    ]
    width = max((len(target) for target, _, _ in rows), default=0)
    for target, counts, description in rows:
        print(f"{target:<{width}}  instances {counts:<20}  {description}")
    for error in broken.values():
        print(f"harness: error: {error}", file=sys.stderr)
    if not rows and not broken:
        roots = args.plans or default_roots()
        print(f"no plans under {', '.join(map(str, roots))} (each plan is a directory just "
              f"under it, holding a manifest.toml){roots_hint(roots)}")
    return 2 if broken else 0
