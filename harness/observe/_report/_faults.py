"""The report's faults: what faults.jsonl says each fault did, as timeline markers and
spans, the Faults section, and summary.json's `faults` (what `harness show` lists)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from html import escape
from typing import Any

from harness.faults import NETWORK, PROCESS, RESOURCE, TIME
from harness.observe._report._data import RunData
from harness.observe._report._format import num

#: The colour of each kind of fault on the timeline; a failed fault is red.
FAULT_COLOURS = {"network": "#c2255c", "process": "#862e9c", "time": "#1098ad",
                 "resource": "#5c940d", "failed": "#e03131"}  # fmt: skip
_KINDS = {**dict.fromkeys(NETWORK, "network"), **dict.fromkeys(PROCESS, "process"),
          **dict.fromkeys(TIME, "time"), **dict.fromkeys(RESOURCE, "resource")}  # fmt: skip


_AT_ONCE = ("heal", "resume", "restart")  # acts and is over: a marker, no span


@dataclasses.dataclass
class FaultRow:
    """One fault of the run: when it was applied and undone (seconds since the run's start),
    whom it chose, whom it missed (not running), and why it failed, if it did."""

    name: str  # "fault N" (planned) or "live N (asked by)"
    action: str
    applied: float | None = None
    undone: float | None = None
    chosen: tuple[str, ...] = ()
    missed: tuple[str, ...] = ()
    failures: list[str] = dataclasses.field(default_factory=list)
    failed_at: float | None = None  # when it first failed
    played: bool = True  # False: never applied (the run ended first, or it failed)

    @property
    def kind(self) -> str:
        """network, process, time or resource."""
        return _KINDS.get(self.action, "network")

    def to_json(self) -> dict[str, Any]:
        """Its entry in summary.json."""
        return {"fault": self.name, "action": self.action, "kind": self.kind,
                "applied_s": self.applied, "undone_s": self.undone, "chosen": list(self.chosen),
                "missed": list(self.missed), "failures": self.failures,
                "failed_s": self.failed_at,
                "played": self.played}  # fmt: skip


def _missed_all(chosen: Sequence[str], missed: Sequence[str]) -> bool:
    """Whether a fault found none of the instances it chose running: it did nothing."""
    return bool(chosen) and set(chosen) <= set(missed)


def fault_line(entry: dict[str, Any]) -> str:
    """One line for `harness show`, from a fault's entry in summary.json."""
    name, action = entry.get("fault"), entry.get("action")
    if not entry.get("played", True) and not entry.get("failures"):
        return f"{name} ({action}): not played (the run ended before it was applied)"
    applied, undone, failed = entry.get("applied_s"), entry.get("undone_s"), entry.get("failed_s")
    when = (f"{num(applied, 2)} s" if applied is not None
            else f"{num(failed, 2)} s" if failed is not None else "never")  # fmt: skip
    text = f"{when:>9}  "
    text += f"{name} ({action})"
    if entry.get("chosen"):
        text += " on " + ", ".join(entry["chosen"])
    missed = entry.get("missed") or []
    if undone is not None and not _missed_all(entry.get("chosen") or (), missed):
        text += f", undone at {num(undone, 2)} s"  # (one that missed all did nothing)
    if missed:
        text += f"; missed (not running): {', '.join(missed)}"
    return text + "".join(f"; FAILED: {f}" for f in entry.get("failures") or ())


def fault_rows(r: RunData) -> list[FaultRow]:
    """Every fault faults.jsonl records, in the order they first did something, then the
    planned ones that never came to be played."""
    rows: dict[str, FaultRow] = {}
    for step in r.fault_steps:
        name = str(step.get("fault") or "?")
        row = rows.setdefault(name, FaultRow(name, str(step.get("action") or "?")))
        t = r.rel(step)
        kind = step.get("step")
        if kind == "applied":
            row.applied = t
            row.chosen, row.missed = _ids(step.get("chosen")), _ids(step.get("missed"))
        elif kind == "undone":
            row.undone = t
        elif kind == "failed":
            row.failures.append(str(step.get("reason") or "failed"))
            row.failed_at = row.failed_at if row.failed_at is not None else t
    for row in rows.values():
        row.played = row.applied is not None
    for n, planned in enumerate(r.run.faults or ()):
        name = f"fault {n}"
        if name not in rows:
            rows[name] = FaultRow(name, str(planned.get("action") or "?"), played=False)
    return list(rows.values())


def fault_marks(
    rows: Sequence[FaultRow], end: float
) -> tuple[list[tuple[float, str, str]], list[tuple[float, float, str, str]]]:
    """The timeline's markers (one per applied or failed fault) and spans (while a fault
    was in force: from applied to undone, or, without an undo, to the next heal of a cut,
    the next resume of a pause, or the run's end)."""
    markers: list[tuple[float, str, str]] = []
    spans: list[tuple[float, float, str, str]] = []
    for row in rows:
        colour = FAULT_COLOURS["failed" if row.failures else row.kind]
        label = f"{row.name}: {row.action}"
        if row.applied is not None:
            who = f" {', '.join(row.chosen[:3])}{', …' if len(row.chosen) > 3 else ''}"
            if _missed_all(row.chosen, row.missed):  # it did nothing: no span
                markers.append((row.applied, colour, f"{label} missed{who}"))
                continue
            markers.append((row.applied, colour, label + (who if row.chosen else "")))
            until = _until(row, rows, end)
            if until is not None:
                spans.append((row.applied, until, colour,
                              f"{label} from {num(row.applied, 2)} to {num(until, 2)} s"))
        elif row.failed_at is not None:  # it never happened: when it failed
            markers.append((row.failed_at, colour, f"{label} failed"))
    return markers, spans


def _until(row: FaultRow, rows: Sequence[FaultRow], end: float) -> float | None:
    """When an applied fault stopped being in force; None for one that acts at once."""
    if row.undone is not None:
        return row.undone
    if row.action in _AT_ONCE or row.applied is None:
        return None
    ender = {"partition": "heal", "isolate": "heal", "pause": "resume"}.get(row.action)
    later = [o.applied for o in rows if o.action == ender and o.applied is not None
             and o.applied >= row.applied and (ender == "heal" or set(o.chosen) & set(row.chosen))]
    return min(later, default=end)


def _when(row: FaultRow) -> str:
    if row.applied is not None:
        return f"{num(row.applied, 2)} s"
    if row.failed_at is not None:
        return f"{num(row.failed_at, 2)} s (failed)"
    return "—"


def faults_section(rows: Sequence[FaultRow]) -> str:
    """The Faults section (empty when the run had none)."""
    if not rows:
        return ""
    body = []
    for row in rows:
        colour = FAULT_COLOURS[row.kind]
        state = "" if row.played else "not played (the run ended before it was applied)"
        body.append(
            f"<tr class='{'fail' if row.failures else ''}'>"
            f"<td class='num'>{_when(row)}</td><td><b>{escape(row.name)}</b></td>"
            f"<td><span class='tag' style='background:{colour}22;color:{colour}'>"
            f"{escape(row.kind)}</span> {escape(row.action)}</td>"
            f"<td>{escape(', '.join(row.chosen))}</td>"
            f"<td class='num'>{num(row.undone, 2) + ' s' if row.undone is not None else '—'}</td>"
            f"<td>{escape(', '.join(row.missed))}</td>"
            f"<td>{escape('; '.join(row.failures) or state)}</td></tr>"
        )
    return (
        '<section id="faults"><h2>Faults</h2><p class="sub">Every fault the supervisor played'
        " (faults.jsonl): when it was applied and undone (seconds since the run's start, as on "
        "the timeline), the instances it chose, those it missed (not running then) and why it "
        "failed, if it did.</p><div class='scroll'><table><thead><tr><th>applied</th>"
        "<th>fault</th><th>action</th><th>chosen</th><th>undone</th><th>missed</th>"
        f"<th>failures</th></tr></thead><tbody>{''.join(body)}</tbody></table></div></section>"
    )


def _ids(value: object) -> tuple[str, ...]:
    """A step's instance ids (none where a damaged record holds something else)."""
    return tuple(str(i) for i in value) if isinstance(value, list) else ()
