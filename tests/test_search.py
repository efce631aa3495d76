"""`harness search`: fault lists drawn over a run's instances, each played in a run, the
first that fails shrunk in more runs to the smallest, written and printed to replay.

The search's logic is tested on a stand-in for the runs (each "run" judges its fault list
by a rule, as a system would by its own checks); the command on real runs of
tests/plans/faulty's `fragile` case, which fails once an instance is started again."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from harness._conductor import NEVER_FIRED, NEVER_PLAYED
from harness._errors import UsageError
from harness._search import Search, SearchError, SearchResult, Space, actions_for, search
from harness._supervisor import NOTHING_CHECKED, RunResult
from harness.faults import Fault, Member, load_faults
from tests.conftest import ROOT, harness_cli

MEMBERS = [Member(f"g/{i}", "g", None) for i in range(4)]
SPACE = Space(("kill", "pause", "partition"), at=(0.0, 10.0), duration=(1.0, 5.0),
              max_faults=3, states=("ready",))


class Runs:
    """A stand-in for `harness run`: each call is a run of the faults of a file, judged by
    `verdict` (the faults -> (exit code, reason); exit 0 passes); what it leaves in the run
    directory is `faults_record`'s lines (faults.jsonl)."""

    def __init__(self, tmp_path: Path,
                 verdict: Callable[[tuple[Fault, ...]], tuple[int, str | None]]) -> None:
        self.tmp_path, self.verdict = tmp_path, verdict
        self.played: list[tuple[Fault, ...]] = []
        self.origins: list[str] = []
        self.faults_record: list[dict[str, object]] = []

    def __call__(self, file: Path, origin: str) -> RunResult:
        faults = load_faults(file)
        self.played.append(faults)
        self.origins.append(origin)
        code, reason = self.verdict(faults)
        run_id = f"run-{len(self.played)}"
        run_dir = self.tmp_path / "outputs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "faults.jsonl").write_bytes(
            b"".join(orjson.dumps(line) + b"\n" for line in self.faults_record))
        outcome = {0: "passed", 130: "interrupted"}.get(code, "failed")
        return RunResult(run_id, run_dir, outcome, code, reason, [], 1.0)


def _kills(faults: tuple[Fault, ...]) -> tuple[int, str | None]:
    """A system that does not survive a kill (any other fault, it does)."""
    if any(f.action == "kill" for f in faults):
        return 1, "1 of 4 failed; first: g/0: crashed"
    return 0, None


def _search(runs: Runs, tmp_path: Path, seed: int = 3, **kw: Any) -> SearchResult:
    kw.setdefault("examples", 30)
    return search(Search(runs, tmp_path / "search", **kw), MEMBERS, SPACE, seed=seed)


def _late_kills(faults: tuple[Fault, ...]) -> tuple[int, str | None]:
    """A system that does not survive a kill from 3 s on."""
    if any(f.action == "kill" and isinstance(f.at, float) and f.at >= 3 for f in faults):
        return 1, "1 of 4 failed; first: g/2: crashed"
    return 0, None


