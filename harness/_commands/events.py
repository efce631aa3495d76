"""`harness events RUN`: everything that happens in a run, one line each."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator

import orjson

from harness._commands._args import add_run, print_lines, warn_unreadable
from harness._liveness import run_over, tell_if_aborted
from harness.observe import follow_events, format_event, resolve_run, run_events, started_at

HELP = ("show what happens in a run, one event a line: instance states, signals, barriers, "
        "topics, network changes, faults (--follow: as it happens, until the run ends)")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `harness events`."""
    add_run(parser)
    parser.add_argument(
        "-f", "--follow", action="store_true",
        help="keep printing a live run's events until it ends (or its supervisor is gone)",
    )
    parser.add_argument("--json", action="store_true",
                        help="print each event as its JSON line (events.jsonl, network.jsonl)")


def run(args: argparse.Namespace) -> int:
    """Print the events; 0 on success."""
    run_dir = resolve_run(args.run, args.outputs)
    if args.follow:
        events = follow_events(run_dir, ended=functools.partial(run_over,
                                                                found_by="harness events"),
                               unreadable=warn_unreadable)
    else:
        events = run_events(run_dir, warn_unreadable)
    start = started_at(run_dir)

    def lines() -> Iterator[str]:
        nonlocal start
        for event in events:
            if args.json:
                yield orjson.dumps(event, default=str).decode()
                continue
            if start is None:  # a run that has just begun: run.json comes soon
                start = started_at(run_dir) or event.get("ts")
            yield format_event(event, start)

    code = print_lines(lines(), args.follow)
    if args.follow:
        tell_if_aborted(run_dir)
    return code
