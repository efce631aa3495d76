"""A search for a list of faults that a run does not survive, in real runs.

hypothesis draws lists of faults (`harness.faults.faults`) over the run's instances; each
list is played in a run of its own, and the run's own verdict is the property. A run with
none of the search's faults comes first: a system that fails without them leaves nothing to
search. The first list whose run fails is shrunk: each smaller candidate is another run,
up to a budget of runs. Every list tried is a faults file (`harness run --faults FILE`
reads it) beside the search's record, so the failing run can be replayed as it was played.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from harness._errors import HarnessError
from harness._replay import schedule
from harness._supervisor import RunResult
from harness.faults import ACTIONS, Fault, Member, fault_lists, without_each
from harness.runners._registry import NOT_PLAYED

SEARCH_DIR = "searches"
"""Where, under the outputs, each search keeps its record (its runs are runs like others)."""

SEARCHED = ("partition", "isolate", "shape", "kill", "restart", "pause")
"""What a search draws unless told: network and process faults (less those the runner
cannot play, `NOT_PLAYED`)."""

HELD = ("pause",)
"""Faults that, never undone, leave their instance unable to end at all (it is then still
running at the run's timeout): undone even where faults may last (`Space.heal` False)."""

RunOne = Callable[[Path, str], RunResult]
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
        return fault_lists(members, actions=self.actions, at=self.at, duration=self.duration,
                           states=self.states, max_faults=self.max_faults, heal=self.heal,
                           held=HELD)  # fmt: skip


def actions_for(runner: str, asked: Sequence[str] | None) -> tuple[str, ...]:
    """The actions a search on `runner` draws: `asked`, or `SEARCHED` less what the runner
    cannot play. SearchError (bad input) for an unknown action or one it cannot play."""
    cannot = NOT_PLAYED.get(runner, ())
    if asked is None:
        return tuple(a for a in SEARCHED if a not in cannot)
    if not asked:
        raise SearchError(f"--actions: name one or more of {', '.join(ACTIONS)}")
    for action in asked:
        if action not in ACTIONS:
            raise SearchError(f"--actions: {action!r} is not a fault (one of "
                              f"{', '.join(ACTIONS)})")
        if action in cannot or (action == "heal" and "partition" in cannot):
            raise SearchError(f"--actions: {runner} cannot play {action}")
    return tuple(dict.fromkeys(asked))


class SearchError(HarnessError):
    """A search that cannot start or go on (bad input: exit 2, unless given another)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of the search: the faults it drew and how the run ended."""

    number: int  # 0 for the run without the search's faults, then 1, 2, ...
    phase: str  # "baseline", "search", "shrink" or "confirm" (the smallest list run again)
    faults: tuple[Fault, ...]  # the drawn ones (the run played `Search.fixed` before them)
    file: Path  # the faults file it was run with
    run_id: str
    run_dir: Path
    outcome: str  # "passed", "failed", "inconclusive", "unplayable", "interrupted"
    reason: str | None
    seconds: float  # the run's own length, from its start to its end
    lasted: float  # from its last instance's start to its last one's end (faults' time)

    @property
    def failed(self) -> bool:
        """The run did not survive its faults."""
        return self.outcome == "failed"

    def to_json(self) -> dict[str, Any]:
        """Its line in the search's record (search.jsonl)."""
        return {"try": self.number, "phase": self.phase, "faults": schedule(self.faults)["faults"],
                "file": self.file.name, "run_id": self.run_id, "outcome": self.outcome,
                "reason": self.reason, "seconds": round(self.seconds, 3)}  # fmt: skip


@dataclasses.dataclass
class SearchResult:
    """How a search ended."""

    directory: Path  # its record: search.jsonl, the faults files, found.json
    trials: list[Trial]  # the run without the search's faults first
    found: Trial | None = None  # the run of the smallest failing list, once shrunk
    first: Trial | None = None  # the first run that failed
    stopped: str | None = None  # why it ended early ("interrupted (SIGINT)")
    error: SearchError | None = None  # what ended it early, where it could not go on

    @property
    def baseline(self) -> Trial | None:
        """The run without the search's faults."""
        return self.trials[0] if self.trials else None

    @property
    def confirmation(self) -> Trial | None:
        """The run of the smallest failing list once more, if it was made (the last)."""
        last = self.trials[-1] if self.trials else None
        return last if last is not None and last.phase == "confirm" else None

    @property
    def broken(self) -> bool:
        """The run fails without the search's faults: nothing was searched."""
        return self.baseline is not None and self.baseline.failed

    @property
    def checked_nothing(self) -> bool:
        """Every run of a drawn list was inconclusive: nothing was tested."""
        drawn = self.trials[1:]
        return bool(drawn) and all(t.outcome == "inconclusive" for t in drawn)

    @property
    def exit_code(self) -> int:
        """The error's (2 or 3) when one ended it, 130 when interrupted, 1 when it found a
        failing list (or the run fails without one), 2 when no run of a list checked
        anything, else 0."""
        if self.error is not None:
            return self.error.exit_code
        if self.stopped:
            return 130
        if self.found is not None or self.broken:
            return 1
        return 2 if self.checked_nothing else 0


class _Failed(AssertionError):
    """The run of a list failed: hypothesis shrinks it."""


class _Stop(BaseException):
    """The search ends now: hypothesis must neither shrink nor catch it."""

    def __init__(self, error: SearchError | None = None) -> None:
        super().__init__()
        self.error = error


@dataclasses.dataclass
class Search:
    """A search's course: `run_one` plays a faults file; `fixed` are faults every run plays
    before the drawn ones (a case's own, which a faults file would otherwise replace);
    `progress` is told a line per run; `interrupted` names a signal that came during a run
    (which took it, as the run's own interruption or as one that cut its report short)."""

    run_one: RunOne
    directory: Path
    fixed: tuple[Fault, ...] = ()
    examples: int = 10
    shrink_runs: int = 20
    progress: Callable[[str], None] = lambda _: None
    interrupted: Callable[[], str | None] = lambda: None
    result: SearchResult = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.result = SearchResult(self.directory, [])

    def play(self, fs: tuple[Fault, ...], phase: str | None = None) -> Trial:
        """Run the list `fs` (after `fixed`), record it; _Stop when the search cannot go on.
        Its `phase` follows from the search's course unless given."""
        result = self.result
        if (signal := self.interrupted()) is not None:  # came between runs
            result.stopped = f"interrupted ({signal})"
            raise _Stop()
        n = len(result.trials)
        phase = phase or ("baseline" if not n else "search" if result.first is None
                          else "shrink")  # fmt: skip
        file = self.directory / f"try-{n}.json"
        try:
            _write_faults(file, self.fixed + fs)
        except OSError as e:
            raise _Stop(SearchError(f"the search's record could not be written: {e}", 3)) from e
        first = result.first
        step = {"baseline": "without the search's faults",
                "search": f"list {n} of {self.examples}",
                "shrink": f"shrinking, run {n - (first.number if first else 0)} of at most "
                          f"{self.shrink_runs}",
                "confirm": "the smallest failing list again, to see it fail twice"}[phase]
        self.progress(f"search: {step}" + (f": {brief(fs)}" if fs else ""))
        # Whatever is raised here would be a failure to hypothesis, which would shrink it.
        try:
            run = self.run_one(file, f"harness search {self.directory.name} ({step})")
        except HarnessError as e:
            if (signal := self.interrupted()) is not None:  # (a plan's check it stopped)
                result.stopped = f"interrupted ({signal})"
                raise _Stop() from None
            raise _Stop(SearchError(f"list {n} ({file}) could not be run: {e}",
                                    e.exit_code)) from None
        except Exception as e:
            raise _Stop(SearchError(f"list {n} ({file}) could not be run: "
                                    f"{type(e).__name__}: {e}", 3)) from e
        outcome = run.verdict()
        signal = self.interrupted()
        trial = Trial(n, phase, fs, file, run.run_id, run.run_dir, outcome, run.reason,
                      run.duration_s, _lasted(run))
        result.trials.append(trial)
        try:
            with (self.directory / "search.jsonl").open("ab") as f:
                f.write(orjson.dumps(trial.to_json()) + b"\n")
        except OSError as e:
            raise _Stop(SearchError(f"the search's record could not be written: {e}", 3)) from e
        if outcome == "interrupted" or signal is not None:
            result.stopped = f"interrupted ({signal})" if signal else "interrupted"
            raise _Stop()
        if outcome == "unplayable":
            raise _Stop(SearchError(f"run {run.run_id}: {run.reason} (the harness could not "
                                    f"play it here: leave that action out of --actions, or "
                                    f"give it what it needs)"))
        said = {"failed": "FAILED", "passed": "passed", "inconclusive": "inconclusive (it "
                "checked nothing: a fault came after every instance had ended or never "
                "fired, or the faults ended every instance)"}[outcome]  # fmt: skip
        why = f": {trial.reason}" if outcome != "passed" and trial.reason else ""
        self.progress(f"search: run {run.run_id} {said} in {trial.seconds:.1f} s{why}")
        return trial


def search(course: Search, members: Sequence[Member], space: Space, *,
           seed: int = 0) -> SearchResult:
    """Run the run without the drawn faults, then up to `course.examples` fault lists drawn
    from `space` over `members` until one fails, then shrink it in at most
    `course.shrink_runs` more runs (hypothesis's, then the smallest without each of its
    faults), and run the smallest once more. Each list tried is written to the search's
    directory (try-N.json) and recorded (search.jsonl); the smallest failing one to
    found.json, with the fixed faults before it (the file replays
    the run as it was). An interruption ends it with what it found so far (`stopped`); so
    does what keeps it from going on (a fault the harness cannot play here, a run that
    cannot be made, a record that cannot be written: `error`)."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis.internal.conjecture import engine

    course.directory.mkdir(parents=True, exist_ok=True)
    result = course.result
    done: dict[str, Trial] = {}  # by the list's JSON: hypothesis may draw one again

    @settings(max_examples=course.examples, deadline=None, database=None, derandomize=False,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
              print_blob=False, verbosity=Verbosity.quiet,
              report_multiple_bugs=False)  # after the first failure, only shrink it  # fmt: skip
    @given(space.strategy(members))
    def survives(fs: tuple[Fault, ...]) -> None:
        key = _key(fs)
        trial = done.get(key)
        if trial is None:
            # (runs are kept for `_without_each`: one for each fault of the longest list but
            # one; the smallest hypothesis reaches may hold more faults than the first)
            kept = space.max_faults - 1
            if result.first is not None and _shrunk(result) >= course.shrink_runs - kept:
                return  # the budget is spent: what was not run is not a smaller failure
            trial = done[key] = course.play(fs)
        if trial.failed:
            result.first = result.first or trial
            result.found = trial  # hypothesis ends on the smallest one
            raise _Failed(trial.reason)

    # Shrinking stops at its budget of runs, not at hypothesis's own 5 minutes of it (each
    # run takes seconds: a real search stopped after a few runs, the list not the smallest).
    shrinking_s = engine.MAX_SHRINKING_SECONDS
    engine.MAX_SHRINKING_SECONDS = 10**9  # (an int: hypothesis types it so)
    try:
        baseline = course.play(())
        if baseline.outcome == "inconclusive":
            raise _Stop(SearchError(f"the run without the search's faults checked nothing "
                                    f"({baseline.reason}): no list could test anything"))
        if baseline.outcome == "passed" and space.at[0] >= baseline.lasted:
            raise _Stop(SearchError(
                f"--at starts at {space.at[0]:g}s, but the instances of the run without the "
                f"search's faults ended {baseline.lasted:.1f} s after they had all started: "
                f"every fault would come after their end"))
        if baseline.outcome == "passed" and space.at[1] > baseline.lasted:
            course.progress(
                f"search: note: the instances of the run without the search's faults ended "
                f"{baseline.lasted:.1f} s after they had all started, and --at reaches "
                f"{space.at[1]:g}s: a list whose faults come later tests nothing (an --at "
                f"within {baseline.lasted:.1f} s tests more)")
        if not baseline.failed:
            hypothesis.seed(seed)(survives)()
    except _Failed:
        pass
    except KeyboardInterrupt:  # a library caller's Ctrl-C between runs
        result.stopped = "interrupted"
    except _Stop as stop:
        result.error = stop.error
    finally:
        engine.MAX_SHRINKING_SECONDS = shrinking_s
    if result.found is not None and result.stopped is None and result.error is None:
        try:
            _without_each(course, done)
            # a system that fails only sometimes: its smallest list may pass again
            course.play(result.found.faults, "confirm")
        except KeyboardInterrupt:
            result.stopped = "interrupted"
        except _Stop as stop:
            result.error = stop.error
    if result.stopped is None and (signal := course.interrupted()) is not None:
        result.stopped = f"interrupted ({signal})"  # after the last run, or while shrinking
    if result.found is not None:
        with contextlib.suppress(OSError):  # (said already, if the record cannot be written)
            _write_faults(course.directory / "found.json", course.fixed + result.found.faults)
    return result


def _key(fs: Sequence[Fault]) -> str:
    """A fault list's identity: hypothesis may draw one again, which is not run again."""
    return json.dumps(schedule(fs), sort_keys=True)


def _shrunk(result: SearchResult) -> int:
    """The runs made since the first failure (shrinking it)."""
    return 0 if result.first is None else len(result.trials) - 1 - result.first.number


def _without_each(course: Search, done: dict[str, Trial]) -> None:
    """The smallest failing list without each of its faults (`without_each`), while the
    budget of shrinking runs lasts; the shortest that still fails becomes `found`."""
    result = course.result

    def fails(fewer: tuple[Fault, ...]) -> bool | None:
        trial = done.get(key := _key(fewer))
        if trial is None:
            if _shrunk(result) >= course.shrink_runs:
                return None
            trial = done[key] = course.play(fewer, "shrink")
        if trial.failed:
            result.found = trial
        return trial.failed

    assert result.found is not None
    without_each(result.found.faults, fails)


def _write_faults(path: Path, faults: Sequence[Fault]) -> None:
    """`faults` as a faults file (`harness run --faults FILE`)."""
    path.write_text(json.dumps(schedule(faults), indent=2) + "\n")


def _lasted(run: RunResult) -> float:
    """From the run's last instance start to its last instance end (the span a fault's `at`
    counts in, from when every instance has started); the run's length where unknown."""
    starts = [i.started for i in run.instances if i.started is not None]
    ends = [i.ended for i in run.instances if i.ended is not None]
    return max(ends) - max(starts) if starts and ends else run.duration_s


def brief(fs: Sequence[Fault], width: int = 160) -> str:
    """A fault list on one line (each as its JSON table), cut to `width` characters."""
    text = "; ".join(json.dumps(f.to_data(), separators=(",", ":")) for f in fs)
    return text if len(text) <= width else text[: width - 1] + "…"
