"""The one benchmark report: every benchmark's figures, their peers', the previous report's.

    python benchmarks/report.py [--outputs DIR] [--since UNIX_TIME] [--threshold 0.10]
        [--readme README.md] [--carry]

Reads every `<outputs>/bench/*.json` (the schema: benchmarks/_figures.py, docs/benchmarks.md)
and the previous `<outputs>/bench-report.json` (where there is none, as on a fresh checkout,
or it lacks a figure, the table in --readme is the previous report); writes `bench-report.json` and
`bench-report.md` there, and, with --readme, the table into the README between its
`<!-- bench-report -->` and `<!-- /bench-report -->` lines. A figure worse than the previous
report's by more than --threshold (a fraction) plus however much slower the machine was
(the `speed` each figures file carries, against the previous figure's), and worse than each
of the last `RECENT` reports' (kept in bench-report.json: a figure that this machine's
noise has moved as far before is not flagged), is flagged as a regression; a file older
than --since (`nox -s bench` passes its own start) is flagged as not measured in this run.
With --carry (`nox -s bench -- <some benchmarks>` passes it), a figure of the previous report
that no file has now stays in the table as that report had it, flagged the same way: a run of
one benchmark on a fresh checkout does not cut the README's table down to that benchmark.
Exit 0 whatever the figures (benchmarks print figures, they do not fail), 2 on bad input
(no figure at all: then nothing is written).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, TypeGuard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import OUTPUTS, Figure, FiguresError, load

THRESHOLD = 0.10
"""A change worse than this fraction is flagged (a shared 2-core machine is noisy)."""
MACHINE_SHOWN = 0.05
"""A change of the machine's speed (`_speed`) from the previous figure's this large is shown."""
RECENT = 5
"""Reports whose figures a new one must be worse than, each, to be flagged."""
BEGIN, END = "<!-- bench-report -->", "<!-- /bench-report -->"
STALE = " (not measured in this run)"
_TARGET = re.compile(r"(<=|>=|<|>)\s*(\d[\d,]*(?:\.\d+)?)\s*(\S*).*")
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


def _previous(path: Path) -> tuple[dict[str, Any], str | None]:
    """The previous report ({} if there is none) and, if it is there but damaged, why
    ({} then too): figures that are not objects with a name are left out."""
    if not path.exists():
        return {}, None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {}, f"{path}: {e}"
    if not isinstance(report, dict) or not isinstance(report.get("figures", []), list):
        return {}, f"{path}: not a report (an object with a list of figures)"
    report["figures"] = [f for f in report.get("figures", [])
                         if isinstance(f, dict) and isinstance(f.get("name"), str)]
    return report, None


def _block(text: str) -> tuple[int, int] | None:
    """Where the table's block starts (its BEGIN line) and ends (its END line) in `text`:
    the markers on lines of their own, not quoted in prose or code (None if there are none)."""
    start = re.compile(rf"^{re.escape(BEGIN)}[ \t]*$", re.MULTILINE).search(text)
    if start is None:
        return None
    end = re.compile(rf"^{re.escape(END)}[ \t]*$", re.MULTILINE).search(text, start.end())
    return None if end is None else (start.start(), end.start())


def readme_report(readme: Path) -> dict[str, Any]:
    """The report whose table `update_readme` put in `readme`, as far as the table tells:
    when it was written and each figure's value and unit ({} if the README has no table)."""
    text = readme.read_text()
    found = _block(text)
    if found is None:
        return {}
    start, end = found
    block = text[start:end]
    written = block.partition("Measured by ")[2].partition(" on ")[0] or None
    figures = []
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[0] in ("figure", "---"):
            continue
        number, _, unit = cells[1].partition(" ")
        try:
            value = float(number.replace(",", ""))
        except ValueError:
            continue
        figure: dict[str, Any] = {"name": cells[0].removesuffix(STALE), "value": value,
                                  "unit": unit}
        if len(cells) == 8:  # the columns `table` writes
            _peer_cells(figure, cells)
        figures.append(figure)
    return {"written": written, "machine": None, "figures": figures}


