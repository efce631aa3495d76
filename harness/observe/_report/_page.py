"""report.html: one self-contained page (styles, script and charts inline)."""

from __future__ import annotations

import time
from collections import defaultdict
from html import escape
from pathlib import Path

import orjson

from harness._tell import one_line
from harness.observe import _svg
from harness.observe._jsonl import ReadFailed, Unreadable, read_jsonl, read_tail
from harness.observe._report._assets import asset
from harness.observe._report._charts import metrics_section, telemetry_section
from harness.observe._report._data import RunData
from harness.observe._report._faults import (
    FAULT_COLOURS,
    FaultRow,
    fault_marks,
    fault_rows,
    faults_section,
)
from harness.observe._report._format import num, ts
from harness.observe._report._network import MARK, network_markers, network_section
from harness.observe._report._propagation import propagation_section

_NAV = (
    ("instances-sec", "Instances"),
    ("timeline", "Timeline"),
    ("faults", "Faults"),
    ("network", "Network"),
    ("metrics", "Metrics"),
    ("propagation", "Propagation"),
    ("telemetry", "Telemetry"),
    ("params", "Parameters"),
)


def render_page(r: RunData) -> str:
    """The report of a loaded run as one HTML document."""
    run = r.run
    outcome = run.outcome or "unknown"
    title = f"{run.plan or '?'}:{run.case or '?'}"
    faults = fault_rows(r)
    nav = "".join(f'<a href="#{a}">{b}</a>' for a, b in _NAV if faults or a != "faults")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} — {escape(run.run_id)}</title>"
        f'<link rel="icon" href="data:,"><style>\n{asset("report.css")}</style></head><body>'
        f'<header><h1>{escape(title)}<span class="badge {escape(outcome)}">'
        f"{escape(outcome)}</span></h1>"
        f'<div class="sub">run <code>{escape(run.run_id)}</code>'
        f"{' — ' + escape(one_line(run.reason, 300)) if run.reason else ''}</div>"
        + (f'<div class="sub">started by {escape(one_line(run.origin, 300))}</div>'
           if run.origin else "")
        + "".join(f'<p class="warn">{escape(w[:1].upper() + w[1:])}</p>' for w in r.warnings)
        + f"{_summary_cards(r)}<nav style='margin-top:12px'>{nav}</nav></header><main>"
        + _failures(r)
        + _instances_table(r)
        + _timeline(r, faults)
        + faults_section(faults)
        + network_section(r)
        + metrics_section(r)
        + propagation_section(r.analysis)
        + telemetry_section(r)
        + _params(r)
        + f'<p class="sub">Written {ts(time.time())} by harness report.</p>'
        f"</main><script>\n{asset('report.js')}</script></body></html>"
    )


def _summary_cards(r: RunData) -> str:
    passed = sum(1 for i in r.instances if i.passed)
    duration = r.run.duration_s
    exit_code = r.run.exit_code
    cards = [
        (f"{passed}/{len(r.instances)}", "instances passed"),
        (num(duration) + " s" if duration is not None else "—", "duration"),
        (r.run.runner or "—", "runner"),
        (str(exit_code) if exit_code is not None else "—", "exit code"),
        (ts(r.run.started), "started"),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{escape(a)}</b><span>{escape(b)}</span></div>' for a, b in cards
        )
        + "</div>"
    )


def _failures(r: RunData) -> str:
    failed = [i for i in r.instances if i.outcome not in ("passed", None)]
    if not failed and r.run.outcome in ("passed", "running", None):
        return ""
    parts = ['<section class="fails" id="failures"><h2>Failures</h2>']
    if r.run.reason:
        parts.append(f"<p><b>Run:</b> {escape(one_line(r.run.reason, 1000))}</p>")
    for inst in failed:
        iid = inst.id
        parts.append(f"<h3>{escape(iid)} — {escape(one_line(inst.reason or 'failed', 1000))}</h3>")
        unread: list[str] = []  # read after the warnings are made: said here

        def skip(error: ReadFailed, unread: list[str] = unread) -> None:
            unread.append(f"{error.path.name} could not be read ({error.reason})")

        errors = [  # each a line, cut as the reasons are: a record may hold megabytes
            one_line(f"{num(r.rel(rec), 3)} s  {rec.get('level', '')}  {rec.get('event', '')}",
                     1000)
            for rec in read_jsonl(r.inst_dir(iid) / "log.jsonl", unreadable=skip)
            if str(rec.get("level", "")).lower() in ("error", "critical")
        ][-8:]
        tail = _tail(r.inst_dir(iid) / "stderr.log", 8, skip)
        if unread:
            parts.append(f'<div class="sub">{escape("; ".join(unread))}</div>')
        if errors:
            parts.append("<pre>" + escape("\n".join(errors)) + "</pre>")
        if tail:
            parts.append(
                f'<div class="sub">last lines of '
                f'<a href="{escape(r.link(iid, "stderr.log") or "")}">'
                f"stderr.log</a></div><pre>{escape(tail)}</pre>"
            )
    parts.append("</section>")
    return "".join(parts)


