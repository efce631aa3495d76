"""`harness search`: fault lists drawn over a run's instances, each played in a run, the
first that fails shrunk in more runs to the smallest, written and printed to replay.

The search's logic is tested on a stand-in for the runs (each "run" judges its fault list
by a rule, as a system would by its own checks); the command on real runs of
tests/plans/faulty's `fragile` case, which fails once an instance is started again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from harness._conductor import NEVER_PLAYED
from harness._errors import UsageError
from harness._search import SearchError, Space, actions_for, search
from harness._supervisor import NOTHING_CHECKED, RunResult
from harness.faults import Fault, Member, load_faults
from tests.conftest import harness_cli

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
        self.faults_record: list[dict[str, object]] = []

    def __call__(self, file: Path) -> RunResult:
        faults = load_faults(file)
        self.played.append(faults)
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


def test_a_failing_list_is_shrunk_to_the_smallest_and_written_to_replay(tmp_path: Path) -> None:
    runs = Runs(tmp_path, _kills)
    lines: list[str] = []
    result = search(runs, MEMBERS, SPACE, tmp_path / "search", examples=30, shrink_runs=30,
                    seed=3, progress=lines.append)
    assert result.exit_code == 1 and result.found is not None and result.first is not None
    # The smallest list that fails: one kill, and every run of the search is recorded.
    assert [f.action for f in result.found.faults] == ["kill"], result.found.faults
    assert load_faults(tmp_path / "search" / "found.json") == result.found.faults
    record = [json.loads(line) for line in (tmp_path / "search/search.jsonl").open()]
    assert len(record) == len(runs.played) == len(result.trials)
    assert [r["run_id"] for r in record] == [t.run_id for t in result.trials]
    for line, faults in zip(record, runs.played, strict=True):
        assert load_faults(tmp_path / "search" / line["file"]) == faults
        assert line["outcome"] == ("failed" if _kills(faults)[0] else "passed")
    assert any(r["phase"] == "shrink" for r in record)
    # No list was run twice (hypothesis draws some again: they are not run again).
    keys = [json.dumps([f.to_data() for f in fs], sort_keys=True) for fs in runs.played]
    assert len(set(keys)) == len(keys)
    assert result.first.number <= 30 and result.found.failed
    assert sum("FAILED" in line for line in lines) == sum(t.failed for t in result.trials)


def test_shrinking_stops_at_its_budget_of_runs(tmp_path: Path) -> None:
    runs = Runs(tmp_path, _kills)
    result = search(runs, MEMBERS, SPACE, tmp_path / "s", examples=30, shrink_runs=2, seed=3)
    assert result.first is not None and result.found is not None
    assert len(result.trials) - result.first.number <= 2
    assert result.found.failed  # the smallest failing list of those run, never one not run
    assert result.found in result.trials


def test_a_system_that_survives_every_list(tmp_path: Path) -> None:
    runs = Runs(tmp_path, lambda _: (0, None))
    result = search(runs, MEMBERS, SPACE, tmp_path / "s", examples=5, seed=1)
    assert (result.exit_code, result.found, result.first) == (0, None, None)
    assert 1 <= len(result.trials) <= 5 and not (tmp_path / "s/found.json").exists()


def test_a_run_that_checked_nothing_is_inconclusive_not_a_failure(tmp_path: Path) -> None:
    """A fault that came after every instance had ended fails the run (it proves nothing),
    as do faults that ended every instance: neither is the system's failure."""
    never = f"fault 0 could not be played: {NEVER_PLAYED}"
    verdicts = iter([(1, NOTHING_CHECKED), (1, never)] + [(0, None)] * 100)
    runs = Runs(tmp_path, lambda _: next(verdicts))
    runs.faults_record = [{"fault": "fault 0", "step": "failed", "reason": never}]
    result = search(runs, MEMBERS, SPACE, tmp_path / "s", examples=5, seed=1)
    assert result.found is None and result.exit_code == 0
    assert [t.outcome for t in result.trials[:2]] == ["inconclusive", "inconclusive"]


def test_a_fault_the_harness_cannot_play_ends_the_search_with_an_error(tmp_path: Path) -> None:
    """Not a failure of the system: shrinking it would spend runs on the machine's lack."""
    reason = "fault 0 could not be played: limit needs per-instance cgroups"
    runs = Runs(tmp_path, lambda _: (1, reason))
    runs.faults_record = [{"fault": "fault 0", "step": "failed", "reason": reason}]
    with pytest.raises(SearchError, match=r"limit needs per-instance cgroups.*--actions"):
        search(runs, MEMBERS, SPACE, tmp_path / "s", examples=5)
    assert len(runs.played) == 1


def test_an_interrupted_run_ends_the_search(tmp_path: Path) -> None:
    runs = Runs(tmp_path, lambda _: (130, "interrupted"))
    result = search(runs, MEMBERS, SPACE, tmp_path / "s", examples=5)
    assert (result.stopped, result.exit_code, len(runs.played)) == ("interrupted", 130, 1)


def test_a_run_that_cannot_be_made_ends_the_search_at_once(tmp_path: Path) -> None:
    calls: list[Path] = []

    def refused(file: Path) -> RunResult:
        calls.append(file)
        raise UsageError("program ./node not found")

    with pytest.raises(SearchError, match=r"could not be run: program \./node not found") as e:
        search(refused, MEMBERS, SPACE, tmp_path / "s", examples=5)
    assert e.value.exit_code == 2 and len(calls) == 1


def test_the_actions_drawn_by_default_and_those_refused() -> None:
    assert "partition" in actions_for("local:netns", None)
    assert not {"partition", "isolate", "shape"} & set(actions_for("local:exec", None))
    with pytest.raises(SearchError, match="local:exec cannot play partition"):
        actions_for("local:exec", ("kill", "partition"))
    with pytest.raises(SearchError, match="'explode' is not a fault"):
        actions_for("local:netns", ("explode",))
    assert actions_for("local:exec", ("kill", "kill", "skew")) == ("kill", "skew")


@pytest.mark.parametrize(("args", "message"), [
    (["--at", "5s..1s"], "FROM must be at most TO"),
    (["--at", "5s"], "is not FROM..TO"),
    (["--duration", "0s..1s"], "a fault lasts more than 0 s"),
    (["--examples", "0"], "must be 1 to 10000"),
    (["--actions", "explode"], "'explode' is not a fault"),
    (["-i", "2"], "at least 3 instances"),
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
    command = next(line.strip() for line in r.stdout.splitlines()
                   if line.strip().startswith("harness run "))
    import shlex

    again = harness_cli(*shlex.split(command)[1:], timeout=120)
    assert again.returncode == 1 and "started again" in again.stdout, again.stdout
