"""Start-up benchmark: from the first spawn to the last instance registered, for 100 Python
instances, forked from the process host (ours) and one interpreter each (the naive way).

    python benchmarks/bench_start.py [-n 100] [--runner local:exec|local:netns]

Target: <= 1 s for 100 instances until all registered.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness._supervisor import RunOptions, run  # noqa: E402
from harness.plans import build_run_spec  # noqa: E402

PLANS = Path(__file__).resolve().parent / "plans"


def measure(case: str, n: int, runner: str) -> tuple[float, float]:
    """(seconds from the first spawn to the last 'registered', wall seconds of the run)."""
    spec = build_run_spec(f"startup:{case}", instances=n, runner=runner, plan_roots=[PLANS])
    with tempfile.TemporaryDirectory() as out:
        t0 = time.monotonic()
        result = run(spec, RunOptions(outputs=Path(out), progress=False))
        wall = time.monotonic() - t0
        if result.exit_code != 0:
            raise SystemExit(f"{case}: run failed: {result.reason}")
        events = [json.loads(x) for x in (result.run_dir / "events.jsonl").open()]
    first_spawn = min(e["mono"] for e in events if e.get("status") == "started")
    last = max(e["mono"] for e in events if e.get("kind") == "signal"
               and e.get("state") == "registered")
    return last - first_spawn, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--runner", default="local:exec")
    args = parser.parse_args()
    print(f"start of {args.n} Python instances until all registered ({args.runner})")
    for case, label in (("forked", "forked from the process host"),
                        ("exec", "one interpreter each (peer: the naive way)")):
        registered, wall = measure(case, args.n, args.runner)
        print(f"  {label:<44} {registered:6.3f} s   (whole run {wall:.2f} s)")
    print("target: <= 1 s for 100 instances")


if __name__ == "__main__":
    main()
