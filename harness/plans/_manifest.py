"""Plan manifests (`manifest.toml`): test cases, instance ranges, typed params, roles."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness._errors import UsageError
from harness.plans._checks import (
    check_keys,
    is_argv,
    read_toml,
    safe_name,
    table,
    text,
    whole,
)
from harness.plans._params import ParamSpec, parse_spec
from harness.plans._roles import RoleAllocator, RoleSpec
from harness.runners._registry import DEFAULT_RUNNER, check_runner_name

if TYPE_CHECKING:
    from harness.faults import Fault

BACKENDS = ("trio", "asyncio", "uvloop")
"""What a case's `backend` may name (`harness.sdk.run_on`)."""


@dataclasses.dataclass(frozen=True)
class TestCase:
    """One test case of a plan."""

    name: str
    min_instances: int
    max_instances: int
    default_instances: int
    params: Mapping[str, ParamSpec]
    entrypoint: str | None  # "package.module:function"
    program: tuple[str, ...] | None  # any executable, argv
    backend: str = "trio"
    roles: RoleAllocator | None = None
    description: str = ""
    check: str | None = None
    """"package.module:function" that checks a run's params before anything starts
    (harness.plans._plancheck); None: only the manifest's own checks."""
    faults: tuple[Fault, ...] = ()
    """The case's own fault schedule (`[[testcases.faults]]`), played unless a composition's
    `[[faults]]` or `--faults FILE` gives the run another."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """A plan: a directory with a manifest and its code."""

    name: str
    path: Path
    runner: str
    cases: Mapping[str, TestCase]
    description: str = ""

    def case(self, name: str | None) -> TestCase:
        """The named case, or the only/first one when `name` is None."""
        if name is None:
            return next(iter(self.cases.values()))
        if name not in self.cases:
            raise UsageError(
                f"plan {self.name!r} has no test case {name!r} (cases: {', '.join(self.cases)})"
            )
        return self.cases[name]


def load_manifest(path: Path) -> Plan:
    """Read and check `<plan dir>/manifest.toml`."""
    where = str(path)
    if path.exists() and not (path.is_file() or path.is_dir()):
        # (a FIFO: unlike a composition or a faults file, never a pipe; reading it would
        # wait forever, and plan discovery reads every manifest under the roots)
        raise UsageError(f"manifest {path} is not a regular file")
    data = read_toml(path, "manifest")
    check_keys(data, ("name", "description", "defaults", "params", "roles", "testcases"), where)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{where}: 'name' is missing")
    safe_name(name, f"{where}: plan name")  # `harness run PLAN:CASE` could not name "p:q"
    defaults = data.get("defaults", {})
    check_keys(defaults, ("runner", "check"), f"{where} [defaults]")
    runner = check_runner_name(defaults.get("runner", DEFAULT_RUNNER), where)
    raw_cases = data.get("testcases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise UsageError(f"{where}: no [[testcases]]")
    shared = table(data.get("params", {}), f"{where} [params]")
    shared_params = {k: parse_spec(k, v, f"{where} [params]") for k, v in shared.items()}
    cases: dict[str, TestCase] = {}
    for raw in raw_cases:
        case = _load_case(raw, where, shared_params, data.get("roles"), defaults.get("check"))
        if case.name in cases:
            raise UsageError(f"{where}: test case {case.name!r} appears twice")
        cases[case.name] = case
    return Plan(name, path.parent, runner, cases, str(data.get("description", "")))


_CASE_KEYS = (
    "name", "description", "instances", "entrypoint", "program", "backend", "params", "roles",
    "check", "faults",
)


def _case_params(
    raw: Any, shared: Mapping[str, ParamSpec], where: str
) -> dict[str, ParamSpec]:
    """The shared `[params]` with the case's own: a table is a whole spec (new, or replacing a
    shared one); a bare value is a new default for the shared param of that name."""
    params = dict(shared)
    for k, v in table(raw, f"{where} params").items():
        if isinstance(v, dict):
            params[k] = parse_spec(k, v, where)
        elif k in shared:
            params[k] = dataclasses.replace(
                shared[k], default=shared[k].coerce(v, f"{where} {k}", typed=True))
        else:
            raise UsageError(f"{where}: param {k!r} is not in [params]: give a full spec table")
    return params


def _load_case(
    raw: Any,
    where: str,
    shared: Mapping[str, ParamSpec] | None = None,
    shared_roles: Any = None,
    shared_check: Any = None,
) -> TestCase:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise UsageError(f"{where}: every [[testcases]] needs a name")
    name = safe_name(raw["name"], f"{where}: test case name")
    where = f"{where} [{name}]"
    check_keys(raw, _CASE_KEYS, where)
    inst = raw.get("instances", {})
    check_keys(inst, ("min", "max", "default"), f"{where} instances")
    if "min" not in inst or "max" not in inst:
        raise UsageError(f"{where}: instances = {{ min, max, default }} needs min and max")
    lo = whole(inst["min"], f"{where} instances.min", least=1)
    hi = whole(inst["max"], f"{where} instances.max", least=1)
    default = whole(inst.get("default", lo), f"{where} instances.default", least=1)
    if not 1 <= lo <= default <= hi:
        raise UsageError(f"{where}: instances must satisfy 1 <= min <= default <= max")
    entry, program = raw.get("entrypoint"), raw.get("program")
    if (entry is None) == (program is None):
        raise UsageError(f"{where}: give exactly one of entrypoint or program")
    if entry is not None and (not isinstance(entry, str) or ":" not in entry):
        raise UsageError(f"{where}: entrypoint must look like 'package.module:function'")
    if program is not None and not is_argv(program):
        raise UsageError(f"{where}: program must be a non-empty list of strings")
    check = raw.get("check", shared_check)
    if check is not None and (not isinstance(check, str) or ":" not in check):
        raise UsageError(f"{where}: check must look like 'package.module:function'")
    backend = raw.get("backend", "trio")
    if backend not in BACKENDS:
        raise UsageError(f"{where}: backend must be one of {', '.join(BACKENDS)}")
    params = _case_params(raw.get("params", {}), shared or {}, where)
    roles = None
    raw_roles = raw.get("roles") or shared_roles
    if raw_roles:
        try:
            roles = RoleAllocator(_load_roles(raw_roles, params, where))
        except UsageError as e:  # (the allocator's own, of the roles together, name no file)
            raise UsageError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None
        defaults = {k: p.default for k, p in params.items()}
        try:  # the defaults themselves must fit
            roles.counts(default, defaults)
        except UsageError as e:
            raise UsageError(f"{where} (its default instances): {e}") from None
    from harness.faults import parse_faults

    faults = parse_faults(raw["faults"], f"{where} [[testcases.faults]]") if (
        "faults" in raw) else ()
    return TestCase(
        name=name,
        min_instances=lo,
        max_instances=hi,
        default_instances=default,
        params=params,
        entrypoint=entry,
        program=tuple(program) if program else None,
        backend=backend,
        roles=roles,
        description=str(raw.get("description", "")),
        check=check,
        faults=faults,
    )


def _load_roles(raw: Any, params: Mapping[str, ParamSpec], where: str) -> list[RoleSpec]:
    if not isinstance(raw, list):
        raise UsageError(f"{where}: roles must be a list of [[testcases.roles]] tables")
    specs = []
    for r in raw:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise UsageError(f"{where}: every [[testcases.roles]] needs a name")
        at = f"{where} role {r['name']!r}"
        check_keys(r, ("name", "count", "rest", "min"), at)
        count = r.get("count")
        if isinstance(count, str):
            if count not in params or params[count].type != "int":
                raise UsageError(f"{at}: count {count!r} is no int param")
        elif count is not None:
            count = whole(count, f"{at}: count")
        rest = r.get("rest", False)
        if not isinstance(rest, bool):
            raise UsageError(f"{at}: rest must be true or false, not {rest!r}")
        if count is None and not rest:
            raise UsageError(f"{at}: give it a count (a number or an int param's name), or "
                             "rest = true")
        if count is not None and rest:
            raise UsageError(f"{at}: give it a count or rest = true, not both")
        least = whole(r.get("min", 0), f"{at}: min")
        specs.append(RoleSpec(text(r["name"], f"{at}: name"), count, rest, least))
    return specs
