"""Running a recorded run again (`harness replay RUN`): the same plan, groups (their params
as resolved), runner, timeout and fault schedule, from its run.json and faults.jsonl.

The planned faults (the composition's or the case's own, and `--faults FILE`'s, as run.json
keeps them) are played as planned: their seeds draw the same instances from the same
groups, and a selector by sync topic chooses by what the replay publishes. Faults injected
live during the run (`live N` in faults.jsonl) become planned ones, at the time they were
applied (`at_s`) and on the instances they chose and found running (`targets = {instances
= [...]}`), after the planned ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness._errors import UsageError
from harness.faults import ACTIONS, Fault, parse_faults
from harness.observe._jsonl import read_jsonl
from harness.observe._runrecord import RunRecord, load_run
from harness.plans import GroupSpec, RunSpec, load_manifest
from harness.plans._spec import spec_from_groups

FAULTS_FILE = "faults.jsonl"
LIVE = "live "  # how faults.jsonl names a fault injected live: "live N (asked by)"
_FAULT_KEYS = ("duration", "action", "targets", "expect")  # besides `at` and the action's own


def replay_spec(run_dir: Path, runner: str | None = None) -> RunSpec:
    """The RunSpec that runs `run_dir`'s run again (on `runner` instead of the recorded one
    if given); a UsageError (one line) when run.json lacks what it takes, or the plan is
    gone or no longer fits."""
    record = load_run(run_dir)
    name = f"run {record.run_id}"
    missing = record.missing_for_replay
    if missing:
        raise UsageError(f"{name} cannot be replayed: its run.json has no {missing} "
                         f"(written by an older harness)")
    assert record.plan_dir is not None and record.runner is not None
    assert record.timeout_s is not None
    manifest = Path(record.plan_dir) / "manifest.toml"
    if not manifest.is_file():
        raise UsageError(f"{name} cannot be replayed: its plan {record.plan!r} is no longer "
                         f"at {record.plan_dir}")
    plan = load_manifest(manifest)
    if plan.name != record.plan:
        raise UsageError(f"{name} cannot be replayed: {record.plan_dir} now holds plan "
                         f"{plan.name!r}, not {record.plan!r}")
    groups = []
    for g in record.groups:
        if g.count is None:
            raise UsageError(f"{name} cannot be replayed: its group {g.id!r} has no count")
        groups.append(GroupSpec(g.id, g.count, g.params, g.program))
    composition = Path(record.composition) if record.composition else None
    return spec_from_groups(plan, record.case, groups, runner=runner or record.runner,
                            timeout_s=record.timeout_s, faults=replay_faults(record, run_dir),
                            composition=composition, where=f"{name} (run.json)")


def replay_faults(record: RunRecord, run_dir: Path) -> tuple[Fault, ...]:
    """The run's planned faults, then those injected live, as planned faults; a UsageError
    when run.json does not record them (an empty schedule would drop them unsaid)."""
    if record.faults is None:
        raise UsageError(f"run {record.run_id}: its run.json has no faults (written by an "
                         f"older harness): its fault schedule is not known")
    planned = parse_faults(list(record.faults), f"{run_dir / 'run.json'}: faults")
    return planned + live_faults(read_jsonl(run_dir / FAULTS_FILE), str(run_dir / FAULTS_FILE))


def live_faults(steps: Iterable[Mapping[str, Any]], where: str = FAULTS_FILE) -> tuple[Fault, ...]:
    """The faults faults.jsonl says were injected live and applied, as planned faults: at
    the time they were applied, on the instances they chose and did not miss (the
    selector's seed kept, for a partition that draws its sides with it); in the order they
    were applied. One that missed every instance it chose (none was running) did nothing,
    and is left out: played again, it could kill one for good."""
    out: list[Fault] = []
    for step in steps:
        if step.get("step") != "applied" or not str(step.get("fault", "")).startswith(LIVE):
            continue
        action = step.get("action")
        table: dict[str, Any] = {k: step[k] for k in (*_FAULT_KEYS, *ACTIONS.get(str(action), ()))
                                 if k in step}  # fmt: skip
        table["at"] = step.get("at_s")
        if action != "heal":  # heal takes no targets
            targets = step.get("targets")
            seed = targets.get("seed") if isinstance(targets, Mapping) else None
            missed = step.get("missed") or ()
            hit = [i for i in step.get("chosen") or () if i not in missed]
            if not hit:  # nothing was done to anyone: a replay must not do it
                continue
            table["targets"] = {"instances": hit, **({"seed": seed} if seed else {})}
            table.update(_other_ends(table, step.get("directions"), hit))
        out.append(Fault.from_data(table, f"{where}: {step.get('fault')}"))
    # `at` is seconds here (at_s), never a sync condition
    return tuple(sorted(out, key=lambda f: f.at if isinstance(f.at, float) else 0.0))


def _other_ends(table: Mapping[str, Any], directions: Any, hit: list[str]) -> dict[str, Any]:
    """A partition's `others` or a shape's `to`, pinned as `targets` is to whom the fault
    chose: the ends of the directions it cut or shaped that were not its targets (a topic
    or a drawn count names others in a replay)."""
    if not isinstance(directions, list):
        return {}
    pairs = [(str(d[0]), str(d[1])) for d in directions if isinstance(d, list) and len(d) == 2]
    pinned = {}
    if "others" in table:
        pinned["others"] = {"instances": sorted({i for p in pairs for i in p} - set(hit))}
    if "to" in table:
        pinned["to"] = {"instances": sorted({b for _, b in pairs})}
    return pinned


def schedule(faults: Iterable[Fault]) -> dict[str, Any]:
    """The JSON that `harness run --faults FILE.json` reads: `{"faults": [...]}`."""
    return {"faults": [f.to_data() for f in faults]}
