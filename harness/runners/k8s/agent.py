"""`python -m harness.runners.k8s.agent RUN_JSON PLAN_DIR`: one instance in its pod.

Runs the instance as locally (the case's Python entrypoint, or the group's program) with
the TEST_* variables the pod was given, then prints its output files at the end of its log
(`_outputs`: the runner collects them from there), writes its exit status where the pod's
shaper sees it (so the pod ends), and exits with it: the pod's phase is the instance's
outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from harness.runners.k8s._outputs import pack
from harness.runners.k8s._render import DONE

__all__ = ["main"]


def main() -> int:
    """Entry point of the instance container."""
    run = orjson.loads(Path(sys.argv[1]).read_bytes())
    plan_dir = Path(sys.argv[2])
    group = os.environ["TEST_GROUP_ID"]
    program = next((g["program"] for g in run["groups"] if g["id"] == group), None) or run[
        "program"]
    roots = [str(plan_dir.parent), str(plan_dir.parent.parent), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in roots if p)
    outputs = Path(os.environ["TEST_OUTPUTS_PATH"])
    outputs.mkdir(parents=True, exist_ok=True)
    if program:
        argv = [str(plan_dir / program[0]) if "/" in program[0] and not program[0].startswith(
            "/") else program[0], *program[1:]]
        code = subprocess.run(argv, check=False).returncode
    else:
        code = subprocess.run([sys.executable, "-c", _RUN_ENTRYPOINT, run["entrypoint"],
                               run.get("backend") or "trio"], check=False).returncode
    sys.stdout.write(pack(outputs))
    sys.stdout.flush()
    Path(DONE).mkdir(parents=True, exist_ok=True)
    (Path(DONE) / "ended").write_text(str(code))
    return 0 if code == 0 else 1


_RUN_ENTRYPOINT = """
import sys
from harness.sdk import load_entrypoint, run_instance
sys.exit(run_instance(load_entrypoint(sys.argv[1]), sys.argv[2]))
"""

if __name__ == "__main__":
    sys.exit(main())
