"""`harness replay RUN`: the same plan, groups, params, runner, timeout and faults again, live
faults included; what cannot be replayed is one line and exit 2."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness._cli import main
from harness._replay import live_faults, replay_spec
from harness.faults import Fault, Member, load_faults
from harness.observe import load_run
from tests.conftest import harness_cli

PLANS = Path(__file__).parent / "plans"
KILL = """
    [[faults]]
    at = "700ms"
    action = "kill"
    duration = "400ms"
    targets = {group = "single", count = 1, seed = 5}
    """


def _steps(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]


def _played(run_dir: Path) -> list[tuple[str, str, str, list[str]]]:
    return [(s["fault"], s["step"], s["action"], s.get("chosen", [])) for s in _steps(run_dir)]


def _runs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir())


def test_a_replay_plays_the_same_faults_on_the_same_instances(tmp_path: Path) -> None:
    faults, out = tmp_path / "faults.toml", tmp_path / "out"
    faults.write_text(textwrap.dedent(KILL))
    r = harness_cli("run", "faulty:beat", "--plans", str(PLANS), "--outputs", str(out), "-q",
                    "-i", "3", "-p", "seconds=3", "--faults", str(faults), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    (first,) = _runs(out)
    (chosen,) = _steps(first)[0]["chosen"]
    record = load_run(first)
    assert record.plan_dir == str((PLANS / "faulty").resolve())
    assert [Fault.from_data(f) for f in record.faults or ()] == list(load_faults(faults))
    # As if `harness fault` had killed another instance 1.5 s in, for 300 ms.
    other = next(i for i in ("single/0", "single/1", "single/2") if i != chosen)
    live = {"fault": "live 0 (test)", "step": "applied", "at_s": 1.5, "action": "kill",
            "at": 0.0, "duration": 0.3, "targets": {"instances": [other]}, "chosen": [other]}
    with (first / "faults.jsonl").open("ab") as f:
        f.write(orjson.dumps(live) + b"\n")

    r = harness_cli("replay", first.name, "--outputs", str(out), "-q", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    second = next(p for p in _runs(out) if p != first)
    assert f"run {second.name}: PASSED" in r.stdout
    assert _played(second) == [
        ("fault 0", "applied", "kill", [chosen]), ("fault 0", "undone", "kill", []),
        ("fault 1", "applied", "kill", [other]), ("fault 1", "undone", "kill", []),
    ]
    assert _played(first)[:2] == _played(second)[:2]
    live_step = _steps(second)[2]
    assert live_step["at_s"] == pytest.approx(1.5, abs=0.3)
    again = load_run(second)
    assert (record.origin, again.origin) == (None, f"harness replay {first.name}")
    for field in ("plan", "case", "runner", "timeout_s", "params", "groups", "plan_dir"):
        assert getattr(again, field) == getattr(record, field), field
    assert again.faults == (*record.faults, Fault.from_data(
        {**{k: live[k] for k in ("action", "duration")}, "at": 1.5,
         "targets": {"instances": [other]}}).to_data())
    assert {i.id: i.restarts for i in again.instances} == {
        i: int(i in (chosen, other)) for i in ("single/0", "single/1", "single/2")}


@pytest.mark.parametrize("plan_dir", ["faulty", "gone"])
def test_print_faults_writes_what_run_faults_reads(tmp_path: Path, plan_dir: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Also when the run's plan is no longer where it was: the schedule is the run's own
    (it was refused: "cannot be replayed: its plan 'faulty' is no longer at ...")."""
    run_dir = _recorded(tmp_path, faults=[{"action": "kill", "at": 0.7, "duration": 0.4,
                                           "targets": {"group": ["single"], "count": 1}}],
                        plan_dir=str(tmp_path / plan_dir if plan_dir == "gone"
                                     else (PLANS / plan_dir).resolve()))
    (run_dir / "faults.jsonl").write_text(json.dumps(
        {"fault": "live 0 (cli)", "step": "applied", "at_s": 2.0, "action": "pause",
         "at": 0.0, "targets": {"group": "single"}, "chosen": ["single/1"]}) + "\n")
    assert main(["replay", str(run_dir), "--print-faults"]) == 0
    printed = capsys.readouterr().out
    file = tmp_path / "again.json"
    file.write_text(printed)
    assert [f.to_data() for f in load_faults(file)] == [
        {"action": "kill", "at": 0.7, "duration": 0.4,
         "targets": {"group": ["single"], "count": 1}},
        {"action": "pause", "at": 2.0, "targets": {"instances": ["single/1"]}},
    ]