def _peer_cells(figure: dict[str, Any], cells: list[str]) -> None:
    """The peer, its value, the ratio and the target of a table row, where it has them."""
    peer, peer_value, ratio, target = cells[2], cells[3], cells[4], cells[7]
    if peer != "-":
        figure["peer"] = peer
        with contextlib.suppress(ValueError):
            figure["peer_value"] = float(peer_value.partition(" ")[0].replace(",", ""))
    with contextlib.suppress(ValueError):
        figure["ratio"] = float(ratio.removesuffix("x"))
    target = target.removesuffix(" **not met**").strip()
    if target:
        figure["target"] = target


def gather(outputs: Path, since: float | None, threshold: float,
           readme: Path | None = None, carry: bool = False) -> dict[str, Any]:
    """The report's content: machine, figures with ratio and previous, problems. The
    previous report is `outputs`' one, else the table in `readme`; a figure the previous
    report lacks (it measured one benchmark, e.g. `nox -s bench -- benchmarks/X.py`) is
    compared with the README's table. With `carry`, the previous figures that no file has
    now are kept, after the others, as they were shown (`_carried`)."""
    previous, damaged = _previous(outputs / "bench-report.json")
    shown = readme_report(readme) if readme is not None else {}
    before = {f.get("name"): f for report in (shown, previous)
              for f in report.get("figures", []) if isinstance(f, dict)}  # fmt: skip
    if not previous:
        previous = shown
    figures: list[dict[str, Any]] = []
    problems: list[str] = []
    if damaged:
        problems.append(f"the previous report is unreadable ({damaged}); "
                        + ("the README's table stands in for it" if shown else "not compared"))
    seen: dict[str, str] = {}  # figure name: the file it was taken from
    peerless: dict[str, list[str]] = {}  # figures whose previous report had a peer's, by peer
    for path in sorted((outputs / "bench").glob("*.json")):
        try:
            found = load(path)
        except FiguresError as e:
            problems.append(str(e))
            continue
        measured = path.stat().st_mtime
        for fig in found:
            if fig.name in seen:
                problems.append(f"{path.name}: figure {fig.name!r} also in {seen[fig.name]}; "
                                "this one left out")
                continue
            seen[fig.name] = path.name
            prev = before.get(fig.name)
            if prev and isinstance(prev.get("unit"), str) and prev["unit"] != fig.unit:
                problems.append(f"{fig.name!r}: unit {fig.unit!r}, the previous report's "
                                f"{prev['unit']!r}; not compared")
                prev = None
            if prev and _is_number(prev.get("peer_value")) and fig.peer_value is None:
                peerless.setdefault(str(prev.get("peer") or "a peer"), []).append(fig.name)
            row = _row(fig, path.stem, measured, since, prev, threshold)
            figures.append(row | {"target_met": target_met(row)})
    problems += [f"{len(names)} figure(s) without their peer's this time (the previous "
                 f"report's: {peer}): {', '.join(map(repr, names))}"
                 for peer, names in peerless.items()]
    # A figure that silently stops being measured (a peer or tool missing on this
    # machine) would otherwise just vanish from the table.
    lost = [name for name in before if name not in seen]
    if lost:
        kept = " (kept from it, marked not measured in this run)" if carry else ""
        problems.append(f"{len(lost)} figure(s) of the previous report not measured this "
                        f"time{kept}: {', '.join(map(repr, lost))}")
        if carry:
            figures += [_carried(before[name]) for name in lost
                        if _is_number(before[name].get("value"))]
    load_avg = os.getloadavg()
    return {
        "written": _iso(datetime.datetime.now(datetime.UTC).timestamp()),
        "machine": {"cores": os.cpu_count(), "load": [round(x, 2) for x in load_avg],
                    "host": os.uname().nodename, "kernel": os.uname().release},
        "threshold": threshold,
        "previous": {"written": previous.get("written"), "machine": previous.get("machine")},
        "figures": figures,
        "problems": problems,
    }


