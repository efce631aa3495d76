"""A network test harness for peer-to-peer systems.

From the command line: `harness run PLAN[:CASE]` (see `harness --help`). From Python:

    import harness
    spec = harness.build_run_spec("pingpong:ping", instances=8, params={"rounds": "5"})
    result = harness.run(spec, harness.RunOptions(outputs=Path("outputs")))
    print(result.summary()); raise SystemExit(result.exit_code)

Instances use `harness.sdk`; the network library is the separate package `netem`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness._lazy import lazy_attributes

if TYPE_CHECKING:
    from harness._collector import fewer_collections
    from harness._errors import EnvironmentProblem, HarnessError, UsageError
    from harness._runparams import RunEnvError, RunParams
    from harness._supervisor import RunOptions, RunResult, Supervisor, run
    from harness.plans import RunSpec, build_run_spec, find_plans, get_plan

# Imported on first use: an instance that imports `harness.sdk` must not pay for the
# supervisor, the observers and their dependencies at every start.
_WHERE = {
    "EnvironmentProblem": "harness._errors",
    "HarnessError": "harness._errors",
    "UsageError": "harness._errors",
    "RunEnvError": "harness._runparams",
    "RunParams": "harness._runparams",
    "RunOptions": "harness._supervisor",
    "RunResult": "harness._supervisor",
    "Supervisor": "harness._supervisor",
    "run": "harness._supervisor",
    "RunSpec": "harness.plans",
    "build_run_spec": "harness.plans",
    "find_plans": "harness.plans",
    "get_plan": "harness.plans",
    "fewer_collections": "harness._collector",
}

__all__ = [
    "EnvironmentProblem",
    "HarnessError",
    "RunEnvError",
    "RunOptions",
    "RunParams",
    "RunResult",
    "RunSpec",
    "Supervisor",
    "UsageError",
    "build_run_spec",
    "fewer_collections",
    "find_plans",
    "get_plan",
    "run",
]


__getattr__ = lazy_attributes(__name__, _WHERE, globals())
