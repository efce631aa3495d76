"""A run, fully resolved and checked before anything starts: groups, instances, params, roles."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness._errors import UsageError
from harness.plans._checks import (
    check_keys,
    group_id,
    is_argv,
    number,
    read_toml,
    table,
    text,
    whole,
)
from harness.plans._discovery import get_plan
from harness.plans._entrypoint import entrypoint_problem, instance_path, shadowed_module
from harness.plans._manifest import Plan, TestCase
from harness.plans._params import parse_duration, resolve
from harness.plans._plancheck import plan_check_problem
from harness.runners._registry import LOCAL_EXEC, LOCAL_NETNS, NOT_PLAYED, check_runner_name

if TYPE_CHECKING:
    from harness.faults import Fault, Member

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
    faults: tuple[Fault, ...] = ()  # the composition's [[faults]] (else the case's own,
    # unless --faults FILE gives some), then --faults FILE's

    @property
    def total(self) -> int:
        """Instances in the run."""
        return len(self.instances)

    @property
    def members(self) -> list[Member]:
        """The instances as faults select them."""
        from harness.faults import Member

        return [Member(i.id, i.group, i.role) for i in self.instances]

    def skew_reach(self) -> frozenset[str]:
        """The instances a planned skew may select (`Selector.candidates`): those whose
        program runs under libfaketime, which must be preloaded from its start."""
        members = self.members
        return frozenset(i for f in self.faults if f.action == "skew"
                         for i in f.targets.candidates(members))

    def program_of(self, group: GroupSpec) -> tuple[str, ...] | None:
        """The program `group`'s instances run: its own, else the case's; None for the
        case's Python entrypoint."""
        program = group.program or self.case.program
        return tuple(program) if program else None


def build_run_spec(
    target: str,
    *,
    instances: int | None = None,
    params: Mapping[str, str] | None = None,
    composition: Path | None = None,
    runner: str | None = None,
    timeout_s: float | None = None,
    plan_roots: Sequence[Path] | None = None,
    faults: str | os.PathLike[str] | Sequence[Fault | Mapping[str, Any]] | None = None,
) -> RunSpec:
    """Resolve `PLAN[:CASE]` (and an optional composition file, and faults to play: a file
    of them, or the faults themselves, as Fault or as the tables a file holds) into a
    checked RunSpec; every fault is checked against the run's instances. The case's own
    faults (`TestCase.faults`) play when neither the composition nor `faults` gives any
    (`faults=()`: none of the case's)."""
    from harness.faults import Fault, FaultError, load_faults, parse_faults

    comp = _read_composition(composition) if composition else {}
    g = comp.get("global", {})
    plan_name, _, case_name = target.partition(":") if target else ("", "", "")
    # A composition's groups and params are written for its own plan.
    if plan_name and g.get("plan", plan_name) != plan_name:
        raise UsageError(f"the command line names plan {plan_name!r} but composition "
                         f"{composition} names plan {g['plan']!r}: name the same plan, or "
                         f"leave PLAN[:CASE] out")
    if case_name and g.get("case", case_name) != case_name:  # and for its own case
        raise UsageError(f"the command line names case {case_name!r} but composition "
                         f"{composition} names case {g['case']!r}: name the same case, or "
                         f"leave :CASE out")
    plan_name = plan_name or g.get("plan", "")
    if not plan_name:
        raise UsageError("no plan given (PLAN[:CASE], or plan in the composition's [global])")
    plan = get_plan(plan_name, plan_roots)
    case = plan.case(case_name or g.get("case"))
    where = f"{plan.name}:{case.name}"

    cli = dict(params or {})
    base_layers: list[tuple[str, Mapping[str, Any], bool]] = []
    if g.get("params"):
        base_layers.append((f"{composition} [global.params]", g["params"], True))
    groups = _groups(comp, case, instances, where, composition)
    group_specs = []
    for gid, count, gparams, program in groups:
        layers = [*base_layers]
        if gparams:
            layers.append((f"{composition} group {gid!r} params", gparams, True))
        layers.append(("-p", cli, False))
        group_specs.append(GroupSpec(gid, count, resolve(case.params, layers), program))

    timeout = timeout_s
    if "timeout" in g:  # checked even where --timeout overrides it: the file is wrong
        raw = g["timeout"]
        where_t = f"composition {composition} [global] timeout"
        try:
            # a float: an int past 64 bits would not go into run.json
            written = parse_duration(raw) if isinstance(raw, str) else float(number(raw, where_t))
        except ValueError as e:
            raise UsageError(f"{where_t}: {e}") from None
        timeout = written if timeout is None else timeout
    if "faults" in comp:
        planned = parse_faults(comp["faults"], f"composition {composition} [[faults]]")
        origin = f"composition {composition} [[faults]]"
    else:  # the case's own, unless a file gives the run its faults
        planned = case.faults if faults is None else ()
        origin = f"{plan.path / 'manifest.toml'} [{case.name}] [[testcases.faults]]"
    origins = [f"{origin}[{i}]" for i in range(len(planned))]
    if faults is not None:
        if isinstance(faults, str | os.PathLike):
            given = load_faults(Path(faults))
            where_f = f"faults file {faults} "
        elif isinstance(faults, Mapping | bytes):
            raise FaultError(f"faults: a faults file's path or a list of faults, not a "
                             f"{type(faults).__name__}")
        else:
            given = tuple(f if isinstance(f, Fault) else Fault.from_data(f, f"faults[{i}]")
                          for i, f in enumerate(faults))  # fmt: skip
            where_f = "the given "
        planned += given
        origins += [f"{where_f}faults[{i}]" for i in range(len(given))]
    return _checked(plan, case, group_specs, runner or g.get("runner") or plan.runner,
                    DEFAULT_TIMEOUT_S if timeout is None else timeout, planned,
                    composition=composition, pinned=runner is not None, origins=origins)