def _row(fig: Figure, source: str, measured: float, since: float | None,
         prev: dict[str, Any] | None, threshold: float) -> dict[str, Any]:
    row = fig.as_item()
    stale = since is not None and measured < since
    row.update(source=source, measured=_iso(measured), ratio=fig.ratio, stale=stale,
               previous=None, change=None, regressed=False, recent=[fig.value], machine=None)
    old = prev.get("value") if prev else None
    if stale and prev and prev.get("measured") == row["measured"] and old == fig.value:
        # The previous report's own figure, not measured again: it stays compared with what
        # that report compared it with (against itself, a regression would vanish).
        row.update({k: prev.get(k) if _is_number(prev.get(k)) else None
                    for k in ("previous", "change", "machine")},
                   recent=_recent(prev, old), regressed=prev.get("regressed") is True)
        return row
    if prev and _is_number(old):
        # Positive: the figure grew. From 0 no change is a fraction: shown as none, and
        # not flagged (a figure measured as 0 is one at the resolution of its measure).
        change = (fig.value - old) / abs(old) if old != 0 else None
        recent = _recent(prev, old)
        worse = (fig.value > max(recent)) if fig.lower_is_better else (fig.value < min(recent))
        # How much slower the machine was than when the previous figure was measured:
        # that much more of a change is the machine's, not the code's.
        before = prev.get("speed")
        machine = (fig.speed / before - 1 if fig.speed is not None and _is_number(before)
                   and before > 0 else None)
        allowed = threshold + max(0.0, machine or 0.0)
        row.update(previous=old, change=change, machine=machine,
                   recent=recent if stale else [*recent, fig.value][-RECENT:],
                   regressed=fig.judged and worse and change is not None
                   and (change if fig.lower_is_better else -change) > allowed)
    return row


def _carried(prev: dict[str, Any]) -> dict[str, Any]:
    """A previous figure that this run did not measure, as the previous report showed it
    (the README's table tells less than bench-report.json: no change, no history)."""
    def number(key: str) -> float | None:
        value = prev.get(key)
        return value if _is_number(value) else None

    row = {"name": prev["name"], "value": prev["value"], "unit": str(prev.get("unit", "")),
           "peer": prev.get("peer") if isinstance(prev.get("peer"), str) else None,
           "peer_value": number("peer_value"), "ratio": number("ratio"),
           "target": prev.get("target") if isinstance(prev.get("target"), str) else None,
           "source": prev.get("source"), "measured": prev.get("measured"), "stale": True,
           "previous": number("previous"), "change": number("change"),
           "machine": number("machine"), "regressed": prev.get("regressed") is True,
           "recent": _recent(prev, prev["value"])}
    return row | {"target_met": target_met(row)}


def target_met(row: dict[str, Any]) -> bool | None:
    """Whether the row's figure meets its target ("<= 1 ms", ">= 20,000 msgs/s", "< 4x";
    "<= 0.25x Mininet's" for a figure not itself in x: its ratio to the peer); None where
    there is no target, or none this can read, or no ratio for it."""
    match = _TARGET.fullmatch((row.get("target") or "").strip())
    if match is None:
        return None
    op, number, unit = match.groups()
    bound = float(number.replace(",", ""))
    value = row["value"]
    if unit == "x" and row["unit"] != "x":
        value = row.get("ratio")
    elif unit != row["unit"]:
        if unit not in _SECONDS or row["unit"] not in _SECONDS:
            return None
        value = value * _SECONDS[row["unit"]] / _SECONDS[unit]
    if not _is_number(value):
        return None
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound,
            ">": value > bound}[op]


def _recent(prev: dict[str, Any], old: float) -> list[float]:
    """The previous figure's last `RECENT` values (itself alone if it kept none)."""
    kept = prev.get("recent")
    values = [v for v in kept if _is_number(v)] if isinstance(kept, list) else []
    return values[-RECENT:] or [old]


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _ratio(ratio: float) -> str:
    """Two decimals, or two significant digits below 0.01 (where two decimals read 0.00)."""
    return f"{ratio:.2f}x" if abs(ratio) >= 0.01 or ratio == 0 else f"{ratio:.2g}x"


def measured_load(report: dict[str, Any]) -> str:
    """The range of the 1-minute load averages the figures were measured at."""
    loads = [f["load"] for f in report["figures"] if isinstance(f.get("load"), int | float)]
    if not loads:
        return "unknown"
    low, high = min(loads), max(loads)
    return f"{low:.1f}" if high - low < 0.05 else f"{low:.1f} to {high:.1f}"