def test_print_faults_of_a_run_that_did_not_record_its_faults_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed an empty schedule, exit 0: given to `run --faults`, the run's faults were
    dropped without a word (the replay itself is refused)."""
    run_dir = _recorded(tmp_path, faults=None)
    assert main(["replay", str(run_dir), "--print-faults"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (f"harness: error: run {run_dir.name}: its run.json has no "
                                 "faults (written by an older harness): its fault schedule "
                                 "is not known\n")


def test_a_live_partition_s_other_side_and_a_shape_s_destinations_replay_as_were() -> None:
    """`targets` was pinned to whom the fault chose, but `others` (a partition's) and `to`
    (a shape's) were copied as given: a topic named whoever it held in the replay."""
    steps = [
        {"fault": "live 0 (cli)", "step": "applied", "at_s": 1.0, "action": "partition",
         "targets": {"group": "single", "count": 1}, "others": {"topic": "followers"},
         "chosen": ["single/0"],
         "directions": [["single/0", "single/2"], ["single/2", "single/0"]]},
        {"fault": "live 1 (cli)", "step": "applied", "at_s": 2.0, "action": "shape",
         "targets": {"instances": ["single/1"]}, "to": {"count": 2, "seed": 3},
         "shape": {"latency_ms": 20}, "chosen": ["single/1"],
         "directions": [["single/1", "single/0"], ["single/1", "single/3"]]},
    ]
    cut, shaped = (f.to_data() for f in live_faults(steps))
    assert cut["targets"] == {"instances": ["single/0"]}
    assert cut["others"] == {"instances": ["single/2"]}
    assert shaped["to"] == {"instances": ["single/0", "single/3"]}


def _recorded(tmp_path: Path, **fields: Any) -> Path:
    """A finished run's directory whose run.json has what a replay needs, and `fields`."""
    run_dir = tmp_path / "20261126-031500-a1b2c3"
    run_dir.mkdir(parents=True)
    data = {"run_id": run_dir.name, "plan": "faulty", "case": "beat", "runner": "local:exec",
            "timeout_s": 30.0, "plan_dir": str((PLANS / "faulty").resolve()), "faults": [],
            "groups": [{"id": "single", "count": 2, "params": {"seconds": 1.0},
                        "program": None}], **fields}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps({k: v for k, v in data.items()
                                                  if v is not None}))
    return run_dir


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"faults": None, "plan_dir": None},
         "cannot be replayed: its run.json has no plan_dir, faults (written by an older harness)"),
        ({"plan_dir": "/nonexistent/faulty"},
         "cannot be replayed: its plan 'faulty' is no longer at /nonexistent/faulty"),
        ({"plan": "other"}, "now holds plan 'faulty', not 'other'"),
        ({"groups": [{"id": "single", "count": 2, "params": {"seconds": 99.0}}]},
         "param 'seconds' is 99.0, above its max 60.0"),
        ({"faults": [{"action": "kill", "at": 1, "targets": {"group": "nope"}}]},
         "no group 'nope'"),
        ({"groups": [{"id": "single", "count": 1, "params": {}}] * 2},
         "group id 'single' appears twice"),
    ],
)
def test_what_cannot_be_replayed_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: dict[str, Any], message: str
) -> None:
    run_dir = _recorded(tmp_path, **fields)
    assert main(["replay", str(run_dir), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error: ") and err.count("\n") == 1, err
    assert message in err
    assert [p.name for p in tmp_path.iterdir()] == [run_dir.name], "a replay run was started"


def test_a_missing_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = harness_cli("replay", "20991231", "--outputs", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "no run '20991231'" in r.stderr and not r.stdout


def test_live_faults_become_planned_ones_pinned_to_what_they_chose() -> None:
    members = [Member(f"g/{i}", "g") for i in range(5)]
    majority = Fault.from_data({"action": "partition", "at": 0, "kind": "majority",
                                "targets": {"group": "g", "seed": 9}})
    chosen = majority.resolve(members)
    steps = [
        {"fault": "fault 0", "step": "applied", "at_s": 0.5, "action": "kill", "at": 0.5,
         "targets": {"group": "g", "count": 1}, "chosen": ["g/3"]},  # planned: not live
        {"fault": "live 1 (cli)", "step": "applied", "at_s": 3.25, "action": "heal", "at": 0.0,
         "chosen": []},
        {"fault": "live 0 (cli)", "step": "applied", "at_s": 2.0, **majority.to_data(),
         "chosen": list(chosen.instances),
         "directions": sorted([a, b] for a, b in chosen.directions)},
        {"fault": "live 0 (cli)", "step": "undone", "at_s": 2.5, "action": "partition"},
        {"fault": "live 2 (cli)", "step": "failed", "at_s": 4.0, "action": "kill", "at": 0.0,
         "targets": {"group": "nope"}, "reason": "no group 'nope'"},
        # none of those it chose was running: it did nothing (replayed, a kill for good)
        {"fault": "live 3 (cli)", "step": "applied", "at_s": 5.0, "action": "kill", "at": 0.0,
         "targets": {"instances": ["g/1"]}, "chosen": ["g/1"], "missed": ["g/1"]},
        {"fault": "live 4 (cli)", "step": "applied", "at_s": 6.0, "action": "pause", "at": 0.0,
         "duration": 1.0, "targets": {"group": "g"}, "chosen": ["g/1", "g/2"],
         "missed": ["g/1"]},
    ]
    partition, heal, pause = live_faults(steps)
    assert (pause.action, pause.targets.instances) == ("pause", ("g/2",))  # not the missed
    assert (partition.at, heal.at, heal.action) == (2.0, 3.25, "heal")
    assert partition.targets.instances == chosen.instances and partition.targets.seed == 9
    assert partition.targets.groups == ()
    # played again, the partition cuts the same directions (the sides drawn with the seed)
    assert partition.resolve(members).directions == chosen.directions


def test_a_run_is_replayed_from_its_groups_not_its_composition(tmp_path: Path) -> None:
    """The groups as resolved (params, counts, programs) replay, whatever the composition
    file (recorded for reference) says now."""
    run_dir = _recorded(tmp_path, composition=str(tmp_path / "gone.toml"), groups=[
        {"id": "a", "count": 1, "params": {"seconds": 2.0}, "program": None},
        {"id": "b", "count": 2, "params": {"seconds": 0.5}, "program": None}])
    spec = replay_spec(run_dir)
    # (`deaf`, a param the plan has that the record does not, takes its default)
    assert [(g.id, g.count, dict(g.params)) for g in spec.groups] == [
        ("a", 1, {"seconds": 2.0, "deaf": False}), ("b", 2, {"seconds": 0.5, "deaf": False})]
    assert [i.id for i in spec.instances] == ["a/0", "b/0", "b/1"]
    assert (spec.runner, spec.runner_pinned, spec.timeout_s) == ("local:exec", True, 30.0)
    assert replay_spec(run_dir, "local:netns").runner == "local:netns"
