"""summary.json: the machine-readable summary of a run (also what `harness show` prints)."""

from __future__ import annotations

from typing import Any

from harness.observe._report._data import RunData
from harness.observe._report._faults import fault_rows
from harness.observe._runrecord import InstanceRecord, RunRecord


def failed(inst: InstanceRecord, run: RunRecord) -> bool:
    """Failed, or (once the run has ended) without a passing outcome; running is neither."""
    return inst.outcome == "failed" or (not run.goes_on and not inst.passed)


def run_summary(r: RunData) -> dict[str, Any]:
    """The summary of a loaded run."""
    run = r.run
    a = r.analysis
    failures = [i for i in r.instances if failed(i, run)]
    return {
        "run_id": run.run_id,
        "plan": run.plan,
        "case": run.case,
        "runner": run.runner,
        "origin": run.origin,
        "outcome": run.outcome,
        "exit_code": run.exit_code,
        "reason": run.reason,
        "duration_s": run.duration_s,
        "instances": {
            "total": len(r.instances),
            "passed": sum(i.passed for i in r.instances),
            "failed": len(failures),
        },
        "failures": [
            {"instance": i.id, "reason": i.reason, "exit_code": i.exit_code} for i in failures
        ],
        "warnings": r.warnings,
        "faults": [f.to_json() for f in fault_rows(r)],
        "notes": [
            {"instance": i.id, "note": i.note, "restarts": i.restarts}
            for i in r.instances if i.note or i.restarts
        ],
        "propagation": {
            t.topic: {
                "messages": t.messages,
                "p50_ms": t.p50_ms,
                "p90_ms": t.p90_ms,
                "p99_ms": t.p99_ms,
                "max_ms": t.max_ms,
                "coverage": t.coverage,
            }
            for t in a.topics
        },
        "out_of_line_hops": a.out_of_line,
        "report": "report.html",
    }
