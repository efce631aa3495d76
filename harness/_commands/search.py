"""`harness search PLAN[:CASE]`: look for a list of faults a run does not survive."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

from harness._commands._args import add_outputs, add_plans
from harness._commands.run import add_what, duration_arg, what_spec
from harness._errors import UsageError
from harness._latesignal import runs_in_a_row
from harness._liveness import check_proc
from harness._outputs import check_outputs
from harness._runid import new_run_id
from harness._search import (
    SEARCH_DIR,
    SEARCHED,
    Search,
    SearchResult,
    Space,
    actions_for,
    brief,
    search,
)
from harness._supervisor import RunOptions, RunResult, check_programs
from harness._supervisor import run as run_spec
from harness._tell import tell
from harness.faults import load_faults
from harness.observe import DEFAULT_OUTPUTS
from harness.runners import CLUSTER_K8S, runnable_here

HELP = "search for a list of faults a run does not survive, in real runs, and shrink it"

_DESCRIPTION = f"""{HELP}.

A run without the search's faults comes first. Then hypothesis draws lists of faults over
the run's instances; each list is played in a run of its own (written beside the others in
the outputs), after the case's own faults, and the run's own verdict is the property. The
first list whose run fails is shrunk, each smaller candidate in another run, to the
smallest that still fails (at the end, that list without each of its faults in turn); it
is run once more, written to a faults file and printed with the command that replays it.
Each run says which search made it (harness show, harness runs, its report). The
search's record (each list tried, its run and verdict) is in OUTPUTS/{SEARCH_DIR}/ID/.
Exit 1 when a failing list was found (or the run fails without faults), 0 when none was,
2 on bad input or when no run of a list checked anything, 3 when the machine failed it (a
full disk), 130 when interrupted.

A run that checked nothing (a fault came after every instance had ended or never fired, or
the faults ended every one) is inconclusive, not a failure; a fault the harness could not
play here (no cgroups for a limit, say) ends the search with an error. docs/faults.md."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `harness search`."""
    parser.description = _DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_what(parser)
    parser.add_argument("--examples", type=_count, default=10, metavar="N",
                        help="fault lists to try before it gives up (default 10)")
    parser.add_argument("--max-faults", type=_count, default=2, metavar="N",
                        help="faults in a list, at most (default 2)")
    parser.add_argument("--actions", type=_names, metavar="A,B,...",
                        help=f"the faults to draw (default: {', '.join(SEARCHED)}, less "
                             "those the runner cannot play)")
    parser.add_argument("--at", type=_span, default=(1.0, 10.0), metavar="FROM..TO",
                        help="when faults come, after the instances start (default 1s..10s)")
    parser.add_argument("--duration", type=_lasting, default=(1.0, 5.0), metavar="MIN..MAX",
                        help="how long a fault lasts before it is undone (default 1s..5s)")
    parser.add_argument("--states", type=_names, default=(), metavar="A,B,...",
                        help="a fault may also come once some instances signalled one of "
                             "these sync states (e.g. ready), not only at a time")
    parser.add_argument("--no-heal", action="store_true",
                        help="a fault may last to the run's end (a kill for good, say)")
    parser.add_argument("--shrink-runs", type=_count, default=20, metavar="N",
                        help="runs spent shrinking a failing list, at most (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis's seed (default 0)")
    parser.add_argument("--no-fail-fast", action="store_true",
                        help="let a run's other instances go on after one fails")
    add_outputs(parser)
    add_plans(parser)


def run(args: argparse.Namespace) -> int:
    """Search; print what it found and how to replay it."""
    base = what_spec(args)
    if base.runner == CLUSTER_K8S:
        raise UsageError(f"a search runs locally, not on {CLUSTER_K8S}")
    members = base.members
    if len(members) < 2:
        raise UsageError("a search needs at least 2 instances (-i 2): faults hit some, the "
                         "others judge")
    if args.at[1] + args.duration[1] >= base.timeout_s:  # (a fault still on then fails it)
        raise UsageError(f"--at and --duration reach {args.at[1] + args.duration[1]:g}s, not "
                         f"before the run's timeout ({base.timeout_s:g}s): give shorter ones "
                         f"or a longer --timeout")
    check_proc()
    base = runnable_here(base)  # (without root: this search again, in a user namespace)
    space = Space(actions_for(base.runner, args.actions), args.at, args.duration,
                  args.max_faults, heal=not args.no_heal, states=args.states)  # fmt: skip
    check_programs(base)
    check_outputs(args.outputs)
    options = RunOptions(outputs=args.outputs, fail_fast=not args.no_fail_fast, progress=False)
    # What a faults file keeps of the run's own faults: the composition's (a case's own it
    # replaces, so the search writes them into each file, `fixed`). The spec is made once:
    # the faults drawn are valid for it (the strategy's promise, --at before the timeout).
    kept = what_spec(args, ())
    fixed = base.faults if kept.faults != base.faults else ()

    def run_one(file: Path, origin: str) -> RunResult:
        spec = dataclasses.replace(kept, runner=base.runner,
                                   faults=kept.faults + load_faults(file))
        return run_spec(spec, dataclasses.replace(options, origin=origin))

    with runs_in_a_row() as interrupted:
        course = Search(run_one, args.outputs / SEARCH_DIR / new_run_id(), fixed,
                        args.examples, args.shrink_runs, tell, interrupted)
        tell(f"search: {base.plan.name}:{base.case.name} with {base.total} instances on "
             f"{base.runner}: up to {args.examples} list(s) of {', '.join(space.actions)}"
             + (f" after the case's own {len(fixed)} fault(s)" if fixed else "")
             + f"; its record: {course.directory}")
        result = search(course, members, space, seed=args.seed)
    if result.trials:
        print(_summary(result, args, base.runner))
    if result.error is not None:
        raise result.error
    return result.exit_code


