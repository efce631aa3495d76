"""`harness fault [RUN] ACTION ...`: play a fault on a running run, now.

Every action of the fault vocabulary (harness.faults.ACTIONS) with its targets and
arguments as options, or any fault as its JSON table (`--json TABLE`). The fault is checked
here first (bad input: exit 2), then sent over the run's control channel (harness._control);
the run refuses it (exit 1) when it cannot meet it, e.g. a group it does not have.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson

from harness._commands._args import add_run
from harness._control import ANSWER_S, ControlError, ask_fault, read_token
from harness._errors import UsageError
from harness._liveness import mark_aborted
from harness.faults import ACTIONS, EXPECTATIONS, PARTITION_KINDS, Fault
from harness.observe import RunRecord, load_run, resolve_run
from harness.plans import parse_duration

HELP = "play a fault on a running run now (default: the latest): kill, pause, partition, ..."

EPILOG = """\
examples:
  harness fault kill --group miners --count 2 --seed 1
  harness fault latest restart --instance single/1 --grace 1s
  harness fault pause --instance single/1 --duration 5s
  harness fault partition --instance single/0 --kind sides
  harness fault shape --group a --latency 100ms --loss 5
  harness fault skew --instance single/2 --offset -300ms
  harness fault heal
  harness fault --json '{"action": "kill", "targets": {"role": "leader"}, "duration": "2s"}'

It prints what the run chose in one line (--json: the record, as faults.jsonl keeps it).
Exit codes: 0 played (or scheduled, with --at); 1 the run could not be reached, refused or
failed the fault, or none of the instances it chose was running (the line ends "missed (not
running): ..."); 2 bad input, no such run, or a run that is not running."""

# Options of the actions' own arguments: which actions take them.
_ONLY = {
    "latency": ("shape",), "jitter": ("shape",), "loss": ("shape",), "bandwidth": ("shape",),
    "corrupt": ("shape",), "duplicate": ("shape",), "reorder": ("shape",),
    "to_group": ("shape",), "to_role": ("shape",), "to_instance": ("shape",),
    "kind": ("partition",), "one_way": ("partition",), "others_group": ("partition",),
    "others_role": ("partition",), "others_instance": ("partition",),
    "grace": ("stop", "restart"), "offset": ("skew",), "drift": ("skew",),
    "cpu": ("limit", "hog"), "memory": ("limit",),
}  # fmt: skip
_SHAPE = {"latency": "latency_ms", "jitter": "jitter_ms", "loss": "loss_pct",
          "bandwidth": "bandwidth_bps", "corrupt": "corrupt_pct",
          "duplicate": "duplicate_pct", "reorder": "reorder_pct"}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)?\s*$", re.IGNORECASE)
