"""Start-up benchmark: from the first spawn to the last instance registered, for 100 Python
instances, forked from the process host (ours) and one interpreter each (the naive way, the
peer); then a whole run of 1,000 of them on local:netns (namespaces, links, instances, the
end and the report), as root.

    python benchmarks/bench_start.py [-n 100] [--runner local:exec|local:netns] [--netns 1000]

Targets: <= 1 s for 100 instances until all registered; <= 10 s for the 1,000-instance run.
Writes its figures to outputs/bench/start.json (_figures.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _figures import Figure, write

from harness._supervisor import RunOptions, run
from harness.plans import build_run_spec

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
    parser.add_argument("--netns", type=int, default=1000,
                        help="instances of the local:netns whole run (0: leave it out)")
    args = parser.parse_args()
    print(f"start of {args.n} Python instances until all registered ({args.runner})")
    took = {}
    for case, label in (("forked", "forked from the process host"),
                        ("exec", "one interpreter each (peer: the naive way)")):
        registered, wall = measure(case, args.n, args.runner)
        took[case] = registered
        print(f"  {label:<44} {registered:6.3f} s   (whole run {wall:.2f} s)")
    print("target: <= 1 s for 100 instances")
    figures = [Figure(f"{args.n} instances started until registered ({args.runner})",
                      took["forked"], "s", "one interpreter each", took["exec"],
                      target="<= 1 s" if args.n == 100 else None)]
    if args.netns and os.geteuid() == 0:
        before = os.times()
        registered, wall = measure("forked", args.netns, "local:netns")
        after = os.times()
        # On a shared machine the wall time follows the load; the CPU time much less.
        own = after.user - before.user + after.system - before.system
        children = (after.children_user - before.children_user
                    + after.children_system - before.children_system)
        print(f"{args.netns} instances on local:netns: whole run {wall:.2f} s, first spawn to "
              f"all registered {registered:.3f} s (target: whole run <= 10 s); CPU: supervisor "
              f"{own:.2f} s, its children (instances, tools) {children:.2f} s")
        figures += [
            Figure(f"{args.netns} trivial instances on local:netns, whole run", wall, "s",
                   target="<= 10 s" if args.netns == 1000 else None),
            Figure(f"{args.netns} trivial instances on local:netns, spawn to registered",
                   registered, "s"),
            Figure(f"{args.netns} trivial instances on local:netns, supervisor CPU (user+sys)",
                   own, "s"),
            Figure(f"{args.netns} trivial instances on local:netns, children's CPU (user+sys)",
                   children, "s"),
        ]
    elif args.netns:
        print(f"{args.netns} instances on local:netns: skipped, needs root")
    write("start", figures)


if __name__ == "__main__":
    main()