def test_a_failing_list_is_shrunk_to_the_smallest_and_written_to_replay(tmp_path: Path) -> None:
    runs = Runs(tmp_path, _late_kills)
    lines: list[str] = []
    # (enough lists that one fails, whatever the worker's random state left by other tests)
    result = _search(runs, tmp_path, shrink_runs=200, progress=lines.append, examples=300)
    assert result.exit_code == 1 and result.found is not None and result.first is not None
    # The run without the search's faults came first, and passed.
    assert runs.played[0] == () and result.trials[0].outcome == "passed"
    # The smallest list that fails: no longer than the first, its kill of one instance at
    # the earliest time that fails; and every run of the search is recorded.
    assert len(result.found.faults) <= len(result.first.faults)
    kill = next(f for f in result.found.faults if _late_kills((f,))[0])
    assert kill.action == "kill" and len(kill.targets.instances) == 1, kill
    assert isinstance(kill.at, float) and 3.0 <= kill.at <= 3.01, kill
    assert load_faults(tmp_path / "search" / "found.json") == result.found.faults
    record = [json.loads(line) for line in (tmp_path / "search/search.jsonl").open()]
    assert len(record) == len(runs.played) == len(result.trials)
    assert [r["run_id"] for r in record] == [t.run_id for t in result.trials]
    for line, faults in zip(record, runs.played, strict=True):
        assert load_faults(tmp_path / "search" / line["file"]) == faults
        assert line["outcome"] == ("failed" if _late_kills(faults)[0] else "passed")
    phases = [r["phase"] for r in record]
    assert phases[0] == "baseline" and phases[-1] == "confirm"
    assert set(phases[result.first.number + 1:-1]) <= {"shrink"}, phases
    # No list was run twice (hypothesis draws some again: they are not run again), but the
    # smallest, once more, to see it fail again.
    keys = [json.dumps([f.to_data() for f in fs], sort_keys=True) for fs in runs.played]
    assert len(set(keys)) == len(keys) - 1 and keys[-1] == keys[result.found.number]
    assert sum("FAILED" in line for line in lines) == sum(t.failed for t in result.trials)
    # Each run is told which search made it, and as what (run.json's `origin`).
    n = result.first.number
    assert runs.origins[0] == "harness search search (without the search's faults)"
    assert runs.origins[n] == f"harness search search (list {n} of 300)"
    assert runs.origins[n + 1].startswith("harness search search (shrinking, run 1 of ")


@pytest.mark.parametrize("seed", range(16))
def test_a_fault_the_failure_does_not_need_is_left_out(tmp_path: Path, seed: int) -> None:
    """hypothesis alone kept a fault before the kill that matters in 7 of these 16 seeds:
    the search then tries the list without each of its faults."""
    runs = Runs(tmp_path, _late_kills)
    result = _search(runs, tmp_path, seed=seed, shrink_runs=200, examples=300)
    assert result.found is not None and result.first is not None
    (kill,) = result.found.faults
    assert kill.action == "kill" and _late_kills((kill,))[0]
    assert result.confirmation is not None and result.confirmation.faults == (kill,)


def test_the_runs_without_each_fault_keep_to_the_budget(tmp_path: Path) -> None:
    """With a budget of 1 shrinking run and lists of at most 2 faults, hypothesis gets none
    of it: the one run tries the first failing list, of 2 faults, without one."""
    space = dataclasses.replace(SPACE, max_faults=2)
    for seed in range(40):  # one whose first failing list has 2 faults
        result = search(Search(Runs(tmp_path / str(seed), _late_kills), tmp_path / f"s{seed}",
                               examples=30, shrink_runs=1), MEMBERS, space, seed=seed)
        if result.first is not None and len(result.first.faults) == 2:
            break
    else:
        pytest.fail("no seed drew a failing list of 2 faults first")
    shrinking = [t for t in result.trials if t.phase == "shrink"]
    assert len(shrinking) == 1 and len(shrinking[0].faults) == 1, shrinking


def test_an_interruption_after_hypothesis_ends_the_search_with_what_it_found(
    tmp_path: Path,
) -> None:
    """A Ctrl-C in a run after hypothesis's (the list without a fault, or the smallest
    once more) is a library caller's KeyboardInterrupt: the search ends interrupted, its
    smallest list written, as it does during hypothesis's own runs."""
    def interrupted_after_the_first_failure(faults: tuple[Fault, ...]) -> tuple[int, str | None]:
        if any(t.failed for t in course.result.trials):
            raise KeyboardInterrupt
        return _kills(faults)

    space = dataclasses.replace(SPACE, max_faults=2)
    course = Search(Runs(tmp_path, interrupted_after_the_first_failure), tmp_path / "s",
                    shrink_runs=1)  # (all of it kept for the run without a fault)
    result = search(course, MEMBERS, space)
    assert result.stopped == "interrupted" and result.exit_code == 130
    assert result.found is not None and result.found is result.first
    assert load_faults(tmp_path / "s" / "found.json") == result.found.faults


