"""A cluster:k8s run's `run.json`: the same `RunRecord` a local run's supervisor writes
(harness.observe), so that `harness show`, `report`, `history` and `replay` read a cluster
run as they read a local one."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from harness._outcome import InstanceState
from harness.observe._runrecord import GroupRecord, RunRecord
from harness.plans import RunSpec
from harness.runners._registry import CLUSTER_K8S
from harness.runners.k8s._options import K8sOptions
from harness.runners.k8s._render import RenderedRun
from harness.sync import EventType


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a run ended, as run.json says it."""

    outcome: str  # one of harness.observe._runrecord.OUTCOMES, but "running"
    exit_code: int
    reason: str | None


def judge(states: Sequence[InstanceState], unplayed: Sequence[str],
          order: Sequence[str] = ()) -> Outcome:
    """The run's outcome from its instances' and the faults that could not be played (which
    fail the run: a test whose fault never happened proves nothing), as locally; the first
    failed instance in `order` (as the sync service saw them fail) is named first, else the
    first failed of `states`."""
    failed = [s for s in states if not s.verdict()[0]]
    if unplayed:
        reason = "; ".join(unplayed)
        if failed:
            reason += f"; {len(failed)} of {len(states)} instances failed"
        return Outcome("failed", 1, reason)
    if failed:
        by_id = {s.spec.id: s for s in failed}
        named = next((by_id[i] for i in order if i in by_id), failed[0])
        return Outcome("failed", 1, f"{len(failed)} of {len(states)} failed; first: "
                                    f"{named.spec.id}: {named.verdict()[1] or ''}")
    if states and all(s.recorded != EventType.SUCCESS for s in states):
        # each passed only as one a fault may end: nothing checked anything (as locally)
        return Outcome("failed", 1, "no instance recorded success: faults ended every one "
                                    "(nothing was checked)")
    return Outcome("passed", 0, None)


def network_info(run: RenderedRun, options: K8sOptions,
                 states: Sequence[InstanceState]) -> dict[str, Any]:
    """run.json's `network`: where the run was (namespace, context) and each pod's IP."""
    return {
        "runner": CLUSTER_K8S,
        "namespace": run.namespace,
        "context": options.context,
        "shaping": options.shaping,
        "hosts": {s.spec.id: s.ip for s in states if s.ip},
    }


def run_record(spec: RunSpec, run: RenderedRun, options: K8sOptions,
               states: Sequence[InstanceState], *, started: float, ended: float | None,
               outcome: Outcome) -> RunRecord:
    """The run's record (`ended` None while it goes on)."""
    shared = ({k: v for k, v in spec.groups[0].params.items()
               if all(g.params.get(k) == v for g in spec.groups[1:])} if spec.groups else {})
    return RunRecord(
        run_id=run.run_id,
        plan=spec.plan.name,
        case=spec.case.name,
        runner=spec.runner,
        started=started,
        ended=ended,
        outcome=outcome.outcome,
        exit_code=outcome.exit_code,
        reason=outcome.reason,
        params=shared,
        composition=str(spec.composition.resolve()) if spec.composition else None,
        timeout_s=spec.timeout_s if math.isfinite(spec.timeout_s) else None,
        groups=tuple(GroupRecord(g.id, g.count, dict(g.params), spec.program_of(g))
                     for g in spec.groups),
        # no process id on this machine: a pod's process is not one
        instances=tuple(dataclasses.replace(s.to_record(), pid=None) for s in states),
        network=network_info(run, options, states),
        plan_dir=str(spec.plan.path.resolve()),
        faults=tuple(f.to_data() for f in spec.faults),
    )
