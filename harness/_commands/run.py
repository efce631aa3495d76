"""`harness run PLAN[:CASE]`: run a test case and exit 0 only if every instance passed."""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness import _listen as listen
from harness._commands._args import add_outputs, add_plans
from harness._errors import UsageError
from harness._liveness import check_proc
from harness._outputs import check_outputs
from harness._runid import new_run_id
from harness._supervisor import RunOptions, check_programs
from harness._supervisor import run as run_spec
from harness._tell import tell
from harness.plans import RunSpec, build_run_spec, parse_assignments
from harness.plans._spec import DEFAULT_TIMEOUT_S
from harness.runners import CLUSTER_K8S, RUNNERS, runnable_here

if TYPE_CHECKING:
    from harness.faults import Fault

HELP = "run a test case of a plan"


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness run`."""
    add_what(parser)
    parser.add_argument("--faults", type=Path, metavar="FILE",
                        help="faults to play (TOML [[faults]] or JSON {\"faults\": [...]}), "
                             "after the composition's own; instead of the case's own (a "
                             "file of `faults = []`: none)")
    parser.add_argument("--render", type=Path, metavar="DIR",
                        help="cluster:k8s: write the run's manifests to DIR and stop "
                             "(no cluster needed)")
    parser.add_argument("--k8s", action="append", default=[], metavar="KEY=VALUE",
                        help="a cluster:k8s option over the composition's [runner.k8s] "
                             "(repeatable; docs/k8s.md)")
    add_outputs(parser)
    add_plans(parser)
    add_how(parser)


def add_what(parser: argparse.ArgumentParser) -> None:
    """What to run: the plan's case, its size and params, composition, runner and timeout
    (shared with `harness search`)."""
    parser.add_argument("target", nargs="?", default="", metavar="PLAN[:CASE]",
                        help="plan and test case (default: the plan's first case)")
    parser.add_argument("-i", "--instances", type=int, help="instance count (default: the case's)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="set a test param (repeatable)")
    parser.add_argument("--composition", type=Path, help="a composition file (TOML)")
    parser.add_argument("--runner", choices=list(RUNNERS),
                        help="where instances run (default: the plan's)")
    parser.add_argument("--timeout", type=duration_arg, metavar="DURATION",
                        help="run timeout: seconds, or a duration like 90s, 500ms, 2m "
                             f"(default: the composition's timeout, else "
                             f"{DEFAULT_TIMEOUT_S:g} s)")


def what_spec(args: argparse.Namespace, faults: Path | Sequence[Fault] | None = None) -> RunSpec:
    """The run `add_what`'s options name, playing `faults` too (a file of them, or them)."""
    return build_run_spec(
        args.target,
        instances=args.instances,
        params=parse_assignments(args.param),
        composition=args.composition,
        runner=args.runner,
        timeout_s=args.timeout,
        plan_roots=args.plans,
        faults=faults,
    )


def add_how(parser: argparse.ArgumentParser) -> None:
    """How to run, as opposed to what (shared with `harness replay`)."""
    parser.add_argument("--sync-tcp", metavar="HOST:PORT",
                        help="also serve the sync service over TCP (port 0: any)")
    parser.add_argument("--metrics-listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="serve every instance's metrics on one /metrics here "
                             "(default: a free port on 127.0.0.1; 'off' to disable)")
    parser.add_argument("--no-fail-fast", action="store_true",
                        help="let the other instances run on after one fails")
    parser.add_argument("--allow-unshaped", action="store_true",
                        help="do not fail the run if its links stop being shaped mid-run (the "
                             "userspace shaping engine died); it is recorded either way")
    parser.add_argument("--profile-cpu", nargs="?", const=5.0, type=_positive_ms, metavar="MS",
                        help="each instance on the SDK writes a CPU-time profile "
                             "(cpu-PID.folded in its outputs): a sample every MS "
                             "milliseconds of its CPU (default 5)")
    parser.add_argument("--json", action="store_true",
                        help="print run.json to stdout at the end instead of the table")
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress line")


def run(args: argparse.Namespace) -> int:
    """Run it; the exit code is 0 (passed), 1 (failed), 2 (bad input) or 130 (interrupted)."""
    spec = what_spec(args, args.faults)
    if spec.runner == CLUSTER_K8S or args.render or args.k8s:
        return _on_cluster(spec, args)
    if spec.composition is not None:  # its [runner.k8s] is checked on every runner
        from harness.runners import k8s

        k8s.load_options(spec)
    return start(spec, args, args.outputs)


def _on_cluster(spec: RunSpec, args: argparse.Namespace) -> int:
    """A cluster:k8s run: its manifests written (--render), or the run on the cluster."""
    if spec.runner != CLUSTER_K8S:
        option = "--render" if args.render else "--k8s"
        raise UsageError(f"{option} is for {CLUSTER_K8S} runs: add --runner {CLUSTER_K8S}")
    for option, given in (("--profile-cpu", args.profile_cpu), ("--sync-tcp", args.sync_tcp)):
        if given:  # the instances' profiler, the service's port: both on this machine
            raise UsageError(f"{option} is for local runs, not {CLUSTER_K8S}")
    from harness.runners import k8s

    options = k8s.load_options(spec, args.k8s)
    if args.render is None:
        from harness.runners.k8s._cluster import run_on_cluster

        return run_on_cluster(spec, options, args.outputs, quiet=args.quiet, json=args.json,
                              fail_fast=not args.no_fail_fast)
    rendered = k8s.render_run(spec, options, new_run_id(), secrets.token_bytes(32),
                              fail_fast=not args.no_fail_fast)
    path = k8s.write_manifests(rendered, args.render)
    print(f"{len(rendered.objects)} objects of run {rendered.run_id} written to {path}")
    return 0


def _positive_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not 0 < value <= 60_000:  # beyond a minute of CPU a sample would hardly ever come
        raise argparse.ArgumentTypeError(f"must be > 0 ms and at most 60000 ms, not {text}")
    return value


def start(spec: RunSpec, args: argparse.Namespace, outputs: Path, what: str = "running",
          origin: str | None = None) -> int:
    """Run `spec` into `outputs` as `args` (the options of `add_how`) say, recorded as
    started by `origin` (`RunOptions.origin`); print the summary (or run.json); the run's
    exit code."""
    check_proc()  # before anything is made (the supervisor checks it again)
    # Bound now, so a taken port is a one-line error before anything is built. A re-executed
    # rootless run was handed the sockets its parent bound in the user's network namespace
    # (an inherited socket stays in the namespace it was made in).
    sockets = listen.inherited() or {
        name: sock
        for name, text, option in (("metrics", args.metrics_listen, "--metrics-listen"),
                                   ("sync_tcp", args.sync_tcp or "off", "--sync-tcp"))
        if (sock := listen.bind(text, option)) is not None
    }  # fmt: skip
    spec = runnable_here(spec, lambda: sockets)
    options = RunOptions(
        outputs=outputs,
        fail_fast=not args.no_fail_fast,
        sync_tcp=sockets.get("sync_tcp"),
        progress=not args.quiet,
        metrics_listen=sockets.get("metrics"),
        allow_unshaped=args.allow_unshaped,
        profile_cpu=args.profile_cpu / 1000 if args.profile_cpu else None,
        origin=origin,
    )
    # What the supervisor refuses before it starts, refused before the line that says it runs
    check_programs(spec)
    check_outputs(outputs)
    if not args.quiet:
        tell(f"{what} {spec.plan.name}:{spec.case.name} with {spec.total} instances "
             f"on {spec.runner}")
    result = run_spec(spec, options)
    with contextlib.suppress(BrokenPipeError):  # `| true`: the exit code tells the verdict still
        if args.json:
            sys.stdout.buffer.write((result.run_dir / "run.json").read_bytes() + b"\n")
        else:
            print(result.summary())
    return result.exit_code


def duration_arg(text: str) -> float:
    """A duration option's value (--timeout's, a search's spans): seconds, or a duration as
    a composition's `timeout` takes it."""
    from harness.plans import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
