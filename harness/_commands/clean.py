"""`harness clean`: remove what crashed or killed runs left behind."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import netem
from harness import _cgroup as cgroups
from harness._clock import SHM_DIR, remove_stale_shared
from harness._commands._args import add_outputs, failing_as, outputs_dir
from harness._errors import EnvironmentProblem, UsageError
from harness._liveness import (
    check_proc,
    mark_aborted_runs,
    remove_stale_sockets,
    runs_left_alone,
)
from harness.observe import DEFAULT_OUTPUTS
from netem._cleanup import left_alone

HELP = (
    "remove leftover network namespaces, manifests and cgroups of runs that are no longer "
    "alive; "
    "mark runs whose supervisor was killed as aborted and remove their sockets and their "
    "clocks' shared memory"
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness clean`."""
    parser.add_argument(
        "--prefix",
        metavar="PREFIX",
        help="remove the network with this prefix even if its owner still runs",
    )
    parser.add_argument("--runner", choices=["cluster:k8s"],
                        help="cluster:k8s: delete the objects of the run given with --run")
    parser.add_argument("--run", metavar="RUN_ID", help="with --runner cluster:k8s: the run")
    parser.add_argument("--k8s", action="append", default=[], metavar="KEY=VALUE",
                        help="with --runner cluster:k8s: namespace, kubeconfig, context")
    add_outputs(parser)
    # None: ./outputs if there is one; a clean from anywhere still removes the namespaces
    parser.set_defaults(outputs=None)


def _clean_cluster(args: argparse.Namespace) -> int:
    """Delete exactly one cluster:k8s run's objects, selected by its run label."""
    from harness._runid import is_run_id
    from harness.runners.k8s import parse_options
    from harness.runners.k8s._cluster import clean_run

    if args.run is None or not is_run_id(args.run):
        given = "" if args.run is None else f", not {args.run!r}"
        raise UsageError(f"--runner cluster:k8s needs --run RUN_ID (a run id){given}")
    raw = dict(item.partition("=")[::2] for item in args.k8s)
    removed = clean_run(parse_options(raw, set(), "--k8s"), args.run)
    print(f"{removed} object(s) of run {args.run} deleted")
    return 0


_ANOTHER_PID_NS = "runs in another PID namespace (cannot tell from here whether it lives)"


def _left_alone(outputs: Path, networks: dict[str, int], groups: list[str]) -> list[str]:
    """One line per run left alone, whose supervisor this process cannot judge (another
    PID namespace, or host): its record, with its network and cgroups if they were left
    too; then one per network and run's cgroups left of runs not under `outputs`."""
    lines = []
    networks, groups = dict(networks), list(groups)
    for run, why in runs_left_alone(outputs):
        prefix = (run.network or {}).get("prefix")
        what = ["its record"]
        if prefix in networks:
            del networks[prefix]
            what.append(f"network {prefix}")
        if run.run_id in groups:
            groups.remove(run.run_id)
            what.append("cgroups")
        lines.append(f"left run {run.run_id} alone ({', '.join(what)}): {why}")
    lines += [f"left network {prefix} alone: its owner (pid {pid}) {_ANOTHER_PID_NS}"
              for prefix, pid in networks.items()]
    lines += [f"left the cgroups of run {run_id} alone: its supervisor {_ANOTHER_PID_NS}"
              for run_id in groups]
    return lines


def run(args: argparse.Namespace) -> int:
    """Remove leftovers and print one line per thing removed or run marked."""
    if args.runner is not None:
        return _clean_cluster(args)
    check_proc()
    if args.run is not None or args.k8s:
        option = "--run" if args.run is not None else "--k8s"
        raise UsageError(f"{option} is for cluster:k8s runs: add --runner cluster:k8s")
    outputs = DEFAULT_OUTPUTS if args.outputs is None else args.outputs
    if args.outputs is not None:
        if outputs.exists():
            outputs_dir(outputs)  # a file given for it is refused before anything is done
        else:  # removed with the runs in it: what they left on the host still goes
            print(f"harness: note: no outputs directory {outputs}: no run records to mark",
                  file=sys.stderr)
    removed: list[str] = []
    failed: list[str] = []  # what could not be removed: said at the end, after the rest
    networks: dict[str, int] = {}  # left alone: their owner's pid, by prefix
    groups: list[str] = []  # the runs whose cgroups were left alone
    if os.geteuid() == 0:
        try:
            removed = netem.cleanup(args.prefix)  # checks the prefix before anything
            if args.prefix is None:
                networks = {m.prefix: m.pid for m in left_alone()}
        except netem.RequestError as e:
            raise UsageError(str(e)) from None
        except (netem.NetemError, OSError) as e:
            failed.append(str(e))
        if args.prefix is None:  # the cgroups of runs whose supervisor is dead
            try:
                removed += [str(p) for p in cgroups.cleanup()]
            except (cgroups.CgroupError, OSError) as e:
                failed.append(str(e))
            groups = cgroups.left_alone()
    elif args.prefix is not None:
        raise EnvironmentProblem("removing network namespaces needs root")
    else:  # a rootless run's namespaces live in a user namespace that died with it
        print("harness: note: network namespaces not checked (that needs root)", file=sys.stderr)
    with failing_as(f"marking the runs under {outputs}"):
        aborted = mark_aborted_runs(outputs, "harness clean")
    if args.prefix is None:  # killed runs' sockets and clocks, whatever their outputs
        removed += [str(p) for p in remove_stale_sockets()]
        removed += [str(SHM_DIR / name) for name in remove_stale_shared()]
    for item in removed:
        print(f"removed {item}")
    for run_dir in aborted:
        print(f"marked run {run_dir.name} aborted (its supervisor is gone); its sockets and "
              f"control token are gone")
    for line in _left_alone(outputs, networks, groups):
        print(line)
    if removed:
        print(f"{len(removed)} item(s) removed")
    elif not failed and not aborted:
        print("nothing to remove")
    if failed:
        raise EnvironmentProblem(f"clean-up failed: {'; '.join(failed)}")
    return 0
