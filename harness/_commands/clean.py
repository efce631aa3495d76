"""`harness clean`: remove what crashed or killed runs left behind."""

from __future__ import annotations

import argparse
import os

import netem
from harness._errors import EnvironmentProblem, UsageError

HELP = "remove leftover network namespaces and manifests of runs that are no longer alive"


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness clean`."""
    parser.add_argument(
        "--prefix",
        metavar="PREFIX",
        help="remove the network with this prefix even if its owner still runs",
    )


def run(args: argparse.Namespace) -> int:
    """Remove leftovers and print one line per thing removed."""
    if os.geteuid() != 0:
        raise EnvironmentProblem("removing network namespaces needs root")
    try:
        removed = netem.cleanup(args.prefix)
    except netem.RequestError as e:
        raise UsageError(str(e)) from None
    except (netem.NetemError, OSError) as e:
        raise EnvironmentProblem(f"clean-up failed: {e}") from None
    for item in removed:
        print(f"removed {item}")
    print(f"{len(removed)} item(s) removed" if removed else "nothing to remove")
    return 0