def test_shrinking_stops_at_its_budget_of_runs(tmp_path: Path) -> None:
    runs = Runs(tmp_path, _kills)
    result = _search(runs, tmp_path, shrink_runs=2)
    assert result.first is not None and result.found is not None
    assert sum(t.phase == "shrink" for t in result.trials) <= 2
    assert result.found.failed  # the smallest failing list of those run, never one not run
    assert result.found in result.trials


def test_the_smallest_failing_list_is_run_once_more_to_see_it_fail_again(
    tmp_path: Path,
) -> None:
    """A failure seen once may be the system's luck: the summary says whether it held."""
    seen: set[str] = set()

    def flaky(faults: tuple[Fault, ...]) -> tuple[int, str | None]:
        key = json.dumps([f.to_data() for f in faults], sort_keys=True)
        again = key in seen
        seen.add(key)
        return (0, None) if again else _kills(faults)

    result = _search(Runs(tmp_path, flaky), tmp_path, shrink_runs=3)
    assert result.found is not None and result.confirmation is result.trials[-1]
    last = result.trials[-1]
    assert (last.phase, last.faults, last.outcome) == ("confirm", result.found.faults, "passed")
    steady = _search(Runs(tmp_path / "2", _kills), tmp_path / "2", shrink_runs=3)
    assert steady.confirmation is not None and steady.confirmation.failed


def test_a_run_without_the_search_s_faults_that_checks_nothing_ends_it(tmp_path: Path) -> None:
    """A composition's own fault that never comes: no list could test anything."""
    reason = "fault 0 could not be played: never fired: barrier 'nosuch' can no longer reach 1"
    runs = Runs(tmp_path, lambda _: (1, reason))
    runs.faults_record = [{"fault": "fault 0", "step": "failed", "reason": reason, "late": True}]
    result = _search(runs, tmp_path)
    assert result.error is not None and "checked nothing" in str(result.error)
    assert result.exit_code == 2 and runs.played == [()]


def test_a_system_that_survives_every_list(tmp_path: Path) -> None:
    runs = Runs(tmp_path, lambda _: (0, None))
    result = _search(runs, tmp_path, seed=1, examples=5)
    assert (result.exit_code, result.found, result.first) == (0, None, None)
    assert 2 <= len(result.trials) <= 6 and not (tmp_path / "search/found.json").exists()


def test_a_system_that_fails_without_faults_leaves_nothing_to_search(tmp_path: Path) -> None:
    runs = Runs(tmp_path, lambda _: (1, "1 of 4 failed; first: g/0: exit code 1"))
    result = _search(runs, tmp_path)
    assert result.broken and result.exit_code == 1 and result.found is None
    assert runs.played == [()]


def test_a_run_that_checked_nothing_is_inconclusive_not_a_failure(tmp_path: Path) -> None:
    """A fault that came after every instance had ended, or whose sync condition could no
    longer be met, fails the run (it proves nothing), as do faults that ended every
    instance: none is the system's failure. Every list inconclusive: nothing was tested."""
    never = f"fault 0 could not be played: {NEVER_PLAYED}"
    fired = f"fault 0 could not be played: {NEVER_FIRED}: barrier 'ready' can no longer reach 1"
    verdicts = iter([(0, None), (1, NOTHING_CHECKED), (1, never), (1, fired)] * 100)
    runs = Runs(tmp_path, lambda _: next(verdicts))
    runs.faults_record = [{"fault": "fault 0", "step": "failed", "reason": never, "late": True},
                          {"fault": "fault 1", "step": "failed", "reason": fired, "late": True}]
    result = _search(runs, tmp_path, seed=1, examples=3)
    assert result.found is None and result.checked_nothing and result.exit_code == 2
    assert [t.outcome for t in result.trials] == ["passed"] + ["inconclusive"] * 3


def test_a_real_failure_beside_a_fault_that_never_came_is_a_failure(tmp_path: Path) -> None:
    fired = f"fault 1 could not be played: {NEVER_FIRED}: barrier 'x' can no longer reach 2"
    verdicts = iter([(0, None)] + [(1, "2 of 4 failed; first: g/1: timed out")] * 100)
    runs = Runs(tmp_path, lambda _: next(verdicts))
    runs.faults_record = [{"fault": "fault 1", "step": "failed", "reason": fired, "late": True}]
    result = _search(runs, tmp_path, shrink_runs=1)
    assert result.first is not None and result.first.outcome == "failed"


