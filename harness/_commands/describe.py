"""`harness describe PLAN`: a plan's cases, params, roles and defaults."""

from __future__ import annotations

import argparse

from harness._commands._args import add_plans
from harness.plans import get_plan

HELP = "describe a plan: its test cases, params and roles"


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness describe`."""
    parser.add_argument("plan", help="plan name")
    add_plans(parser)


def run(args: argparse.Namespace) -> int:
    """Print the plan's manifest in readable form."""
    plan = get_plan(args.plan, args.plans)
    print(f"plan {plan.name}  ({plan.path})")
    if plan.description:
        print(f"  {plan.description}")
    print(f"  default runner: {plan.runner}")
    for case in plan.cases.values():
        print(f"\ncase {case.name}: {case.description}")
        print(f"  instances: min {case.min_instances}, max {case.max_instances}, "
              f"default {case.default_instances}")
        what = case.entrypoint or " ".join(case.program or ())
        print(f"  runs: {what}" + (f" ({case.backend})" if case.entrypoint else ""))
        if case.params:
            print("  params:")
            width = max(len(n) for n in case.params)
            for p in case.params.values():
                bounds = "".join(
                    f", {k} {v:g}" for k, v in (("min", p.min), ("max", p.max)) if v is not None
                )
                default = _duration(p.default) if p.type == "duration" else repr(p.default)
                print(f"    {p.name:<{width}}  {p.type:<8} default {default}{bounds}"
                      f"  {p.description}")
        if case.roles:
            roles = ", ".join(
                f"{r.name}={'rest' if r.rest else r.count}" for r in case.roles.roles
            )
            print(f"  roles (by sequence number): {roles}")
    return 0


def _duration(seconds: float) -> str:
    """0.05 -> '50ms', 2.0 -> '2s': how durations are written in manifests and -p."""
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"
