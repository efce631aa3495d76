"""A case's own check of a run's params, before anything starts.

A manifest may name `check = "package.module:function"` (in a case, or in `[defaults]` for
every case). Before the run creates anything, the function is called once per group as
`function(params, instances)`: the group's resolved params (a dict, durations in seconds)
and the run's instance count, and `timeout_s=` the run's timeout in seconds too if the
function takes a parameter of that name. It raises ValueError with a one-line message when
the params cannot make a run (a malformed fault schedule, more late miners than the network
has, more layers than the timeout leaves time for); the run is then refused with that line
and exit code 2, as a wrong type or range is.

The function runs in a child Python process over the instances' import path, so the
supervisor still never imports plan code; the child has `CHECK_TIMEOUT_S` to answer.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.plans._entrypoint import instance_path, project_root

CHECK_TIMEOUT_S = 60.0


def plan_check_problem(
    check: str, plan_dir: Path, groups: Sequence[tuple[str, Mapping[str, Any]]], instances: int,
    timeout_s: float,
) -> str | None:
    """Why `check` refuses the run's `groups` ((id, params) each), or None if it accepts
    them; a check that fails, hangs or cannot be loaded is a problem too."""
    request = {"check": check, "instances": instances, "timeout_s": timeout_s,
               "groups": [{"id": gid, "params": dict(params)} for gid, params in groups]}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(instance_path(plan_dir))}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harness.plans._plancheck"], input=json.dumps(request),
            capture_output=True, text=True, cwd=project_root(), env=env, timeout=CHECK_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"check {check} did not answer in {CHECK_TIMEOUT_S:g}s"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return f"check {check} failed: {lines[-1] if lines else f'exit code {done.returncode}'}"
    try:  # the answer is the last line: plan code may write to the descriptor itself
        problem = json.loads(done.stdout.splitlines()[-1])["problem"]
    except (ValueError, IndexError, KeyError, TypeError):
        return f"check {check} gave no answer (its stdout: {done.stdout[-200:]!r})"
    return None if problem is None else str(problem)


def _answer(request: Mapping[str, Any]) -> str | None:
    module, _, name = str(request["check"]).partition(":")
    function = getattr(importlib.import_module(module), name)
    extra = {}
    with contextlib.suppress(TypeError, ValueError):  # a callable with no signature to read
        if "timeout_s" in inspect.signature(function).parameters:
            extra["timeout_s"] = request["timeout_s"]
    groups = request["groups"]
    for group in groups:
        try:
            function(group["params"], request["instances"], **extra)
        except ValueError as e:
            why = str(e).strip().replace("\n", " ") or type(e).__name__
            return why if len(groups) == 1 else f"group {group['id']!r}: {why}"
        except Exception as e:  # a bug in the check: still one line, and the run refused
            return f"check {request['check']} raised {type(e).__name__}: {e}"
    return None


def main() -> None:
    """The child: the request on stdin, `{"problem": ...}` on stdout; what the plan's code
    prints goes to stderr."""
    request = json.load(sys.stdin)
    with contextlib.redirect_stdout(sys.stderr):
        problem = _answer(request)
    print(json.dumps({"problem": problem}))


if __name__ == "__main__":
    main()