def _summary(result: SearchResult, args: argparse.Namespace, runner: str) -> str:
    runs = len(result.trials)
    inconclusive = sum(t.outcome == "inconclusive" for t in result.trials)
    lines = []
    outputs = ("" if args.outputs == DEFAULT_OUTPUTS
               else f" --outputs {shlex.quote(str(args.outputs))}")
    baseline = result.baseline
    if baseline is not None and baseline.failed:
        lines.append(f"search: the run fails without the search's faults (run "
                     f"{baseline.run_id}: {baseline.reason}): nothing to search")
    elif result.found is None or result.first is None:
        judged = sum(t.phase == "search" and t.outcome in ("passed", "inconclusive")
                     for t in result.trials)
        ended = (f"{result.stopped} after {runs} run(s); none of the {judged} list(s) run to "
                 f"the end failed" if result.stopped
                 else f"every run of a list checked nothing, in {runs} run(s)"
                 if result.checked_nothing else f"no failing list in {runs} run(s)")
        lines.append(f"search: {ended}")
    else:
        found, first = result.found, result.first
        shrunk = "shrinking interrupted" if result.stopped else "shrunk"
        lines += [
            f"search: list {first.number} failed (run {first.run_id}): {first.reason}",
            f"{shrunk} after {sum(t.phase == 'shrink' for t in result.trials)} more run(s); "
            f"the smallest failing "
            f"list, {len(found.faults)} fault(s), failed in run {found.run_id}: {found.reason}",
            f"  {brief(found.faults, 1000)}",
            *_confirmed(result),
            f"written to {result.directory / 'found.json'}; replay it:",
            f"  {_replay_command(args, runner, result.directory / 'found.json')}",
            f"  (or its run as it was: harness replay {found.run_id}{outputs})",
        ]
    if inconclusive:
        lines.append(f"note: {inconclusive} run(s) checked nothing: a fault came after every "
                     f"instance had ended or never fired, or the faults ended every instance "
                     f"(is --at within a run?)")
    lines.append(f"record: {result.directory / 'search.jsonl'}; its runs: harness runs --by "
                 f"{result.directory.name}{outputs}")
    return "\n".join(lines)


def _confirmed(result: SearchResult) -> list[str]:
    again = result.confirmation
    if again is None:
        return []
    if again.failed:
        return [f"it failed again when run once more (run {again.run_id})"]
    return [f"note: run once more, it did not fail (run {again.run_id}: {again.outcome}): the "
            f"system fails under it only sometimes"]


def _replay_command(args: argparse.Namespace, runner: str, faults: Path) -> str:
    words = ["harness", "run"] + ([args.target] if args.target else [])
    if args.instances is not None:
        words += ["-i", str(args.instances)]
    for assignment in args.param:
        words += ["-p", assignment]
    if args.composition is not None:
        words += ["--composition", str(args.composition)]
    words += ["--runner", runner]
    if args.timeout is not None:
        words += ["--timeout", f"{args.timeout!r}s"]
    if args.no_fail_fast:
        words.append("--no-fail-fast")
    for root in args.plans or ():
        words += ["--plans", str(root)]
    if args.outputs != DEFAULT_OUTPUTS:
        words += ["--outputs", str(args.outputs)]
    return shlex.join([*words, "--faults", str(faults)])


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be 1 to 10000, not {value}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip())


def _lasting(text: str) -> tuple[float, float]:
    """--duration's value: a span whose shortest is more than nothing."""
    span = _span(text)
    if span[0] < 0.001:  # (a fault's times are drawn to the millisecond)
        raise argparse.ArgumentTypeError(f"{text}: a fault lasts at least 1ms")
    return span


def _span(text: str) -> tuple[float, float]:
    """'1s..10s' -> (1.0, 10.0): two durations, the first at most the second."""
    low, sep, high = text.partition("..")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not FROM..TO (e.g. 1s..10s)")
    span = duration_arg(low.strip()), duration_arg(high.strip())
    if span[0] > span[1] or span[1] > 86_400:
        raise argparse.ArgumentTypeError(f"{text}: FROM must be at most TO, and TO at most a "
                                         f"day")
    return span
