"""`RunData`: everything the report reads from a run directory, each input read once."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.observe._jsonl import ReadFailed, read_jsonl
from harness.observe._rundir import instance_dirs
from harness.observe._runrecord import InstanceRecord, RunRecord, load_run
from harness.observe._shapes import ShapeTimeline
from harness.observe._stored import read_telemetry
from harness.observe._tracefile import TRACE_FILE, TRACE_GZ_FILE

_TRACE_NAMES = frozenset({TRACE_FILE, TRACE_GZ_FILE})
_TELEMETRY = frozenset({
    "ts", "mono", "kind",
    "src", "dst", "packets", "queue_delay_ms", "drops",  # a link's sample
    "instance", "peer", "rtt_ms", "retrans_total",  # a TCP connection's
    "wait_us_total",  # the CPU's
    "source", "error",  # a sampler's error
})
"""The telemetry keys the report reads (the charts' section and the hops' diagnosis)."""

if TYPE_CHECKING:  # the analysis (and numpy) is imported by a report that needs it
    from harness.observe._trace import TraceAnalysis


class RunData:
    """A run directory loaded for the report: its record and events now, the rest (link
    shapes, telemetry, trace analysis) on first use, each once for every writer."""

    def __init__(self, run_dir: Path, record: RunRecord) -> None:
        self.dir = run_dir
        self.run = record
        self.damaged: dict[Path, int] = {}
        """Lines of the run's own records (events, faults, network changes, telemetry) that
        are not JSON objects, by file: left out."""
        self.unreadable: dict[Path, str] = {}
        """The run's files that are there but could not be read, with why: left out."""
        self.recovered: dict[Path, str] = {}
        """The run's files that could not be read (or are gone), with why, whose content was
        taken from another record that holds it too."""
        # Once the run has ended its records are whole: a last line without its newline was
        # cut short, not left unfinished by a live writer (`read_jsonl`'s `finished`).
        self.finished = record.is_over
        events = run_dir / "events.jsonl"
        self.events = list(read_jsonl(events, self.damaged, self.skip, self.finished))
        if self.finished and not events.exists():
            self.unreadable[events] = "it is missing"
        self.instances: tuple[InstanceRecord, ...] = record.instances
        self.dirs = instance_dirs(run_dir, record)
        self.inst_dirs = {d.id: d.path for d in self.dirs}
        self._files: dict[str, frozenset[str]] = {}
        monos = [float(e["mono"]) for e in self.events if isinstance(e.get("mono"), int | float)]
        offsets = [
            float(e["ts"]) - float(e["mono"])
            for e in self.events
            if isinstance(e.get("ts"), int | float) and isinstance(e.get("mono"), int | float)
        ]
        self.offset = offsets[0] if offsets else self._offset_elsewhere()
        if record.started is not None and self.offset is not None:
            self.mono0 = record.started - self.offset
        else:
            self.mono0 = min(monos) if monos else 0.0

    def _offset_elsewhere(self) -> float | None:
        """Unix time minus CLOCK_MONOTONIC from the first stamped line of the run's other
        records, without events.jsonl (gone, unreadable): else every time since the start
        read as the machine's uptime ("a failure at 50025.7 s")."""
        for name in ("supervisor.jsonl", "faults.jsonl", "network.jsonl"):
            for line in read_jsonl(self.dir / name, unreadable=self.skip):
                ts, mono = line.get("ts"), line.get("mono")
                if isinstance(ts, int | float) and isinstance(mono, int | float):
                    return float(ts) - float(mono)
        return None

    def skip(self, error: ReadFailed) -> None:
        """Leave out a file that could not be read (`unreadable` says so)."""
        self.unreadable[error.path] = error.reason

    @classmethod
    def load(cls, run_dir: Path) -> RunData:
        """Read `run_dir`; a UsageError when it holds no run record."""
        return cls(run_dir, load_run(run_dir))

    def rel(self, rec: dict[str, Any]) -> float | None:
        """Seconds since the run's start of a record with mono (or ts)."""
        if isinstance(rec.get("mono"), int | float):
            return float(rec["mono"]) - self.mono0
        if isinstance(rec.get("ts"), int | float) and self.offset is not None:
            return float(rec["ts"]) - self.offset - self.mono0
        return None

    def rel_ts(self, ts: float | None) -> float | None:
        """Seconds since the run's start of a Unix time."""
        if ts is None:
            return None
        if self.offset is None:
            return ts - self.run.started if self.run.started is not None else None
        return ts - self.offset - self.mono0

    def inst_dir(self, iid: str) -> Path:
        """The output directory of instance `iid`."""
        return self.inst_dirs.get(iid, self.dir / iid)

    def files(self, iid: str) -> frozenset[str]:
        """The names in instance `iid`'s directory (one listing per instance and report:
        a 1,000-instance run's report asked the file system 15,000 times)."""
        names = self._files.get(iid)
        if names is None:
            try:
                names = self._files[iid] = frozenset(os.listdir(self.inst_dir(iid)))
            except OSError:  # no directory (an instance never started): no files
                names = self._files[iid] = frozenset()
        return names

    def link(self, iid: str, name: str) -> str | None:
        """The path of an instance's file relative to the run directory, if it exists."""
        if name not in self.files(iid):
            return None
        return os.path.relpath(self.inst_dir(iid) / name, self.dir)

    @functools.cached_property
    def shapes(self) -> ShapeTimeline:
        """The run's link shapes over time (run.json and network.jsonl)."""
        return ShapeTimeline.from_run_dir(self.dir, self.run, self.damaged, self.skip,
                                          self.finished)

    @functools.cached_property
    def fault_steps(self) -> list[dict[str, Any]]:
        """The records of faults.jsonl: each step of each fault the supervisor played; from
        events.jsonl, which has each of them too, when faults.jsonl is gone or unreadable
        (else every fault read as "not played"; `recovered` says so)."""
        path = self.dir / "faults.jsonl"
        steps = list(read_jsonl(path, self.damaged, self.skip, self.finished))
        if steps or not (path in self.unreadable or not path.exists()):
            return steps
        for event in self.events:
            if event.get("kind") == "fault":
                step = {k: v for k, v in event.items() if k not in ("kind", "partition_kind")}
                if "partition_kind" in event:
                    step["kind"] = event["partition_kind"]
                steps.append(step)
        if steps:
            why = self.unreadable.pop(path, "it is missing")
            self.recovered[path] = why
        return steps

    @functools.cached_property
    def telemetry(self) -> list[dict[str, Any]]:
        """The records of telemetry.jsonl, with the keys the report reads (`_TELEMETRY`)."""
        return read_telemetry(self.dir, _TELEMETRY, self.damaged, self.skip, self.finished)

    @functools.cached_property
    def warnings(self) -> list[str]:
        """What weakens the run's figures, a sentence each (`run_warnings`)."""
        from harness.observe._report._warnings import run_warnings

        return run_warnings(self)

    @functools.cached_property
    def analysis(self) -> TraceAnalysis:
        """The trace analysis (propagation and per-hop delays)."""
        from harness.observe._trace import analyse_loaded

        traced = [d for d in self.dirs if _TRACE_NAMES & self.files(d.id)]
        return analyse_loaded(traced, self.shapes, self.telemetry)
