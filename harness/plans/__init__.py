"""Plans, test cases, typed params, compositions and roles; all checked before a run starts."""

from harness.plans._discovery import PLANS_ENV, default_roots, find_plans, get_plan
from harness.plans._entrypoint import import_roots
from harness.plans._manifest import Plan, TestCase, load_manifest
from harness.plans._params import ParamSpec, format_duration, parse_assignments, parse_duration
from harness.plans._roles import RoleAllocator, RoleSpec
from harness.plans._spec import GroupSpec, InstanceSpec, RunSpec, build_run_spec

__all__ = [
    "PLANS_ENV",
    "GroupSpec",
    "InstanceSpec",
    "ParamSpec",
    "Plan",
    "RoleAllocator",
    "RoleSpec",
    "RunSpec",
    "TestCase",
    "build_run_spec",
    "default_roots",
    "find_plans",
    "format_duration",
    "get_plan",
    "import_roots",
    "load_manifest",
    "parse_assignments",
    "parse_duration",
]