def table(report: dict[str, Any]) -> str:
    """The figures as one Markdown table, regressions flagged."""
    lines = [
        "| figure | ours | peer | peer's | ours / peer | previous | change | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in report["figures"]:
        unit = f" {f['unit']}" if f["unit"] else ""
        change = "-" if f["change"] is None else f"{f['change'] * 100:+.0f}%"
        if f.get("machine") is not None and abs(f["machine"]) >= MACHINE_SHOWN:
            change += f" (machine {'slower' if f['machine'] > 0 else 'faster'} by " \
                      f"{abs(f['machine']) * 100:.0f}%)"
        if f["regressed"]:
            change += " **regressed**"
        name = f["name"] + (STALE if f["stale"] else "")
        peer_value = "-" if f.get("peer_value") is None else _num(f["peer_value"]) + unit
        ratio = "-" if f["ratio"] is None else _ratio(f["ratio"])
        target = (f.get("target") or "") + (" **not met**" if f.get("target_met") is False
                                            else "")
        previous = "-" if f["previous"] is None else _num(f["previous"]) + unit
        lines.append(f"| {name} | {_num(f['value'])}{unit} | {f.get('peer') or '-'} | "
                     f"{peer_value} | {ratio} | {previous} | {change} | "
                     f"{target} |")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The whole report in Markdown: machine, table, problems."""
    m = report["machine"]
    load_avg = ", ".join(f"{x:.2f}" for x in m["load"])
    prev = report["previous"]["written"] or "none"
    regressed = sum(1 for f in report["figures"] if f["regressed"])
    unmet = sum(1 for f in report["figures"] if f.get("target_met") is False)
    out = [
        f"# Benchmark report, {report['written']}",
        "",
        f"Machine: {m['cores']} cores, load average {load_avg} (1, 5, 15 min) when written, "
        f"{measured_load(report)} (1 min) when the figures were measured; "
        f"{m['host']}, Linux {m['kernel']}. Previous report: {prev}. "
        f"{regressed} regression(s): worse than the previous report by more than "
        f"{report['threshold'] * 100:.0f}% (plus however much slower the machine ran the "
        f"calibration workload as the figure was written) and than each of the last "
        f"{RECENT} reports. {unmet} target(s) not met.",
        "",
        table(report),
        "",
        "ours / peer: our figure over the peer's from the same run (for times, below 1 is "
        "faster). Each figure's load average when measured is in bench-report.json.",
    ]
    if report["problems"]:
        out += ["", "Problems:", *[f"- {p}" for p in report["problems"]]]
    return "\n".join(out) + "\n"


def update_readme(readme: Path, report: dict[str, Any]) -> bool:
    """Put the table between the README's markers; False if it has none."""
    text = readme.read_text()
    found = _block(text)
    if found is None:
        return False
    start, end = found
    m = report["machine"]
    block = (f"{BEGIN}\nMeasured by {report['written']} on {m['cores']} cores, at load average "
             f"{measured_load(report)} (`nox -s bench`; outputs/bench-report.md):\n\n"
             f"{table(report)}\n")
    if report["problems"]:
        block += "\nProblems:\n\n" + "".join(f"- {p}\n" for p in report["problems"])
    readme.write_text(text[:start] + block + text[end:])
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=Path, default=OUTPUTS)
    parser.add_argument("--since", type=float, default=None)
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument("--readme", type=Path, default=None)
    parser.add_argument("--carry", action="store_true",
                        help="keep the previous report's figures that no file has now")
    args = parser.parse_args()
    if not 0 <= args.threshold < 10:
        print(f"report: --threshold is a fraction such as 0.1, not {args.threshold}",
              file=sys.stderr)
        return 2
    if args.readme is not None and not args.readme.is_file():
        print(f"report: no README at {args.readme}", file=sys.stderr)
        return 2
    report = gather(args.outputs, args.since, args.threshold, args.readme, args.carry)
    if not report["figures"]:
        # Written, it would replace the previous report and the README's table with nothing.
        problems = "; ".join(report["problems"]) or "no figures files"
        print(f"report: no figures in {args.outputs / 'bench'} ({problems}); nothing written",
              file=sys.stderr)
        return 2
    args.outputs.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (args.outputs / "bench-report.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.outputs / "bench-report.md").write_text(text)
    print(text)
    if args.readme is not None and not update_readme(args.readme, report):
        print(f"report: {args.readme} has no {BEGIN} ... {END} block; not updated",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
