"""A search for a list of faults that a run does not survive, in real runs.

hypothesis draws lists of faults (`harness.faults.faults`) over the run's instances; each
list is played in a run of its own, and the run's own verdict is the property. The first
list whose run fails is shrunk: each smaller candidate is another run, up to a budget of
runs. Every list tried is a faults file (`harness run --faults FILE` reads it) beside the
search's record, so the failing run can be replayed as it was played.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from harness._conductor import NEVER_PLAYED
from harness._errors import HarnessError
from harness._replay import schedule
from harness._supervisor import NOTHING_CHECKED, RunResult
from harness.faults import ACTIONS, Fault, Member, faults
from harness.observe._jsonl import read_jsonl
from harness.runners._registry import NOT_PLAYED

SEARCH_DIR = "searches"
"""Where, under the outputs, each search keeps its record (its runs are runs like others)."""

SEARCHED = ("partition", "isolate", "shape", "kill", "restart", "pause")
"""What a search draws unless told: network and process faults (less those the runner
cannot play, `NOT_PLAYED`)."""

_UNDOABLE = ("shape", "partition", "isolate", "kill", "stop", "pause", "skew", "limit", "hog")

RunOne = Callable[[Path], RunResult]
"""Runs the search's run with the faults of a file; its result."""


@dataclasses.dataclass(frozen=True)
class Space:
    """What a search draws: one to `max_faults` faults of `actions`, each at a time in
    `at` (seconds after the instances start) or, with `states`, sometimes once some
    instances signalled one of them, undone after a time in `duration`; with `heal`, every
    fault that can be undone is (the run must then survive its end too)."""

    actions: tuple[str, ...]
    at: tuple[float, float] = (1.0, 10.0)
    duration: tuple[float, float] = (1.0, 5.0)
    max_faults: int = 2
    heal: bool = True
    states: tuple[str, ...] = ()

    def strategy(self, members: Sequence[Member]) -> Any:
        """The hypothesis strategy of fault lists over `members`."""
        from hypothesis import strategies as st

        one = faults(members, actions=self.actions, at=self.at, duration=self.duration,
                     states=self.states)
        if self.heal:  # an undrawn duration shrinks to the shortest undo
            short = self.duration[0]
            one = one.map(lambda f: f if f.duration is not None or f.action not in _UNDOABLE
                          else dataclasses.replace(f, duration=short))  # fmt: skip
        return st.lists(one, min_size=1, max_size=self.max_faults).map(tuple)


def actions_for(runner: str, asked: Sequence[str] | None) -> tuple[str, ...]:
    """The actions a search on `runner` draws: `asked`, or `SEARCHED` less what the runner
    cannot play. HarnessError (bad input) for an unknown action or one it cannot play."""
    cannot = NOT_PLAYED.get(runner, ())
    if asked is None:
        return tuple(a for a in SEARCHED if a not in cannot)
    if not asked:
        raise SearchError(f"--actions: name one or more of {', '.join(ACTIONS)}")
    for action in asked:
        if action not in ACTIONS:
            raise SearchError(f"--actions: {action!r} is not a fault (one of "
                              f"{', '.join(ACTIONS)})")
        if action in cannot:
            raise SearchError(f"--actions: {runner} cannot play {action}")
    return tuple(dict.fromkeys(asked))


class SearchError(HarnessError):
    """A search that cannot start or go on (bad input: exit 2, unless given another)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of the search: the faults it played and how it ended."""

    number: int  # 1 for the search's first run
    shrinking: bool  # made while shrinking a failure (else while searching)
    faults: tuple[Fault, ...]
    file: Path  # the faults file it was run with
    run_id: str
    run_dir: Path
    outcome: str  # "passed", "failed", or "inconclusive" (`_verdict`)
    reason: str | None
    seconds: float

    @property
    def failed(self) -> bool:
        """The run did not survive its faults."""
        return self.outcome == "failed"

    def to_json(self) -> dict[str, Any]:
        """Its line in the search's record (search.jsonl)."""
        return {"try": self.number, "phase": "shrink" if self.shrinking else "search",
                "faults": schedule(self.faults)["faults"], "file": self.file.name,
                "run_id": self.run_id, "outcome": self.outcome, "reason": self.reason,
                "seconds": round(self.seconds, 3)}  # fmt: skip


@dataclasses.dataclass
class SearchResult:
    """How a search ended."""

    directory: Path  # its record: search.jsonl, the faults files, found.json
    trials: list[Trial]
    found: Trial | None = None  # the run of the smallest failing list, once shrunk
    first: Trial | None = None  # the first run that failed
    stopped: str | None = None  # why it ended early (an interruption)

    @property
    def exit_code(self) -> int:
        """1 when it found a failing list, 130 when interrupted, else 0."""
        return 130 if self.stopped else 1 if self.found else 0


class _Failed(AssertionError):
    """The run of a list failed: hypothesis shrinks it."""


class _Stop(BaseException):
    """The search ends now: hypothesis must neither shrink nor catch it."""

    def __init__(self, error: SearchError | None = None) -> None:
        super().__init__()
        self.error = error


