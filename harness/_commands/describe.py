"""`harness describe PLAN[:CASE]`: a plan's cases, params, roles and defaults."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
from collections.abc import Mapping

from harness._commands._args import add_plans
from harness._tell import one_line
from harness.plans import format_duration, get_plan
from harness.plans._manifest import TestCase
from harness.plans._params import ParamSpec

HELP = "describe a plan: its test cases, params and roles"


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness describe`."""
    parser.add_argument("plan", help="plan name; PLAN:CASE (as `harness list` shows it) for "
                                     "one case")
    add_plans(parser)


def run(args: argparse.Namespace) -> int:
    """Print the plan's manifest in readable form: what every case shares (params with the
    same spec in every case, the same roles) once, then each case with only its own.
    PLAN:CASE: that case alone, with all its params."""
    name, _, case_name = args.plan.partition(":")
    plan = get_plan(name, args.plans)
    cases = [plan.case(case_name)] if case_name else list(plan.cases.values())
    print(f"plan {plan.name}  ({plan.path})")
    if plan.description:
        print(f"  {_text(plan.description, '  ')}")
    print(f"  default runner: {plan.runner}")
    shared = _shared_params(cases) if len(cases) > 1 else {}
    roles = {_roles(c) for c in cases}
    shared_roles = roles.pop() if len(cases) > 1 and len(roles) == 1 else ""
    if shared:
        print("  params of every case:")
        _print_params(shared)
    if shared_roles:
        print(f"  roles of every case (by sequence number): {shared_roles}")
    for case in cases:
        print(f"\ncase {case.name}: {_text(case.description, '  ')}")
        print(f"  instances: min {case.min_instances}, max {case.max_instances}, "
              f"default {case.default_instances}")
        what = one_line(case.entrypoint or shlex.join(case.program or ()), 1000)
        print(f"  runs: {what}" + (f" ({case.backend})" if case.entrypoint else ""))
        own = {n: p for n, p in case.params.items() if n not in shared}
        if own:
            print("  params:" if not shared else "  params of its own:")
            _print_params(own)
        changed = [p for n, p in case.params.items() if n in shared and p != shared[n]]
        if changed:
            print("  sets: " + ", ".join(f"{p.name}={_value(p)}" for p in changed))
        if case.roles and not shared_roles:
            print(f"  roles (by sequence number): {_roles(case)}")
        if case.faults:
            print("  faults (unless a composition's [[faults]] or --faults FILE gives others):")
            for fault in case.faults:
                print(f"    {json.dumps(fault.to_data())}")
    return 0


def _shared_params(cases: list[TestCase]) -> dict[str, ParamSpec]:
    """The params every case declares alike (type, bounds, description), in order, each
    with the default most cases give it (a case that gives another says so)."""
    shared = {}
    for name, first in cases[0].params.items():
        specs = [c.params.get(name) for c in cases]
        alike = [dataclasses.replace(s, default=first.default) == first for s in specs if s]
        if len(alike) < len(cases) or not all(alike):
            continue
        defaults = [repr(s.default) for s in specs if s]
        common = max(defaults, key=defaults.count)
        shared[name] = next(s for s in specs if s and repr(s.default) == common)
    return shared


def _roles(case: TestCase) -> str:
    if not case.roles:
        return ""
    return ", ".join(f"{r.name}={'rest' if r.rest else r.count}" for r in case.roles.roles)


def _text(text: str, indent: str) -> str:
    """A manifest's text for the terminal: its lines under `indent`, escapes shown, not
    obeyed (a TOML multi-line string is a natural way to write a description)."""
    return f"\n{indent}".join(one_line(line, 1000) for line in text.splitlines())


def _value(p: ParamSpec) -> str:
    return format_duration(p.default) if p.type == "duration" else repr(p.default)


def _print_params(params: Mapping[str, ParamSpec]) -> None:
    width = max(len(n) for n in params)
    for p in params.values():
        bounds = "".join(
            f", {k} {p.show(v)}" for k, v in (("min", p.min), ("max", p.max)) if v is not None
        )
        print(f"    {p.name:<{width}}  {p.type:<8} default {_value(p)}{bounds}  "
              f"{_text(p.description, ' ' * 6)}")
