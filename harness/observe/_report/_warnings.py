"""Warnings about the conditions a run ran in, where they weaken what its figures say
(summary.json's "warnings", the report's header, the end of `harness run`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from harness.observe import _tracefile
from harness.observe._cpuload import SATURATED_SHARE, cpu_load

if TYPE_CHECKING:
    from harness.observe._report._data import RunData


def run_warnings(r: RunData) -> list[str]:
    """One sentence per condition that weakens the run's figures (none: an empty list)."""
    return (_damaged(r) + _unreadable(r) + _damaged_traces(r) + _cut_traces(r) + _too_fast(r)
            + _saturated_cpu(r))


def _damaged(r: RunData) -> list[str]:
    r.fault_steps, r.shapes, r.telemetry  # noqa: B018 (damaged lines are counted as read)
    return [f"the run's {path.name} has {n:,} damaged line{'s' if n > 1 else ''} (not a JSON "
            "object), left out of this report: the record was cut short or edited."
            for path, n in sorted(r.damaged.items())]


def _unreadable(r: RunData) -> list[str]:
    r.fault_steps, r.shapes, r.telemetry  # noqa: B018 (unreadable files are found as read)
    return [f"the run's {os.path.relpath(path, r.dir)} could not be read ({why}): left out of "
            "this report." for path, why in sorted(r.unreadable.items())] + [
            f"the run's {os.path.relpath(path, r.dir)} could not be read ({why}): what it "
            "holds was taken from events.jsonl." for path, why in sorted(r.recovered.items())]


def _damaged_traces(r: RunData) -> list[str]:
    return [f"the message trace of {iid} {why}: its receipts that were not read are unknown, "
            "and count as not reached in the propagation figures." for iid, why
            in sorted(r.analysis.damaged.items())]


def _cut_traces(r: RunData) -> list[str]:
    cut = r.analysis.cut
    if not cut:
        return []
    who = ", ".join(cut[:5]) + (f" and {len(cut) - 5} more" if len(cut) > 5 else "")
    cap = _tracefile.MAX_TRACE_BYTES >> 20
    return [f"the message traces of {who} hold more than {cap} MiB once decompressed: only "
            "that much of each was read, so the propagation and hop figures leave out their "
            "later events."]


def _too_fast(r: RunData) -> list[str]:
    a = r.analysis
    if not a.too_fast:
        return []
    return [f"{a.too_fast:,} message hop{'s were' if a.too_fast > 1 else ' was'} faster than "
            f"the configured link allows (the fastest: {a.fastest}): those links were not "
            "shaped as network.jsonl records, or the traces misplace a message."]


def _saturated_cpu(r: RunData) -> list[str]:
    load = cpu_load(r.telemetry)
    if load is None or not load.saturated:
        return []
    a = r.analysis
    busy = a.causes.get("busy CPU", 0)
    text = (
        f"the host's CPU was saturated: runnable tasks waited for a CPU {load.waited:.0%} "
        f"of the time ({load.saturated_s:.0f} of {load.sampled_s:.0f} s at "
        f"{SATURATED_SHARE:.0%} or more)"
    )
    if busy:
        text += f"; {busy:,} of the {a.out_of_line:,} out-of-line hops are put down to it"
    return [
        text + ". Delays and timeouts in this run measure this machine as much as the "
        "emulated network: run fewer instances, or on more cores."
    ]
