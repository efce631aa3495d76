"""Everything that happens in a run, one event a line: events.jsonl (instances, signals,
barriers, topics, connections, phases, faults) merged in time order with network.jsonl
(every change of the network, as `{"kind": "network", "op", "asked_by", ...}`).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from harness._tell import one_line
from harness.observe._jsonl import Tail, Unreadable, number, parse_line, read_jsonl, told_once
from harness.observe._rundir import follow_run, run_ended
from harness.observe._runrecord import RecordError, read_run
from harness.observe._shapes import BACKEND_OPS

SOURCES = ("events.jsonl", "network.jsonl")
"""The files the events come from, in the run directory."""

# What leads each kind's line, after the instance; the other fields follow as key=value.
_LEAD = {
    "instance": ("status",),
    "event": ("type", "message", "error"),
    "signal": ("state", "seq"),
    "barrier": ("state", "target", "status"),
    "publish": ("topic", "seq"),
    "subscription": ("topic",),
    "connection": ("status", "reason"),
    "phase": ("name", "reason"),
    "fault": ("fault", "step", "action", "chosen"),
    "network": ("op", "event", "asked_by", "message"),
}
_HIDDEN = {"ts", "mono", "kind", "instance", "stacktrace"}
_HIDDEN_BY_KIND = {"network": {"asked"}}  # what was asked: `applied` says what was done


def _network(line: dict[str, Any]) -> dict[str, Any] | None:
    """A network.jsonl line as an event; None for what events.jsonl has already (the
    backend's failure and notes are recorded in both)."""
    if line.get("op") in BACKEND_OPS:
        return None
    return {"kind": "network", **line}


def _mono(event: dict[str, Any]) -> float:
    mono = number(event.get("mono"))
    return float("-inf") if mono is None else mono


def run_events(run_dir: Path, unreadable: Unreadable | None = None) -> Iterator[dict[str, Any]]:
    """The run's events so far, in time order (by `mono`); a file that cannot be read is
    told to `unreadable` and left out, where it is given (`read_jsonl`)."""
    events = read_jsonl(run_dir / SOURCES[0], unreadable=unreadable)
    network = (e for e in map(_network, read_jsonl(run_dir / SOURCES[1], unreadable=unreadable))
               if e is not None)
    return heapq.merge(events, network, key=_mono)


def follow_events(
    run_dir: Path,
    *,
    ended: Callable[[Path], bool] = run_ended,
    poll: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
    unreadable: Unreadable | None = None,
) -> Iterator[dict[str, Any]]:
    """The run's events so far, then those that come, until `ended(run_dir)`; those that
    arrive in one poll are ordered among themselves. A file that cannot be read is told to
    `unreadable` once and left out, where it is given."""
    told = told_once(unreadable)
    tails = [(Tail(run_dir / name, unreadable=told), name == SOURCES[1]) for name in SOURCES]

    def read(final: bool) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        for tail, is_network in tails:
            for raw in tail.lines(final=final):
                event = parse_line(raw)
                if event is not None and is_network:
                    event = _network(event)
                if event is not None:
                    batch.append(event)
        return sorted(batch, key=_mono)

    return follow_run(run_dir, read, ended=ended, poll=poll, sleep=sleep)


def started_at(run_dir: Path) -> float | None:
    """When the run started (run.json's `started`), if it says so yet."""
    try:
        run = read_run(run_dir)
    except RecordError:
        return None
    return run.started if run is not None else None


def format_event(event: dict[str, Any], start: float | None) -> str:
    """`+SECONDS  KIND  INSTANCE  essentials key=value ...`: seconds since `start` (the
    event's own time when there is no start)."""
    ts = event.get("ts")
    when = (f"{ts - start:+10.3f}s" if isinstance(ts, int | float) and start is not None
            else f"{ts:.3f}" if isinstance(ts, int | float) else "?")  # fmt: skip
    kind = str(event.get("kind", "?"))
    lead = _LEAD.get(kind, ())
    parts = [_text(event[k]) for k in lead if event.get(k) is not None]
    hidden = _HIDDEN | _HIDDEN_BY_KIND.get(kind, set())
    parts += [f"{k}={_text(v)}" for k, v in event.items()
              if k not in hidden and k not in lead and v is not None]  # fmt: skip
    instance = _text(event.get("instance") or "-")
    # what an instance named a state or said may hold newlines and terminal escapes
    return one_line(f"{when} {kind:<12} {instance:<14} {' '.join(parts)}".rstrip(), 10_000)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return orjson.dumps(value).decode()