def spec_from_groups(
    plan: Plan,
    case_name: str | None,
    groups: Sequence[GroupSpec],
    *,
    runner: str,
    timeout_s: float,
    faults: Sequence[Fault] = (),
    composition: Path | None = None,
    where: str = "groups",
) -> RunSpec:
    """A run of `plan` with its groups given as resolved (a recorded run's, to run it
    again), checked as `build_run_spec` checks a run: each group's params against the case's
    params as they are now, and every fault against the instances. The runner is pinned."""
    case = plan.case(case_name)
    specs: list[GroupSpec] = []
    for gs in groups:
        gid = group_id(gs.id, f"{where}: group id")
        if any(gid == s.id for s in specs):  # (both would name the same instances)
            raise UsageError(f"{where}: group id {gid!r} appears twice")
        count = whole(gs.count, f"{where}: group {gid!r} count", least=1)
        params = resolve(case.params, [(f"{where}: group {gid!r} params", gs.params, True)])
        specs.append(GroupSpec(gid, count, params, gs.program))
    return _checked(plan, case, specs, runner, timeout_s, tuple(faults), composition=composition,
                    pinned=True)


def _roles(case: TestCase, group_specs: Sequence[GroupSpec], total: int,
           where: str) -> list[str] | None:
    """Each global sequence number's role. The counts run over the whole run, so the groups
    must agree on the params that give them (each group's own count gave the new group's
    instances roles from another layout than the old's, unsaid)."""
    if not case.roles:
        return None
    counted = [r.count for r in case.roles.roles if isinstance(r.count, str)]
    first = group_specs[0]
    for gs in group_specs[1:]:
        for name in counted:
            if gs.params.get(name) != first.params.get(name):
                raise UsageError(
                    f"{where}: groups {first.id!r} and {gs.id!r} set {name!r} to "
                    f"{first.params.get(name)!r} and {gs.params.get(name)!r}: it counts a "
                    f"role over the whole run, so every group must give it the same value "
                    f"(set it in [global.params])")
    try:
        return case.roles.assign(total, first.params)
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None