def test_a_fault_the_harness_cannot_play_ends_the_search_with_an_error(tmp_path: Path) -> None:
    """Not a failure of the system: shrinking it would spend runs on the machine's lack."""
    reason = "fault 0 could not be played: limit needs per-instance cgroups"
    verdicts = iter([(0, None), (1, reason)])
    runs = Runs(tmp_path, lambda _: next(verdicts))
    runs.faults_record = [{"fault": "fault 0", "step": "failed", "reason": reason}]
    result = _search(runs, tmp_path, examples=5)
    assert result.error is not None and result.exit_code == 2
    assert re.search(r"limit needs per-instance cgroups.*--actions", str(result.error))
    assert len(runs.played) == 2


def test_faults_that_would_come_after_the_run_s_end_are_refused_after_the_first_run(
    tmp_path: Path,
) -> None:
    class Short(Runs):
        def __call__(self, file: Path, origin: str) -> RunResult:
            return dataclasses.replace(super().__call__(file, origin), duration_s=0.5)

    runs = Short(tmp_path, lambda _: (0, None))
    result = search(Search(runs, tmp_path / "s"), MEMBERS, dataclasses.replace(SPACE, at=(1, 5)))
    assert re.search(r"--at starts at 1s, but .* ended 0\.5 s after", str(result.error))
    assert runs.played == [()]



def test_faults_that_may_come_after_the_run_s_end_are_said_to_test_nothing(
    tmp_path: Path,
) -> None:
    """--at 1s..10s (the default) over a run of 2 s: most lists ended inconclusive, and only
    a note at the end hinted why."""
    class Short(Runs):
        def __call__(self, file: Path, origin: str) -> RunResult:
            return dataclasses.replace(super().__call__(file, origin), duration_s=2.0)

    said: list[str] = []
    runs = Short(tmp_path, lambda _: (0, None))
    search(Search(runs, tmp_path / "s", examples=2, progress=said.append), MEMBERS,
           dataclasses.replace(SPACE, at=(1, 10)))
    assert [line for line in said if "note" in line] == [
        "search: note: the instances of the run without the search's faults ended 2.0 s "
        "after they had all started, and --at reaches 10s: a list whose faults come later "
        "tests nothing (an --at within 2.0 s tests more)"]


@pytest.mark.parametrize("how", ["a run's own", "its report cut short", "a KeyboardInterrupt"])
def test_an_interruption_ends_the_search_with_what_it_found(tmp_path: Path, how: str) -> None:
    calls = iter([(0, None)] + [(130, "interrupted") if how == "a run's own" else (0, None)] * 9)
    came: list[str] = []

    def verdict(faults: tuple[Fault, ...]) -> tuple[int, str | None]:
        if len(runs.played) == 2 and how == "a KeyboardInterrupt":  # (a library caller's)
            raise KeyboardInterrupt
        if len(runs.played) == 2 and how == "its report cut short":
            came.append("SIGTERM")
        return next(calls)

    runs = Runs(tmp_path, verdict)
    result = _search(runs, tmp_path, interrupted=lambda: came[-1] if came else None)
    assert result.exit_code == 130 and result.stopped is not None
    assert len(runs.played) == 2, "it went on after the interruption"
    if how == "its report cut short":
        assert result.stopped == "interrupted (SIGTERM)"


def test_a_signal_noted_after_the_last_run_still_ends_the_search_as_interrupted(
    tmp_path: Path,
) -> None:
    came: list[str] = []

    def verdict(faults: tuple[Fault, ...]) -> tuple[int, str | None]:
        return 0, None

    runs = Runs(tmp_path, verdict)
    course = Search(runs, tmp_path / "s", examples=2, interrupted=lambda: came[-1] if came
                    else None)  # fmt: skip
    course.progress = lambda line: came.append("SIGHUP") if "list 2 of 2" in line else None
    result = search(course, MEMBERS, SPACE)
    assert result.stopped == "interrupted (SIGHUP)" and result.exit_code == 130