def _tail(path: Path, n: int, unreadable: Unreadable) -> str:
    return "\n".join(read_tail(path, 8192, unreadable).splitlines()[-n:])


def _instances_table(r: RunData) -> str:
    rows = []
    for inst in r.instances:
        iid = inst.id
        outcome = inst.outcome
        links = " ".join(
            f'<a href="{escape(href)}">{name}</a>'
            for name in ("log.jsonl", "stdout.log", "stderr.log", "metrics.jsonl", "trace.jsonl",
                         "trace.jsonl.gz")
            if (href := r.link(iid, name))
        )
        exit_code = str(inst.exit_code) if inst.exit_code is not None else ""
        rows.append(
            f'<tr class="{"fail" if outcome == "failed" else ""}"><td><b>{escape(iid)}</b></td>'
            f"<td>{escape(inst.role or '')}</td>"
            f"<td class='addr'><code>{escape(inst.ip or '')}</code></td>"
            f'<td><span class="badge {escape(outcome or "unknown")}">'
            f"{escape(outcome or '?')}</span></td>"
            f'<td class="num">{escape(exit_code)}</td>'
            f'<td class="num">{num(inst.duration_s)} s</td>'
            f'<td class="num">{inst.restarts or ""}</td><td>{escape(one_line(inst.reason or "", 1000))}'
            f"{_note(inst.note, bool(inst.reason))}</td><td>{links}</td></tr>"
        )
    return (
        '<section id="instances-sec"><h2>Instances</h2>'
        '<input id="flt" placeholder="filter instances…" aria-label="filter instances">'
        '<div class="scroll"><table id="instances"><thead><tr><th>instance</th><th>role</th><th>address</th>'
        "<th>outcome</th><th>exit</th><th>ran for</th><th>restarts</th><th>reason / note</th>"
        "<th>logs</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _note(note: str | None, after_reason: bool) -> str:
    """What a fault did to an instance that did not fail it (e.g. killed, as expected)."""
    if not note:
        return ""
    return f'{"<br>" if after_reason else ""}<span class="sub">{escape(note)}</span>'


_LANES = 60  # the most instances the timeline draws
_ENDED_BY_A_FAULT = "#868e96"  # a life a fault ended before the last (grey)


def _lives(changes: list[tuple[float, bool]]) -> list[list[float | None]]:
    """[start, end] of each life of an instance (a fault's restart starts another) from
    its starts and exits; None where one was not recorded."""
    lives: list[list[float | None]] = []
    for t, started in sorted(changes):
        if started:
            lives.append([t, None])
        elif lives and lives[-1][1] is None:
            lives[-1][1] = t
        else:
            lives.append([None, t])
    return lives


def _timeline(r: RunData, faults: list[FaultRow]) -> str:
    changes: dict[str, list[tuple[float, bool]]] = defaultdict(list)  # (when, started)
    outcome = {i.id: i.outcome for i in r.instances}
    markers: list[tuple[float, str, str]] = []
    points: dict[str, list[tuple[float, float, str, str]]] = defaultdict(list)
    for e in r.events:
        t = r.rel(e)
        if t is None:
            continue
        kind, iid = e.get("kind"), str(e.get("instance") or "")
        if kind == "instance" and e.get("status") in ("started", "exited"):
            changes[iid].append((t, e.get("status") == "started"))
        elif kind == "phase":
            markers.append((t, MARK["phase"], f"phase {e.get('name')}"))
        elif kind == "barrier" and e.get("status") in ("released", "failed"):
            c = MARK["barrier"] if e.get("status") == "released" else "#e03131"
            markers.append((t, c, one_line(f"{e.get('state')} {e.get('status')}", 300)))
        elif kind == "event" and e.get("type") in ("success", "failure", "crash"):
            c = "#2b8a3e" if e.get("type") == "success" else "#c92a2a"
            tip = one_line(f"{iid} {e.get('type')} {e.get('error') or ''}".strip(), 300)
            points[iid].append((t, t + 0.0001, c, tip))
    lives = {iid: _lives(each) for iid, each in changes.items()}
    for inst in r.instances:
        if not lives.get(inst.id):
            life = [r.rel_ts(inst.started), r.rel_ts(inst.ended)]
            # never started (a run stopped first): no bar, not one over the whole run
            lives[inst.id] = [life] if life != [None, None] else []
    ends = [b for each in lives.values() for _, b in each if b is not None]
    # a live run's report: up to now, where its running instances' bars end
    now = [t for t in (r.rel_ts(time.time()),) if t is not None] if r.run.goes_on else []
    total = r.run.duration_s or max([*ends, *(m[0] for m in markers), *now, 1.0])
    markers += network_markers(r, total)
    fault_markers, spans = fault_marks(faults, total)
    markers += fault_markers
    lanes = []
    # Too many to draw: the failed ones, then the first others; the table lists them all.
    chosen = {i.id for i in sorted(r.instances, key=lambda i: i.outcome != "failed")[:_LANES]}
    for inst in (i for i in r.instances if i.id in chosen):
        iid = inst.id
        c = _svg.OUTCOME_COLOURS.get(outcome.get(iid), "#868e96")
        bars = []
        for n, (a, b) in enumerate(lives[iid], start=1 - len(lives[iid])):
            a, b = a or 0.0, total if b is None else b
            # a life before the last was ended by a fault that started it again: the
            # outcome is the last life's
            said = outcome.get(iid) or "?" if n == 0 else "ended by a fault, started again"
            bars.append((a, b, (c if n == 0 else _ENDED_BY_A_FAULT) + "55",
                         f"{iid}: {num(a, 2)} to {num(b, 2)} s, {said}"))
        lanes.append((iid, [*bars, *points.get(iid, [])]))
    more = len(r.instances) - _LANES
    note = (
        (f'<p class="sub">{_LANES} of {len(r.instances)} instances are drawn, the failed ones '
         f'first; the Instances table lists every one.</p>' if more > 0 else "")
        + '<p class="sub">Bars: each instance from start to exit, one per life when a fault '
        'restarted it (green passed, orange failed; grey: a life a fault ended); '
        'dark ticks: success/failure events. Dashed lines: <span style="color:#1c7ed6">phases'
        '</span>, <span style="color:#7048e8">barrier releases</span>, '
        '<span style="color:#e8590c">network changes</span>. Hover for details.</p>'
    )
    if faults:
        kinds = ", ".join(f'<span style="color:{FAULT_COLOURS[k]}">{k}</span>'
                          for k in ("network", "process", "time", "resource"))
        note += (f'<p class="sub">Faults: a dashed line when each was applied and a shaded span '
                 f'until it was undone, by kind ({kinds}); '
                 f'<span style="color:{FAULT_COLOURS["failed"]}">red</span>: it failed.</p>')
    return (
        '<section id="timeline"><h2>Timeline</h2>'
        + note
        + _svg.timeline(lanes, markers, end=total, spans=spans)
        + "</section>"
    )


def _params(r: RunData) -> str:
    params = orjson.dumps(r.run.params, option=orjson.OPT_INDENT_2).decode()
    groups = "".join(
        f"<tr><td>{escape(g.id)}</td><td class='num'>{escape(str(g.count))}</td>"
        f"<td><code>{escape(orjson.dumps(g.params).decode())}</code></td>"
        f"<td><code>{escape(' '.join(g.program or []) or '(plan entrypoint)')}</code>"
        "</td></tr>"
        for g in r.run.groups
    )
    return (
        '<section id="params"><h2>Parameters</h2><p class="sub">As the run resolved them: a '
        "duration in seconds (<code>-p latency=20ms</code> reads 0.02).</p>"
        '<div class="grid"><div><h3>Run</h3>'
        f"<pre>{escape(params)}</pre></div><div><h3>Groups</h3><table><thead><tr><th>group</th>"
        f"<th>count</th><th>params</th><th>program</th></tr></thead><tbody>{groups}</tbody>"
        "</table></div></div></section>"
    )