def search(
    run_one: RunOne,
    members: Sequence[Member],
    space: Space,
    directory: Path,
    *,
    examples: int = 10,
    shrink_runs: int = 20,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> SearchResult:
    """Run up to `examples` fault lists drawn from `space` over `members` (`run_one` plays
    each) until one fails, then shrink it in at most `shrink_runs` more runs. Each list
    tried is written to `directory` (try-N.json) and recorded (search.jsonl); the smallest
    failing one to found.json. `progress` is told a line per run. SearchError when a fault
    cannot be played here or a run cannot be made; an interruption ends it with what it
    found so far."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis.errors import Flaky

    directory.mkdir(parents=True, exist_ok=True)
    result = SearchResult(directory, [])
    done: dict[str, Trial] = {}  # by the list's JSON: hypothesis may draw one again

    def play(fs: tuple[Fault, ...]) -> Trial:
        n = len(result.trials) + 1
        shrinking = result.first is not None
        file = directory / f"try-{n}.json"
        file.write_text(json.dumps(schedule(fs), indent=2) + "\n")
        step = (f"shrinking, run {n - result.first.number} of at most {shrink_runs}"
                if result.first is not None else f"list {n} of {examples}")
        progress(f"search: {step}: {brief(fs)}")
        began = time.monotonic()
        try:
            run = run_one(file)
        except HarnessError as e:  # hypothesis would take it for a failure, and shrink it
            raise _Stop(SearchError(f"list {n} ({file}) could not be run: {e}",
                                    e.exit_code)) from None
        outcome = _verdict(run)
        trial = Trial(n, shrinking, fs, file, run.run_id, run.run_dir, outcome, run.reason,
                      time.monotonic() - began)
        result.trials.append(trial)
        with (directory / "search.jsonl").open("ab") as f:
            f.write(orjson.dumps(trial.to_json()) + b"\n")
        if outcome == "interrupted":
            result.stopped = "interrupted"
            raise _Stop()
        if run.exit_code in (2, 3):  # the run could not be made here: no list would be
            raise _Stop(SearchError(f"run {run.run_id} could not be made: {run.reason}",
                                    run.exit_code))
        if outcome == "unplayable":
            raise _Stop(SearchError(f"run {run.run_id}: {run.reason} (leave that action out "
                                    f"of --actions, or fix what it needs)"))
        said = {"failed": "FAILED", "passed": "passed", "inconclusive": "inconclusive (it "
                "checked nothing: does --at reach past the run's end?)"}[outcome]  # fmt: skip
        why = f": {trial.reason}" if outcome != "passed" and trial.reason else ""
        progress(f"search: run {run.run_id} {said} in {trial.seconds:.1f} s{why}")
        return trial

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
              print_blob=False, verbosity=Verbosity.quiet)  # fmt: skip
    @given(space.strategy(members))
    def survives(fs: tuple[Fault, ...]) -> None:
        key = json.dumps(schedule(fs), sort_keys=True)
        trial = done.get(key)
        if trial is None:
            if result.first is not None and len(result.trials) - result.first.number >= (
                shrink_runs
            ):
                return  # the budget is spent: what was not run cannot be smaller and failing
            trial = done[key] = play(fs)
        if trial.failed:
            result.first = result.first or trial
            result.found = trial  # hypothesis ends on the smallest one
            raise _Failed(trial.reason)

    try:
        hypothesis.seed(seed)(survives)()
    except (_Failed, Flaky):
        pass
    except KeyboardInterrupt:  # between runs (a run's own Ctrl-C ends it "interrupted")
        result.stopped = "interrupted"
    except _Stop as stop:
        if stop.error is not None:
            raise stop.error from None
    if result.found is not None:
        (directory / "found.json").write_text(json.dumps(schedule(result.found.faults),
                                                         indent=2) + "\n")
    return result


def _verdict(run: RunResult) -> str:
    """What a run says of its fault list: "passed", "failed" (the system did not survive
    it), "inconclusive" (it failed only because nothing was checked: a fault came after
    every instance had ended, or the faults ended every one), "unplayable" (a fault could
    not be played: the harness's or the machine's failure, not the system's), or
    "interrupted"."""
    if run.outcome in ("passed", "interrupted"):
        return run.outcome
    if run.reason == NOTHING_CHECKED:
        return "inconclusive"
    path = run.run_dir / "faults.jsonl"
    for entry in read_jsonl(path) if path.exists() else ():
        reason = entry.get("reason")
        if entry.get("step") != "failed" or not isinstance(reason, str):
            continue
        if not reason.endswith(NEVER_PLAYED):
            return "unplayable"
        if reason == run.reason:
            return "inconclusive"
    return "failed"


def brief(fs: Sequence[Fault], width: int = 160) -> str:
    """A fault list on one line (each as its JSON table), cut to `width` characters."""
    text = "; ".join(json.dumps(f.to_data(), separators=(",", ":")) for f in fs)
    return text if len(text) <= width else text[: width - 1] + "…"