_RATE_UNITS = {None: 1, "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `harness fault`."""
    add_run(parser)
    parser.add_argument("action", nargs="?", metavar="ACTION",
                        help=f"one of {', '.join(ACTIONS)} (RUN may be left out)")
    # `harness fault RUN --outputs DIR kill`: argparse takes both positionals before the
    # first option, and ACTION after it was "unrecognized" (harness._cli takes it)
    parser.set_defaults(late_positional="action")
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # `--offset -300ms`: a negative duration is a value, not an option (argparse otherwise
    # takes only plain negative numbers for values; `--offset=-300ms` works regardless).
    parser._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(ms|s|m|h)?$")

    who = parser.add_argument_group("targets (which instances; heal takes none)")
    who.add_argument("--group", action="append", default=[], help="of this group (repeatable)")
    who.add_argument("--role", action="append", default=[], help="with this role (repeatable)")
    who.add_argument("--instance", action="append", default=[], metavar="ID",
                     help="this instance, e.g. single/1 (repeatable)")
    who.add_argument("--topic", help="the instance(s) the latest item of this sync topic names")
    who.add_argument("--count", type=int, help="this many of them, drawn with --seed")
    who.add_argument("--percentage", type=float, help="this percentage of them (rounded up)")
    who.add_argument("--seed", type=int, help="the seed of the random choice (default 0)")

    when = parser.add_argument_group("when and how long")
    when.add_argument("--at", metavar="WHEN",
                      help="a delay from now (e.g. 5s), or STATE:COUNT: once COUNT instances "
                           "signalled STATE (default: now)")
    when.add_argument("--duration", help="undo the fault after this long (e.g. 2s)")
    when.add_argument("--expect", choices=EXPECTATIONS,
                      help="process faults: what the targets must do (default: may_die for "
                           "kill or stop without --duration, else recover)")

    shape = parser.add_argument_group("shape: the link shape of the targets' traffic")
    shape.add_argument("--latency", type=_millis, metavar="DELAY",
                       help="added delay, e.g. 100ms (a bare number: milliseconds)")
    shape.add_argument("--jitter", type=_millis, metavar="DELAY", help="its spread, as --latency")
    shape.add_argument("--loss", type=float, metavar="PCT", help="percent of packets lost")
    shape.add_argument("--bandwidth", type=_rate, metavar="RATE",
                       help="rate cap, e.g. 10mbit, 500kbit or bits per second")
    shape.add_argument("--corrupt", type=float, metavar="PCT", help="percent corrupted")
    shape.add_argument("--duplicate", type=float, metavar="PCT", help="percent duplicated")
    shape.add_argument("--reorder", type=float, metavar="PCT", help="percent reordered")
    for side, what in (("to", "only the traffic to these (default: to every instance)"),
                       ("others", "partition --kind sides: the other side (default: the "
                                  "rest)")):  # fmt: skip
        for key, metavar in (("group", "GROUP"), ("role", "ROLE"), ("instance", "ID")):
            shape.add_argument(f"--{side}-{key}", action="append", default=[],
                               metavar=metavar, help=f"{what}: {key} (repeatable)")
            what = "as above"

    args = parser.add_argument_group("the other actions' arguments")
    args.add_argument("--kind", choices=PARTITION_KINDS, help="partition: how to cut")
    args.add_argument("--one-way", action="store_true",
                      help="partition --kind sides: cut only what the targets send")
    args.add_argument("--grace", help="stop, restart: SIGTERM, then SIGKILL after this long")
    args.add_argument("--offset", metavar="DELAY",
                      help="skew: the clock's offset, signed (e.g. -300ms, 2s)")
    args.add_argument("--drift", type=float, help="skew: extra seconds per second")
    args.add_argument("--cpu", type=_number, metavar="N",
                      help="limit: CPUs' worth of time (e.g. 0.5); hog: busy loops (default 1)")
    args.add_argument("--memory", metavar="SIZE", help="limit: memory cap, e.g. 64MiB")

    parser.add_argument("--json", nargs="?", const=True, metavar="TABLE",
                        help="print the run's record of the fault as JSON; with TABLE (a "
                             "fault's JSON table, as --faults FILE takes them) play that "
                             "fault instead of ACTION and options")


def _answer_within(fault: Fault) -> float:
    """How long the run may take to answer: a stop or restart is played once its instances
    are down, which their grace may take (a grace of 90 s was "the run did not answer")."""
    grace = fault.args.get("grace", 0.0) if fault.action in ("stop", "restart") else 0.0
    return ANSWER_S + float(grace)


def run(args: argparse.Namespace) -> int:
    """Play the fault; 0 once the run has played (or scheduled) it, 1 when it reached none
    of the instances it chose (none was running)."""
    _positionals(args)
    table = _table(args)
    fault = Fault.from_data(table)  # bad input is found here, before the run is asked
    run_dir = resolve_run(args.run, args.outputs)
    record = _running(run_dir)
    sock = run_dir if record.sock_dir is None else Path(record.sock_dir)
    try:
        chosen = ask_fault(sock / "sync.sock", read_token(run_dir), fault.to_data(),
                           by=f"harness fault pid {os.getpid()}", timeout=_answer_within(fault))
    except ControlError:
        _running(run_dir)  # it may have ended meanwhile: then say that
        raise
    if args.json:
        sys.stdout.write(orjson.dumps(chosen).decode() + "\n")
    else:
        print(_summary(chosen))
    return 1 if _reached_nobody(chosen) else 0


def _positionals(args: argparse.Namespace) -> None:
    """RUN and ACTION as meant: `harness fault kill ...` (no RUN), and `harness fault
    --json kill ...`, where argparse took the word after --json for its TABLE."""
    if isinstance(args.json, str) and args.json.lstrip()[:1] not in ("{", "["):
        words = [args.json, *([args.run] if args.run != "latest" else []),
                 *([args.action] if args.action is not None else [])]
        if len(words) > 2:
            raise UsageError(f"one RUN and one ACTION at most, not {' '.join(words)}")
        args.json = True
        args.run, args.action = (words if len(words) == 2 else ("latest", words[0])
                                 if words[0] in ACTIONS else (words[0], None))
    if args.action is None and args.run in ACTIONS:
        args.action, args.run = args.run, "latest"


def _running(run_dir: Path) -> RunRecord:
    """The run's record; UsageError if it is not running (a run whose supervisor is gone
    is marked aborted here)."""
    mark_aborted(run_dir, "harness fault")
    record = load_run(run_dir)
    if record.outcome != "running":
        state = record.outcome or "its run.json records no outcome"
        raise UsageError(f"run {record.run_id} is not running ({state}): faults go only to a "
                         f"live run")
    return record


def _table(args: argparse.Namespace) -> dict[str, Any]:
    """The fault's table, from --json TABLE or from ACTION and the options."""
    given = [k for k in (*_ONLY, "group", "role", "instance", "topic", "count", "percentage",
                         "seed", "at", "duration", "expect")
             if getattr(args, k) not in (None, [], False)]  # fmt: skip
    if isinstance(args.json, str):
        if args.action is not None or given:
            raise UsageError("give ACTION and its options, or --json TABLE, not both")
        try:
            given_table = orjson.loads(args.json)
        except orjson.JSONDecodeError as e:
            raise UsageError(f"--json: the fault's table is not JSON ({e})") from None
        if not isinstance(given_table, dict):
            raise UsageError("--json: the fault's table must be a JSON object")
        return {"at": 0, **given_table}
    if args.action is None:
        named = "" if args.run == "latest" else f"{args.run!r} is no action; "
        raise UsageError(f"{named}give [RUN] ACTION ({', '.join(ACTIONS)}) or --json TABLE")
    if args.action not in ACTIONS:
        raise UsageError(f"unknown action {args.action!r}; one of {', '.join(ACTIONS)}")
    for key in given:
        only = _ONLY.get(key)
        if only is not None and args.action not in only:
            raise UsageError(f"--{key.replace('_', '-')} goes only with {' or '.join(only)}, "
                             f"not {args.action}")
    table: dict[str, Any] = {"action": args.action, "at": _at(args.at)}
    targets = _selector(args.group, args.role, args.instance)
    for key in ("topic", "count", "percentage", "seed"):
        if getattr(args, key) is not None:
            targets[key] = getattr(args, key)
    if targets:
        table["targets"] = targets
    for key in ("duration", "expect", "kind", "grace", "offset", "drift", "cpu", "memory"):
        if getattr(args, key) is not None:
            table[key] = getattr(args, key)
    if args.one_way:
        table["one_way"] = True
    shape = {field: getattr(args, opt) for opt, field in _SHAPE.items()
             if getattr(args, opt) is not None}  # fmt: skip
    if args.action == "shape":
        table["shape"] = shape  # an empty one is refused by the vocabulary, naming the fields
    for side in ("to", "others"):
        selector = _selector(getattr(args, f"{side}_group"), getattr(args, f"{side}_role"),
                             getattr(args, f"{side}_instance"))
        if selector:
            table[side] = selector
    return table


def _selector(groups: list[str], roles: list[str], instances: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, names in (("group", groups), ("role", roles), ("instances", instances)):
        if names:
            out[key] = names
    return out


def _at(text: str | None) -> Any:
    """--at: a delay (kept as text for the vocabulary to check) or STATE:COUNT."""
    if text is None:
        return 0
    state, colon, count = text.rpartition(":")
    if not colon:  # no duration holds a colon
        return text
    if not count.strip().isdigit():
        raise UsageError(f"--at {text!r}: the count after the colon must be a whole number "
                         "(STATE:COUNT)")
    return {"state": state, "count": int(count)}


def _millis(text: str) -> float:
    """A delay in milliseconds: "100ms", "0.1s", or a bare number of milliseconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text) * 1000
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a delay (e.g. 100ms, 0.1s, "
                                         f"or 100 for milliseconds)") from None


def _rate(text: str) -> int:
    """A rate in bits per second: "10mbit", "500kbit", "1gbit" or a number."""
    m = _RATE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate (e.g. 10mbit, 500kbit, "
                                         f"or bits per second)")
    # exact: a float would turn 9007199254740993 into 9007199254740992 unsaid
    bits = Fraction(m.group(1)) * _RATE_UNITS[m.group(2) and m.group(2).lower()]
    if bits.denominator != 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bits per second")
    return int(bits)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _summary(rec: dict[str, Any]) -> str:
    """One line: the fault's name, what it did to whom, and when it is undone."""
    text = f"{rec.get('fault', 'fault')}: {rec.get('action')}"
    chosen = rec.get("chosen")
    if chosen:
        text += " " + ", ".join(map(str, chosen))
    directions = rec.get("directions")
    if directions:
        text += f" ({len(directions)} direction{'s' if len(directions) != 1 else ''})"
    at = rec.get("at")
    if isinstance(at, dict):
        text += f", scheduled: once {at.get('count')} instances signalled {at.get('state')!r}"
    elif at:
        text += f", scheduled in {at:g} s"
    if rec.get("duration") is not None:
        text += f", undone after {rec['duration']:g} s"
    missed = rec.get("missed")
    if missed:  # chosen, but not running when it came: nothing was done to them
        text += f"; missed (not running): {', '.join(map(str, missed))}"
    return text


def _reached_nobody(rec: dict[str, Any]) -> bool:
    """Every instance the fault chose was missed (none was running)."""
    chosen, missed = rec.get("chosen") or [], rec.get("missed") or []
    return bool(chosen) and set(map(str, chosen)) <= set(map(str, missed))
