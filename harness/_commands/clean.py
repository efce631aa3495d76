"""`harness clean`: remove what crashed or killed runs left behind."""

from __future__ import annotations

import argparse
import os
import sys

import netem
from harness import _cgroup as cgroups
from harness._commands._args import add_outputs
from harness._errors import EnvironmentProblem, UsageError
from harness._liveness import mark_aborted_runs

HELP = (
    "remove leftover network namespaces, manifests and cgroups of runs that are no longer "
    "alive; "
    "mark runs whose supervisor was killed as aborted and remove their sockets"
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness clean`."""
    parser.add_argument(
        "--prefix",
        metavar="PREFIX",
        help="remove the network with this prefix even if its owner still runs",
    )
    add_outputs(parser)


def run(args: argparse.Namespace) -> int:
    """Remove leftovers and print one line per thing removed or run marked."""
    removed: list[str] = []
    if os.geteuid() == 0:
        try:
            removed = netem.cleanup(args.prefix)  # checks the prefix before anything
            if args.prefix is None:  # the cgroups of runs whose supervisor is dead
                removed += [str(p) for p in cgroups.cleanup()]
        except netem.RequestError as e:
            raise UsageError(str(e)) from None
        except (netem.NetemError, cgroups.CgroupError, OSError) as e:
            raise EnvironmentProblem(f"clean-up failed: {e}") from None
    elif args.prefix is not None:
        raise EnvironmentProblem("removing network namespaces needs root")
    else:  # a rootless run's namespaces live in a user namespace that died with it
        print("harness: note: network namespaces not checked (that needs root)", file=sys.stderr)
    try:
        aborted = mark_aborted_runs(args.outputs, "harness clean")
    except OSError as e:
        raise EnvironmentProblem(f"marking the runs under {args.outputs} failed: {e}") from None
    for item in removed:
        print(f"removed {item}")
    for run_dir in aborted:
        print(f"marked run {run_dir.name} aborted (its supervisor is gone); removed its sockets")
    print(f"{len(removed)} item(s) removed" if removed else "nothing to remove")
    return 0
