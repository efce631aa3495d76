"""`harness replay RUN`: run a recorded run again, its fault schedule included."""

from __future__ import annotations

import argparse
import sys

import orjson

from harness._commands._args import add_run
from harness._commands.run import add_how, start
from harness._errors import UsageError
from harness._replay import replay_faults, replay_spec, schedule
from harness.observe import load_run, resolve_run
from harness.runners import CLUSTER_K8S, LOCAL_NETNS, RUNNERS

HELP = "run a recorded run again: the same plan, groups, params, runner, timeout and faults"

_DESCRIPTION = f"""{HELP}.

A new run (its own id and times) of the same plan and case, with the same groups and each
group's params as the run resolved them, the same runner and timeout, and the same fault
schedule: the planned faults (the composition's or the case's own, and --faults FILE's)
with their seeds, and
the faults injected live during the run, each at the time it was applied and on the
instances it chose (targets = {{instances = [...]}}). The new run is written beside the
recorded one; the exit code is that of `harness run`."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness replay`."""
    parser.description = _DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_run(parser)
    parser.add_argument("--runner", choices=list(RUNNERS),
                        help="run it on this runner instead of the recorded one")
    parser.add_argument("--print-faults", action="store_true",
                        help="print the fault schedule it would play as JSON "
                             "({\"faults\": [...]}: what `harness run --faults FILE.json` "
                             "reads) and run nothing")
    add_how(parser)


def run(args: argparse.Namespace) -> int:
    """Replay it; the exit code is 0 (passed), 1 (failed), 2 (bad input, or a run that
    cannot be replayed) or 130 (interrupted)."""
    run_dir = resolve_run(args.run, args.outputs)
    if args.print_faults:  # from the run alone: its plan may be gone or changed since
        faults = replay_faults(load_run(run_dir), run_dir)
        text = orjson.dumps(schedule(faults), option=orjson.OPT_INDENT_2).decode()
        sys.stdout.write(text + "\n")
        return 0
    spec = replay_spec(run_dir, args.runner)
    if spec.runner == CLUSTER_K8S:  # a local supervisor cannot place it: refused before it
        raise UsageError(f"run {run_dir.name}: replaying on {CLUSTER_K8S} is not done yet "
                         f"(docs/k8s.md): replay it with --runner {LOCAL_NETNS}")
    return start(spec, args, run_dir.parent, what=f"replaying {run_dir.name}:",
                 origin=f"harness replay {run_dir.name}")