def test_an_error_of_the_harness_ends_the_search_and_keeps_what_it_found(tmp_path: Path) -> None:
    """Raised inside hypothesis's test, an error was a failure to shrink (more runs), or a
    Flaky traceback; and what had been found was lost."""
    calls: list[tuple[Fault, ...]] = []

    def verdict(faults: tuple[Fault, ...]) -> tuple[int, str | None]:
        calls.append(faults)
        if any(_kills(fs)[0] for fs in calls[:-1]):  # the first run after a failure
            raise OSError(28, "No space left on device")
        return _kills(faults)

    runs = Runs(tmp_path, verdict)
    result = _search(runs, tmp_path, shrink_runs=10)
    assert result.error is not None and "No space left on device" in str(result.error)
    assert result.exit_code == 3
    assert result.found is not None and result.found.failed
    assert load_faults(tmp_path / "search/found.json") == result.found.faults
    assert len(calls) == result.found.number + 2, "it ran on after the error"


def test_shrinking_is_bounded_by_runs_not_by_hypothesis_s_minutes(tmp_path: Path) -> None:
    """hypothesis stops shrinking after 5 minutes of it, a handful of real runs."""
    from hypothesis.internal.conjecture import engine

    seen: list[float] = []

    def verdict(faults: tuple[Fault, ...]) -> tuple[int, str | None]:
        seen.append(engine.MAX_SHRINKING_SECONDS)
        return _kills(faults)

    before = engine.MAX_SHRINKING_SECONDS
    _search(Runs(tmp_path, verdict), tmp_path, shrink_runs=3)
    # (every run but the last, which runs the smallest list again, after hypothesis is done)
    assert min(seen[:-1]) > 10**6 and before == engine.MAX_SHRINKING_SECONDS


def test_a_run_that_cannot_be_made_ends_the_search_at_once(tmp_path: Path) -> None:
    calls: list[Path] = []

    def refused(file: Path, origin: str) -> RunResult:
        calls.append(file)
        raise UsageError("program ./node not found")

    result = search(Search(refused, tmp_path / "s"), MEMBERS, SPACE)
    assert "could not be run: program ./node not found" in str(result.error)
    assert result.exit_code == 2 and len(calls) == 1 and not result.trials


def test_the_case_s_own_faults_come_first_in_every_file(tmp_path: Path) -> None:
    """A faults file replaces a case's own faults: the search writes them into each file,
    before its own, so that a run and its replay play them (failed_nodes' 60 % kill)."""
    own = (Fault.from_data({"action": "pause", "at": 0.5, "duration": 1,
                            "targets": {"count": 1}}),)
    runs = Runs(tmp_path, _kills)
    result = _search(runs, tmp_path, shrink_runs=3, fixed=own)
    assert result.found is not None and all(fs[:1] == own for fs in runs.played)
    assert load_faults(tmp_path / "search/found.json") == own + result.found.faults


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_what_may_last_and_what_is_always_undone(data: st.DataObject) -> None:
    """With heal, every fault that can be undone is; without, a pause still is (one for
    good leaves its instance running at the run's timeout: it fails whatever the system
    does)."""
    heal = data.draw(st.booleans())
    space = Space(("kill", "pause", "partition", "heal"), max_faults=3, heal=heal)
    for fault in data.draw(space.strategy(MEMBERS)):
        if fault.action == "pause" or (heal and fault.action != "heal"):
            assert fault.duration is not None, fault


def test_the_actions_drawn_by_default_and_those_refused() -> None:
    assert "partition" in actions_for("local:netns", None)
    assert not {"partition", "isolate", "shape"} & set(actions_for("local:exec", None))
    with pytest.raises(SearchError, match="local:exec cannot play partition"):
        actions_for("local:exec", ("kill", "partition"))
    with pytest.raises(SearchError, match="'explode' is not a fault"):
        actions_for("local:netns", ("explode",))
    with pytest.raises(SearchError, match="local:exec cannot play heal"):
        actions_for("local:exec", ("heal",))
    assert actions_for("local:exec", ("kill", "kill", "skew")) == ("kill", "skew")