def _checked(
    plan: Plan,
    case: TestCase,
    group_specs: Sequence[GroupSpec],
    runner: str,
    timeout: float,
    planned: tuple[Fault, ...],
    *,
    composition: Path | None,
    pinned: bool,
    origins: Sequence[str] = (),
) -> RunSpec:
    """The run's instances (roles assigned), its entrypoint, runner, timeout and faults
    checked: the RunSpec. `origins` says where each fault was written, for the errors."""
    from harness.faults import FaultError, Member

    where = f"{plan.name}:{case.name}"
    total = sum(gs.count for gs in group_specs)
    if not case.min_instances <= total <= case.max_instances:
        raise UsageError(
            f"{where} takes {case.min_instances} to {case.max_instances} instances, not {total}"
        )
    roles = _roles(case, group_specs, total, where)
    out: list[InstanceSpec] = []
    for gs in group_specs:
        for seq in range(gs.count):
            gseq = len(out)
            role = roles[gseq] if roles else ""
            iid = f"{gs.id}/{seq}"
            out.append(InstanceSpec(iid, gs.id, seq, gseq, role, gs.params, gs.program))

    if case.entrypoint and any(i.program is None for i in out):
        problem = (shadowed_module(plan.path)
                   or entrypoint_problem(case.entrypoint, instance_path(plan.path)))
        if problem:
            raise UsageError(f"{where}: {problem}")
    run_runner = check_runner_name(runner)
    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
    members = [Member(i.id, i.group, i.role) for i in out]
    for n, fault in enumerate(planned):
        name = f"fault {n} in {origins[n]}" if n < len(origins) else f"fault {n}"
        label = f"{name} ({fault.action})"
        try:
            fault.resolve(members, name)
        except FaultError as e:
            raise FaultError(f"{where}: {e}") from None
        if fault.action in NOT_PLAYED.get(run_runner, ()):  # it would fail the run once started
            why = ("cannot shape or cut links" if run_runner == LOCAL_EXEC
                   else f"does not play {fault.action} yet")
            raise FaultError(f"{where}: {label}: the {run_runner} runner "
                             f"{why} (use {LOCAL_NETNS})")
        # Both count from the moment every instance has started.
        if isinstance(fault.at, int | float) and fault.at >= timeout:
            raise FaultError(f"{where}: {label} is at {fault.at:g}s, not before the run's "
                             f"timeout ({timeout:g}s): it would never be played")
    if case.check:  # last: the one check that starts a process
        problem = (entrypoint_problem(case.check, instance_path(plan.path), "check")
                   or plan_check_problem(case.check, plan.path,
                                         [(gs.id, gs.params) for gs in group_specs], total,
                                         timeout))
        if problem:
            raise UsageError(f"{where}: {problem}")
    return RunSpec(plan, case, tuple(group_specs), tuple(out), run_runner, timeout, composition,
                   runner_pinned=pinned, faults=planned)


def _read_composition(path: Path) -> dict[str, Any]:
    data = read_toml(path, "composition")
    where = f"composition {path}"
    check_keys(data, ("global", "groups", "faults", "runner"), where)
    # [runner.<name>]: options of one runner, which that runner checks (cluster:k8s's: k8s)
    check_keys(table(data.get("runner", {}), f"{where} [runner]"), ("k8s",), f"{where} [runner]")
    g = data.get("global", {})
    check_keys(g, ("plan", "case", "params", "runner", "timeout", "total_instances"),
               f"{where} [global]")
    for key in ("plan", "case", "runner"):
        if key in g:
            text(g[key], f"{where} [global] {key}")
    table(g.get("params", {}), f"{where} [global.params]")
    if "total_instances" in g:
        whole(g["total_instances"], f"{where} [global] total_instances", least=1)
    groups = data.get("groups", [])
    if not isinstance(groups, list):
        raise UsageError(f"{where}: groups must be [[groups]] tables, not {groups!r}")
    for raw in groups:
        check_keys(raw, ("id", "instances", "params", "program"), f"{where} [[groups]]")
        check_keys(raw.get("instances", {}), ("count", "percentage"), f"{where} group instances")
        table(raw.get("params", {}), f"{where} group {raw.get('id')!r} params")
    return data


