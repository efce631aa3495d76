"""A run, fully resolved and checked before anything starts: groups, instances, params, roles."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness._errors import UsageError
from harness.plans._discovery import get_plan
from harness.plans._manifest import Plan, TestCase, check_keys, is_argv
from harness.plans._params import parse_duration, resolve
from harness.runners._registry import check_runner_name

DEFAULT_TIMEOUT_S = 300.0


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """Instances that share params and a program."""

    id: str
    count: int
    params: Mapping[str, Any]
    program: tuple[str, ...] | None = None  # overrides the case's entrypoint/program


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    """One instance to start."""

    id: str  # "<group>/<group seq>"
    group: str
    group_seq: int
    global_seq: int
    role: str
    params: Mapping[str, Any]
    program: tuple[str, ...] | None  # None: the case's Python entrypoint


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything the supervisor needs to start a run."""

    plan: Plan
    case: TestCase
    groups: tuple[GroupSpec, ...]
    instances: tuple[InstanceSpec, ...]
    runner: str
    timeout_s: float
    composition: Path | None = None
    runner_pinned: bool = False  # asked for by name: never replaced (harness.runners.runnable_here)

    @property
    def total(self) -> int:
        """Instances in the run."""
        return len(self.instances)


def build_run_spec(
    target: str,
    *,
    instances: int | None = None,
    params: Mapping[str, str] | None = None,
    composition: Path | None = None,
    runner: str | None = None,
    timeout_s: float | None = None,
    plan_roots: Sequence[Path] | None = None,
) -> RunSpec:
    """Resolve `PLAN[:CASE]` (and an optional composition file) into a checked RunSpec."""
    comp = _read_composition(composition) if composition else {}
    g = comp.get("global", {})
    plan_name, _, case_name = target.partition(":") if target else ("", "", "")
    plan_name = plan_name or g.get("plan", "")
    if not plan_name:
        raise UsageError("no plan given (PLAN[:CASE], or plan in the composition's [global])")
    plan = get_plan(plan_name, plan_roots)
    case = plan.case(case_name or g.get("case"))
    where = f"{plan.name}:{case.name}"

    cli = dict(params or {})
    base_layers: list[tuple[str, Mapping[str, Any]]] = []
    if g.get("params"):
        base_layers.append((f"{composition} [global.params]", g["params"]))
    groups = _groups(comp, case, instances, where, composition)
    group_specs = []
    for gid, count, gparams, program in groups:
        layers = [*base_layers]
        if gparams:
            layers.append((f"{composition} group {gid!r} params", gparams))
        layers.append(("-p", cli))
        group_specs.append(GroupSpec(gid, count, resolve(case.params, layers), program))

    total = sum(gs.count for gs in group_specs)
    if not case.min_instances <= total <= case.max_instances:
        raise UsageError(
            f"{where} takes {case.min_instances} to {case.max_instances} instances, not {total}"
        )
    out: list[InstanceSpec] = []
    for gs in group_specs:
        roles = case.roles.assign(total, gs.params) if case.roles else None
        for seq in range(gs.count):
            gseq = len(out)
            role = roles[gseq] if roles else ""
            iid = f"{gs.id}/{seq}"
            out.append(InstanceSpec(iid, gs.id, seq, gseq, role, gs.params, gs.program))

    run_runner = check_runner_name(runner or g.get("runner") or plan.runner)
    timeout = timeout_s
    if timeout is None and "timeout" in g:
        raw = g["timeout"]
        try:
            timeout = parse_duration(raw) if isinstance(raw, str) else float(raw)
        except (TypeError, ValueError) as e:
            raise UsageError(f"{composition}: timeout: {e}") from None
    timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return RunSpec(plan, case, tuple(group_specs), tuple(out), run_runner, timeout, composition,
                   runner_pinned=runner is not None)


def _read_composition(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"composition {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"composition {path}: {e}") from None
    where = f"composition {path}"
    check_keys(data, ("global", "groups"), where)
    check_keys(
        data.get("global", {}),
        ("plan", "case", "params", "runner", "timeout", "total_instances"),
        f"{where} [global]",
    )
    for raw in data.get("groups", []):
        check_keys(raw, ("id", "instances", "params", "program"), f"{where} [[groups]]")
        check_keys(raw.get("instances", {}), ("count", "percentage"), f"{where} group instances")
    return data


def _groups(
    comp: Mapping[str, Any],
    case: TestCase,
    instances: int | None,
    where: str,
    path: Path | None,
) -> list[tuple[str, int, Mapping[str, Any], tuple[str, ...] | None]]:
    raw_groups = comp.get("groups")
    if not raw_groups:
        n = instances if instances is not None else comp.get("global", {}).get(
            "total_instances", case.default_instances
        )
        return [("single", int(n), {}, None)]
    total = instances if instances is not None else comp.get("global", {}).get("total_instances")
    out: list[tuple[str, int, Mapping[str, Any], tuple[str, ...] | None]] = []
    for raw in raw_groups:
        gid = raw.get("id")
        if not isinstance(gid, str) or not gid or "/" in gid:
            raise UsageError(f"composition {path}: every group needs an id without '/'")
        if any(gid == o[0] for o in out):
            raise UsageError(f"composition {path}: group id {gid!r} appears twice")
        inst = raw.get("instances", {})
        if "count" in inst:
            count = inst["count"]
        elif "percentage" in inst:
            if total is None:
                raise UsageError(
                    f"composition {path}: group {gid!r} uses a percentage; "
                    "set [global] total_instances or -i"
                )
            count = round(total * float(inst["percentage"]) / 100)
        else:
            raise UsageError(f"composition {path}: group {gid!r}: no instances count or percentage")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(f"composition {path}: group {gid!r} has {count!r} instances")
        program = raw.get("program")
        if program is not None and not is_argv(program):
            raise UsageError(f"composition {path}: group {gid!r}: program is a list of strings")
        out.append((gid, count, raw.get("params", {}), tuple(program) if program else None))
    if total is not None and sum(o[1] for o in out) != total:
        raise UsageError(
            f"composition {path}: groups add up to {sum(o[1] for o in out)} instances, "
            f"not the {total} asked for ({where})"
        )
    return out