@pytest.mark.parametrize(("args", "message"), [
    (["--at", "5s..1s"], "FROM must be at most TO"),
    (["--at", "5s"], "is not FROM..TO"),
    (["--duration", "0s..1s"], "a fault lasts at least 1ms"),
    (["--duration", "0.0004s..0.0004s"], "a fault lasts at least 1ms"),
    (["--examples", "0"], "must be 1 to 10000"),
    (["--actions", "explode"], "'explode' is not a fault"),
    (["-i", "1"], "at least 2 instances"),
    (["--at", "1s..400s"], "not before the run's timeout (300s)"),
    (["--at", "1s..290s", "--duration", "1s..20s"], "--at and --duration reach 310s"),
    (["--runner", "cluster:k8s"], "runs locally"),
])
def test_bad_input_is_one_line_and_runs_nothing(tmp_path: Path, args: list[str],
                                                message: str) -> None:
    r = harness_cli("search", "faulty:fragile", "--plans", "tests/plans", "--outputs",
                    str(tmp_path), *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.glob("*")), "a refused search made something"


def test_a_search_on_real_runs_finds_the_fault_that_breaks_it_and_its_replay_fails_alike(
    tmp_path: Path,
) -> None:
    """faulty:fragile fails once an instance is started again: the search finds a kill (or
    a restart), shrinks it to that one fault, and the printed command fails the same way."""
    r = harness_cli("search", "faulty:fragile", "--plans", "tests/plans", "--runner",
                    "local:exec", "-p", "seconds=2", "--actions", "kill,pause,restart",
                    "--at", "0.3s..1s", "--duration", "0.3s..0.6s", "--examples", "8",
                    "--shrink-runs", "4", "--outputs", str(tmp_path), timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    found = next(tmp_path.glob("searches/*/found.json"))
    faults = load_faults(found)
    assert len(faults) == 1 and faults[0].action in ("kill", "restart"), faults
    assert "search: list 1 of 8" in r.stderr and "record:" in r.stdout
    # The runs it counts as shrinking are those it said it made so (not the last, which
    # runs the smallest list again).
    said = re.search(r"shrunk after (\d+) more run", r.stdout)
    assert said and int(said[1]) == r.stderr.count("search: shrinking, run "), r.stdout
    assert "it failed again when run once more" in r.stdout
    # Its runs say which search made them (run.json, `harness show`, the report).
    search_id = found.parent.name
    shown = harness_cli("show", json.loads(found.parent.joinpath("search.jsonl").read_text()
                                           .splitlines()[1])["run_id"],
                        "--outputs", str(tmp_path))
    assert f"started  by harness search {search_id} (list 1 of 8)" in shown.stdout, shown.stdout
    command = next(line.strip() for line in r.stdout.splitlines()
                   if line.strip().startswith("harness run "))
    import shlex

    again = harness_cli(*shlex.split(command)[1:], timeout=120)
    assert again.returncode == 1 and "started again" in again.stdout, again.stdout
    # The command it printed lists the search's runs, and only them (not the replay's).
    listing = re.search(r"its runs: (harness runs .*)", r.stdout)
    assert listing, r.stdout
    listed = harness_cli(*shlex.split(listing[1])[1:], "--json")
    trials = [json.loads(line) for line in found.parent.joinpath("search.jsonl").open()]
    made = {t["run_id"] for t in trials if t.get("run_id")}
    assert {row["run_id"] for row in json.loads(listed.stdout)} == made, listed.stdout


def test_a_search_from_python_in_your_own_hypothesis_test(tmp_path: Path) -> None:
    """docs/faults.md's recipe: hypothesis draws lists with `fault_lists`, each is played in
    a run of `harness.run` and judged by `RunResult.verdict`; hypothesis finds what
    faulty:fragile does not survive (started again) and reports it as falsifying."""
    import harness
    from harness.faults import fault_lists

    spec = harness.build_run_spec("faulty:fragile", instances=3, params={"seconds": "2"},
                                  runner="local:exec", plan_roots=[ROOT / "tests" / "plans"])
    options = harness.RunOptions(outputs=tmp_path, progress=False)
    verdicts: list[str] = []

    # (no shrinking here: each try is a run of seconds, and hypothesis's shrinking has no
    # budget of runs; `harness search` has one)
    @settings(max_examples=8, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate])
    @given(fault_lists(spec.members, actions=["kill", "restart"], at=(0.3, 1.0),
                       duration=(0.3, 0.6)))
    def survives(faults: tuple[Fault, ...]) -> None:
        result = harness.run(dataclasses.replace(spec, faults=spec.faults + faults), options)
        verdicts.append(result.verdict())
        assert result.verdict() in ("passed", "inconclusive"), result.summary()

    with pytest.raises(AssertionError, match="started again"):
        survives()
    assert "failed" in verdicts
    # Every run is in the outputs, like any other.
    assert len([d for d in tmp_path.iterdir() if (d / "run.json").exists()]) == len(verdicts)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_between_runs_ends_the_search(tmp_path: Path, sig: int) -> None:
    """Once a run had ended, the command ignored the signals (one run per command, its
    summary left to print), and then, raised between runs, one could come inside a
    finalizer, where Python drops it: a search went through every list, and exited 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "search", "faulty:beat", "--plans", "tests/plans",
         "--runner", "local:exec", "-p", "seconds=0.5", "--actions", "pause",
         "--at", "0.1s..0.3s", "--duration", "0.1s..0.2s", "--examples", "20",
         "--outputs", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # the run without the search's faults ends: now
        lines.append(line)
        if line.startswith("search: run ") and " passed in " in line:
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + err + out
    assert "interrupted" in out, out
    # At most the list whose run it came in was run (that run took it as its interruption).
    assert sum("search: list " in line for line in [*lines, *err.splitlines()]) <= 1, err


def test_a_case_s_own_faults_play_in_every_run_of_a_search(
    tmp_path: Path, make_plan: Callable[[str, str, str], Path],
) -> None:
    """A faults file replaces a case's own faults: a search on spacemesh:failed_nodes
    never played its 60 % kill. They now play first in every run, and replay with it."""
    root = make_plan("own", """
        name = "own"
        [[testcases]]
        name = "beat"
        instances = { min = 2, max = 5, default = 3 }
        entrypoint = "own.plan:beat"
          [[testcases.faults]]
          at = "0.2s"
          action = "pause"
          duration = "0.2s"
          targets = { count = 1 }
        """, "import trio\n\nasync def beat(env):\n    await trio.sleep(1.5)\n")
    r = harness_cli("search", "own:beat", "--plans", str(root), "--runner", "local:exec",
                    "--actions", "pause", "--at", "0.5s..0.8s", "--duration", "0.1s..0.2s",
                    "--examples", "2", "--outputs", str(tmp_path / "out"), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    record = [json.loads(line) for line in next(tmp_path.glob("out/searches/*/search.jsonl"))
              .open()]  # fmt: skip
    assert len(record) >= 2
    for line in record:
        played = [json.loads(f) for f in (tmp_path / "out" / line["run_id"] / "faults.jsonl")
                  .read_text().splitlines()]  # fmt: skip
        first = next(p for p in played if p["fault"] == "fault 0" and p["step"] == "applied")
        assert (first["action"], first["at"]) == ("pause", 0.2), played
        assert len({p["fault"] for p in played}) == 1 + len(line["faults"]), played


def test_a_signal_noted_as_the_next_run_was_set_up_interrupts_that_run(
    tmp_path: Path, tiny: Path,
) -> None:
    """Noted between runs after the search last looked, it let the whole next run go on to
    its end: the run takes it as its own interruption once it takes the signals."""
    import harness
    from harness._latesignal import _noted, runs_in_a_row

    spec = harness.build_run_spec("tiny:ok", plan_roots=[tiny])
    with runs_in_a_row() as came:
        _noted(signal.SIGTERM, None)
        result = harness.run(spec, harness.RunOptions(outputs=tmp_path, progress=False))
        assert came() == "SIGTERM"
    assert (result.outcome, result.exit_code) == ("interrupted", 130), result.reason