def _groups(
    comp: Mapping[str, Any],
    case: TestCase,
    instances: int | None,
    where: str,
    path: Path | None,
) -> list[tuple[str, int, Mapping[str, Any], tuple[str, ...] | None]]:
    raw_groups = comp.get("groups")
    total = instances if instances is not None else comp.get("global", {}).get("total_instances")
    if (isinstance(total, int) and not isinstance(total, bool)
            and not case.min_instances <= total <= case.max_instances):  # before any share
        raise UsageError(f"{where} takes {case.min_instances} to {case.max_instances} "
                         f"instances, not {total}")
    if not raw_groups:
        return [("single", case.default_instances if total is None else total, {}, None)]
    out: list[tuple[str, int, Mapping[str, Any], tuple[str, ...] | None]] = []
    shares: dict[int, tuple[float, str]] = {}  # a percentage group's exact share, by index
    for raw in raw_groups:
        if "id" not in raw:
            raise UsageError(f"composition {path}: every group needs an id")
        gid = group_id(raw["id"], f"composition {path}: group id")
        if any(gid == o[0] for o in out):
            raise UsageError(f"composition {path}: group id {gid!r} appears twice")
        inst = raw.get("instances", {})
        at = f"composition {path}: group {gid!r} instances"
        if ("count" in inst) == ("percentage" in inst):
            raise UsageError(f"{at}: give exactly one of count and percentage")
        if "count" in inst:
            count = whole(inst["count"], f"{at}.count", least=1)
        else:
            pct = number(inst["percentage"], f"{at}.percentage")
            if not 0 < pct <= 100:
                raise UsageError(f"{at}.percentage must be above 0 and at most 100, not {pct!r}")
            if total is None:
                raise UsageError(
                    f"composition {path}: group {gid!r} uses a percentage; "
                    "set [global] total_instances or -i"
                )
            count = 0  # apportioned below, once every group is known
            shares[len(out)] = (total * pct / 100, f"{at}: {pct}% of {total}")
        program = raw.get("program")
        if program is not None and not is_argv(program):
            raise UsageError(f"composition {path}: group {gid!r}: program is a list of strings")
        out.append((gid, count, raw.get("params", {}), tuple(program) if program else None))
    if shares:
        assert total is not None
        counted = sum(o[1] for o in out)
        asked = sum(e for e, _ in shares.values())
        # Rounding fills or trims less than one instance; more is a composition at odds
        # with itself (60% and 60% of 3), not a split to guess.
        if abs(counted + asked - total) >= 1 or asked > total + 1e-9:
            besides = f" and {counted} counted" if counted else ""
            raise UsageError(
                f"composition {path}: groups add up to {counted + asked:g} instances, not the "
                f"{total} asked for ({where}): {100 * asked / total:g}% of {total}{besides}")
        counts = _apportion(total - counted, [e for e, _ in shares.values()])
        for (i, (_, said)), count in zip(shares.items(), counts, strict=True):
            if count < 1:
                raise UsageError(f"{said} is {count} instances")
            out[i] = (out[i][0], count, *out[i][2:])
    if total is not None and sum(o[1] for o in out) != total:
        raise UsageError(
            f"composition {path}: groups add up to {sum(o[1] for o in out)} instances, "
            f"not the {total} asked for ({where})"
        )
    return out


def _apportion(left: int, exact: list[float]) -> list[int]:
    """Whole counts for shares `exact` of the `left` instances the counted groups leave:
    each rounded down, and the ones still left to the largest remainders (50 % and 50 % of
    5 are 3 and 2; rounding each on its own gave 2 and 2). Shares that do not add up to
    `left` are each rounded (the sum is then checked, and refused)."""
    floors = [math.floor(e) for e in exact]
    extra = left - sum(floors)
    if not 0 <= extra <= len(exact):
        return [round(e) for e in exact]
    largest = sorted(range(len(exact)), key=lambda i: floors[i] - exact[i])[:extra]
    return [f + (i in largest) for i, f in enumerate(floors)]
