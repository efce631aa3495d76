"""The run report: a self-contained report.html, junit.xml and summary.json for CI."""

from __future__ import annotations

import functools
import math
import os
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import orjson

from harness._errors import UsageError
from harness.observe import _svg
from harness.observe._jsonl import read_jsonl
from harness.observe._metrics import read_metrics
from harness.observe._rundir import instance_dirs, load_run
from harness.observe._scrape import read_scraped
from harness.observe._shapes import ShapeTimeline
from harness.observe._telemetry import read_telemetry
from harness.observe._trace import Hop, TraceAnalysis, analyse_traces

_CSS = """
:root{--fg:#212529;--mut:#6c757d;--bd:#e9ecef;--bg:#f8f9fa;--ok:#2f9e44;--bad:#d9480f}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
color:var(--fg);background:var(--bg)}header{background:#fff;border-bottom:1px solid var(--bd);
padding:18px 28px}main{padding:8px 28px 40px;max-width:1200px}h1{margin:0 0 4px;font-size:22px}
h2{font-size:17px;margin:28px 0 10px}h3{font-size:14px;margin:14px 0 6px;color:#343a40}
.sub{color:var(--mut)}.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;
font-weight:600;font-size:13px;vertical-align:middle;margin-left:8px}.passed{background:var(--ok)}
.failed{background:var(--bad)}.interrupted,.unknown{background:#868e96}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-top:14px}.card{background:var(--bg);
border:1px solid var(--bd);border-radius:8px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:18px}.card span{color:var(--mut);font-size:12px}
section{background:#fff;border:1px solid var(--bd);border-radius:10px;padding:4px 18px 16px;
margin-top:18px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--bd);vertical-align:top}
th{color:var(--mut);font-weight:600;background:#fcfcfd;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.fail td{background:#fff4e6}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(470px,1fr));gap:10px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;color:#495057;margin:2px 0 8px 52px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.empty,.note{color:var(--mut);font-style:italic}.fails{border-left:4px solid var(--bad)}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}pre{background:var(--bg);
padding:8px;border-radius:6px;overflow:auto;max-height:220px;margin:4px 0}a{color:#1c7ed6}
.tag{font-size:11px;padding:1px 7px;border-radius:9px;background:#e7f5ff;color:#1864ab}
.tag.loss{background:#fff0f6;color:#a61e4d}.tag.queue{background:#fff9db;color:#8f6b00}
.tag.slow{background:#f3f0ff;color:#5f3dc4}input#flt{padding:4px 8px;border:1px solid #ced4da;
border-radius:6px;margin:4px 0 8px;width:260px}svg.chart{max-width:100%;height:auto}
td code{word-break:break-all}
.scroll{max-height:560px;overflow:auto}details{margin-top:8px}summary{cursor:pointer;color:#1c7ed6}
nav a{margin-right:14px;color:var(--mut);text-decoration:none;font-size:13px}
"""

_JS = """
document.getElementById('flt').addEventListener('input', function (e) {
  var q = e.target.value.toLowerCase();
  document.querySelectorAll('#instances tbody tr').forEach(function (tr) {
    tr.style.display = tr.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
  });
});
"""

_MARK = {"phase": "#1c7ed6", "barrier": "#7048e8", "network": "#e8590c"}
_CAUSE_TAG = {"loss and retransmit": "loss", "queueing": "queue", "slow handler": "slow"}


def _ts(v: Any) -> str:
    if not isinstance(v, int | float):
        return "—"
    return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(v: Any, digits: int = 1) -> str:
    if not isinstance(v, int | float) or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}"


class _Run:
    """Everything the report needs from a run directory, read once."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.run = load_run(run_dir)
        if not self.run:
            raise UsageError(f"{run_dir} has no run.json: is it a run directory?")
        self.events = list(read_jsonl(run_dir / "events.jsonl"))
        self.instances = [i for i in self.run.get("instances") or [] if isinstance(i, dict)]
        self.inst_dirs = {d.id: d.path for d in instance_dirs(run_dir, self.run)}
        monos = [float(e["mono"]) for e in self.events if isinstance(e.get("mono"), int | float)]
        offsets = [
            float(e["ts"]) - float(e["mono"])
            for e in self.events
            if isinstance(e.get("ts"), int | float) and isinstance(e.get("mono"), int | float)
        ]
        self.offset = offsets[0] if offsets else None
        started = self.run.get("started")
        if isinstance(started, int | float) and self.offset is not None:
            self.mono0 = float(started) - self.offset
        else:
            self.mono0 = min(monos) if monos else 0.0

    def rel(self, rec: dict[str, Any]) -> float | None:
        """Seconds since the run's start of a record with mono (or ts)."""
        if isinstance(rec.get("mono"), int | float):
            return float(rec["mono"]) - self.mono0
        if isinstance(rec.get("ts"), int | float) and self.offset is not None:
            return float(rec["ts"]) - self.offset - self.mono0
        return None

    def rel_ts(self, ts: Any) -> float | None:
        if not isinstance(ts, int | float) or self.offset is None:
            started = self.run.get("started")
            if isinstance(ts, int | float) and isinstance(started, int | float):
                return float(ts) - float(started)
            return None
        return float(ts) - self.offset - self.mono0

    @property
    def duration(self) -> float | None:
        s, e = self.run.get("started"), self.run.get("ended")
        return (
            float(e) - float(s)
            if isinstance(s, int | float) and isinstance(e, int | float)
            else None
        )

    @functools.cached_property
    def shapes(self) -> ShapeTimeline:
        """The run's link shapes over time (run.json and network.jsonl)."""
        return ShapeTimeline.from_run_dir(self.dir)

    def link(self, iid: str, name: str) -> str | None:
        path = self.inst_dirs.get(iid, self.dir / iid) / name
        return os.path.relpath(path, self.dir) if path.exists() else None


def _summary_cards(r: _Run) -> str:
    passed = sum(1 for i in r.instances if i.get("outcome") == "passed")
    cards = [
        (f"{passed}/{len(r.instances)}", "instances passed"),
        (_num(r.duration) + " s" if r.duration is not None else "—", "duration"),
        (str(r.run.get("runner") or "—"), "runner"),
        (str(r.run.get("exit_code", "—")), "exit code"),
        (_ts(r.run.get("started")), "started"),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{escape(a)}</b><span>{escape(b)}</span></div>' for a, b in cards
        )
        + "</div>"
    )


def _failures(r: _Run) -> str:
    failed = [i for i in r.instances if i.get("outcome") not in ("passed", None)]
    if not failed and r.run.get("outcome") in ("passed", None):
        return ""
    parts = ['<section class="fails" id="failures"><h2>Failures</h2>']
    if r.run.get("reason"):
        parts.append(f"<p><b>Run:</b> {escape(str(r.run['reason']))}</p>")
    for inst in failed:
        iid = str(inst.get("id"))
        parts.append(f"<h3>{escape(iid)} — {escape(str(inst.get('reason') or 'failed'))}</h3>")
        errors = [
            f"{_num(r.rel(rec), 3)} s  {rec.get('level', '')}  {rec.get('event', '')}"
            for rec in read_jsonl(r.inst_dirs.get(iid, r.dir / iid) / "log.jsonl")
            if str(rec.get("level", "")).lower() in ("error", "critical")
        ][-8:]
        stderr = r.inst_dirs.get(iid, r.dir / iid) / "stderr.log"
        tail = _tail(stderr, 8)
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


def _tail(path: Path, n: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-n:])


def _instances_table(r: _Run) -> str:
    rows = []
    for inst in r.instances:
        iid = str(inst.get("id"))
        outcome = inst.get("outcome")
        links = " ".join(
            f'<a href="{escape(href)}">{name}</a>'
            for name in ("log.jsonl", "stdout.log", "stderr.log", "metrics.jsonl", "trace.jsonl")
            if (href := r.link(iid, name))
        )
        dur = (
            float(inst["ended"]) - float(inst["started"])
            if isinstance(inst.get("started"), int | float)
            and isinstance(inst.get("ended"), int | float)
            else None
        )
        rows.append(
            f'<tr class="{"fail" if outcome == "failed" else ""}"><td><b>{escape(iid)}</b></td>'
            f"<td>{escape(str(inst.get('role') or ''))}</td>"
            f"<td><code>{escape(str(inst.get('ip') or ''))}</code></td>"
            f'<td><span class="badge {escape(str(outcome or "unknown"))}">'
            f"{escape(str(outcome or '?'))}</span></td>"
            f'<td class="num">{escape(str(inst.get("exit_code", "")))}</td>'
            f'<td class="num">{_num(dur)} s</td><td>{escape(str(inst.get("reason") or ""))}</td>'
            f"<td>{links}</td></tr>"
        )
    return (
        '<section id="instances-sec"><h2>Instances</h2>'
        '<input id="flt" placeholder="filter instances…" aria-label="filter instances">'
        '<div class="scroll"><table id="instances"><thead><tr><th>instance</th><th>role</th><th>address</th>'
        "<th>outcome</th><th>exit</th><th>ran for</th><th>reason</th><th>logs</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _timeline(r: _Run) -> str:
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    outcome = {str(i.get("id")): i.get("outcome") for i in r.instances}
    markers: list[tuple[float, str, str]] = []
    points: dict[str, list[tuple[float, float, str, str]]] = defaultdict(list)
    for e in r.events:
        t = r.rel(e)
        if t is None:
            continue
        kind, iid = e.get("kind"), str(e.get("instance") or "")
        if kind == "instance" and e.get("status") == "started":
            start[iid] = t
        elif kind == "instance" and e.get("status") == "exited":
            end[iid] = t
        elif kind == "phase":
            markers.append((t, _MARK["phase"], f"phase {e.get('name')}"))
        elif kind == "barrier" and e.get("status") in ("released", "failed"):
            c = _MARK["barrier"] if e.get("status") == "released" else "#e03131"
            markers.append((t, c, f"{e.get('state')} {e.get('status')}"))
        elif kind == "event" and e.get("type") in ("success", "failure", "crash"):
            c = "#2b8a3e" if e.get("type") == "success" else "#c92a2a"
            tip = f"{iid} {e.get('type')} {e.get('error') or ''}".strip()
            points[iid].append((t, t + 0.0001, c, tip))
    for inst in r.instances:
        iid = str(inst.get("id"))
        start.setdefault(iid, r.rel_ts(inst.get("started")) or 0.0)
        if iid not in end and (t := r.rel_ts(inst.get("ended"))) is not None:
            end[iid] = t
    total = r.duration or max([*end.values(), *(m[0] for m in markers), 1.0])
    markers += _network_markers(r, total)
    lanes = []
    for inst in r.instances:
        iid = str(inst.get("id"))
        c = _svg.OUTCOME_COLOURS.get(outcome.get(iid), "#868e96")
        a, b = start.get(iid, 0.0), end.get(iid, total)
        bars = [
            (a, b, c + "55", f"{iid}: {_num(a, 2)} to {_num(b, 2)} s, {outcome.get(iid) or '?'}"),
            *points.get(iid, []),
        ]
        lanes.append((iid, bars))
    note = (
        '<p class="sub">Bars: each instance from start to exit (green passed, orange failed); '
        'dark ticks: success/failure events. Dashed lines: <span style="color:#1c7ed6">phases'
        '</span>, <span style="color:#7048e8">barrier releases</span>, '
        '<span style="color:#e8590c">network changes</span>. Hover for details.</p>'
    )
    return (
        '<section id="timeline"><h2>Timeline</h2>'
        + note
        + _svg.timeline(lanes[:60], markers, end=total)
        + "</section>"
    )


def _network_markers(r: _Run, total: float) -> list[tuple[float, str, str]]:
    """One marker per burst of network changes (every instance shaping its link at the
    start is one burst, not twenty lines on top of each other)."""
    window = max(0.2, 0.02 * total)
    bursts: list[list[tuple[float, str]]] = []
    for change in r.shapes.changes:
        t = r.rel(change)
        if t is None:
            continue
        asked_by = str(change.get("asked_by") or "?")
        if bursts and t - bursts[-1][-1][0] <= window:
            bursts[-1].append((t, asked_by))
        else:
            bursts.append([(t, asked_by)])
    markers = []
    for burst in bursts:
        who = sorted({a for _, a in burst})
        label = f"net: {who[0]}" if len(burst) == 1 else f"net: {len(burst)} changes"
        if len(burst) > 1:
            label += f" ({', '.join(who[:3])}{', …' if len(who) > 3 else ''})"
        markers.append((burst[0][0], _MARK["network"], label))
    return markers


def _shape_label(shape: dict[str, Any]) -> str:
    if shape.get("drop"):
        return "cut"
    parts = []
    if shape.get("latency_ms"):
        parts.append(f"{shape['latency_ms']:g} ms")
    if shape.get("jitter_ms"):
        parts.append(f"±{shape['jitter_ms']:g}")
    if shape.get("loss_pct"):
        parts.append(f"{shape['loss_pct']:g}% loss")
    if shape.get("bandwidth_bps"):
        parts.append(f"{shape['bandwidth_bps'] / 1e6:g} Mbit/s")
    return ", ".join(parts) or "unshaped"


def _change_text(change: dict[str, Any]) -> str:
    """What a network change asked for: netem's record says it under `asked` (with `op`)."""
    if "op" in change:
        asked = dict(change.get("asked") or {})
        config = asked.pop("config", None)
        return f"{change['op']} {_json(config if config is not None else asked)}"
    return _json(change.get("applied") or change.get("request"))


def _network(r: _Run) -> str:
    tl = r.shapes
    net = r.run.get("network") or {}
    hosts = []
    outcome = {str(i.get("id")): i.get("outcome") for i in r.instances}
    for iid in tl.hosts or [str(i.get("id")) for i in r.instances]:
        ip = next((ip for ip, name in tl.names.items() if name == iid), "")
        hosts.append((iid, ip, _svg.OUTCOME_COLOURS.get(outcome.get(iid), "#868e96")))
    matrix = tl.matrix()
    labels = [_shape_label(s) for s in matrix.values()]
    common = max(set(labels), key=labels.count) if labels else None
    edges = []
    for (a, b), shape in matrix.items():
        label = _shape_label(shape)
        if label != common:
            c = "#e03131" if shape.get("drop") else "#e8590c"
            edges.append((a, b, label, c))
    caption = (
        f"Every direction: <b>{escape(common)}</b> unless drawn."
        if common
        else "No link is shaped."
    )
    if len(edges) > _svg.TOPOLOGY_MAX_EDGES:
        caption += f" The first {_svg.TOPOLOGY_MAX_EDGES} of {len(edges)} others are drawn."
    topo = _svg.topology(hosts, edges, hub_label=str(net.get("backend") or "hub"))
    rows = "".join(
        f"<tr><td class='num'>{_num(r.rel(c), 2)} s</td><td>{escape(str(c.get('asked_by')))}</td>"
        f"<td><code>{escape(_change_text(c)[:300])}</code></td></tr>"
        for c in tl.changes
    )
    changes = (
        (
            "<table><thead><tr><th>at</th><th>asked by</th><th>applied</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
        if rows
        else '<p class="note">No network changes.</p>'
    )
    subnet = escape(str(net.get("subnet") or "—"))
    return (
        '<section id="network"><h2>Network</h2>'
        f'<p class="sub">Backend <b>{escape(str(net.get("backend") or "none"))}</b>, data subnet '
        f"<code>{subnet}</code>. Shapes at the end of the run (egress, per direction). "
        f"{caption}</p>"
        f'<div class="grid"><div>{topo}</div><div><h3>Changes</h3>{changes}</div></div></section>'
    )


Series = dict[str, list[tuple[float, float]]]


def _condense(series: Series, *, kind: str, max_series: int = 10, bins: int = 60) -> Series:
    """At most `max_series` lines: beyond that, the p10 / median / p90 over all series per
    time bin, so that a 100-instance run stays readable. A counter or gauge keeps its last
    value until its next sample, so a series without a sample in a bin still counts there,
    and a counter is 0 before its first (a median of counters never goes down); histogram
    observations and points made in a bin are pooled."""
    if len(series) <= max_series:
        return series
    points = [p for s in series.values() for p in s]
    lo = min(t for t, _ in points)
    width = (max(t for t, _ in points) - lo) / bins or 1.0
    binned: dict[int, list[float]] = defaultdict(list)
    if kind in ("counter", "gauge"):
        for s in series.values():
            ordered, k = sorted(s), 0
            last: float | None = 0.0 if kind == "counter" else None
            for b in range(bins):
                edge = lo + (b + 1) * width  # the value at the end of each bin
                while k < len(ordered) and (ordered[k][0] < edge or b == bins - 1):
                    last, k = ordered[k][1], k + 1
                if last is not None:
                    binned[b].append(last)
    else:
        for t, v in points:
            binned[min(bins - 1, int((t - lo) / width))].append(v)
    out: Series = {f"p10 of {len(series)}": [], "median": [], "p90": []}
    for b, vs in sorted(binned.items()):
        vs.sort()
        t = lo + (b + 0.5) * width
        for name, q in zip(out, (0.1, 0.5, 0.9), strict=True):
            out[name].append((t, vs[min(len(vs) - 1, round(q * (len(vs) - 1)))]))
    return out


def _metrics(r: _Run) -> str:
    by_name: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    kinds: dict[str, str] = {}
    for iid, d in r.inst_dirs.items():
        for rec in read_metrics(d / "metrics.jsonl"):
            t = r.rel(rec)
            if t is None:
                continue
            name, kind = str(rec["name"]), str(rec["kind"])
            kinds.setdefault(name, kind)
            series = by_name[name][iid]
            if kind == "counter":
                prev = series[-1][1] if series else 0.0
                total = rec.get("total")
                series.append(
                    (
                        t,
                        float(total)
                        if isinstance(total, int | float)
                        else prev + float(rec["value"]),
                    )
                )
            else:
                series.append((t, float(rec["value"])))
    scraped: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    scraped_kind: dict[str, str] = {}
    for rec in read_scraped(r.dir):
        t = r.rel(rec)
        if t is None or rec.get("type") not in ("gauge", "counter"):
            continue
        if str(rec.get("sample")).endswith("_created"):
            continue  # prometheus_client's creation timestamps: nothing to plot
        labels = rec.get("labels") or {}
        key = str(rec["instance"]) + "".join(f" {k}={v}" for k, v in sorted(labels.items()))
        scraped[str(rec.get("sample"))][key].append((t, float(rec["value"])))
        scraped_kind[str(rec.get("sample"))] = str(rec["type"])
    charts = []
    for name in sorted(by_name)[:12]:
        kind = kinds[name]
        y = f"{name} ({'total' if kind == 'counter' else kind})"
        charts.append(
            f"<div><h3>{escape(name)} <span class='tag'>{kind}</span></h3>"
            + _svg.line_chart(
                _condense(by_name[name], kind=kind),
                y_label=y,
                step=kind in ("counter", "gauge"),
                markers=kind in ("histogram", "point"),
            )
            + "</div>"
        )
    for name in sorted(scraped)[:12]:
        charts.append(
            f"<div><h3>{escape(name)} <span class='tag'>scraped</span></h3>"
            + _svg.line_chart(_condense(scraped[name], kind=scraped_kind[name]), y_label=name)
            + "</div>"
        )
    body = (
        f'<div class="grid">{"".join(charts)}</div>'
        if charts
        else '<p class="note">No metrics were recorded (metrics.jsonl, scraped.jsonl).</p>'
    )
    return f'<section id="metrics"><h2>Metrics</h2>{body}</section>'


def _propagation(r: _Run, a: TraceAnalysis) -> str:
    if not a.messages:
        return (
            '<section id="propagation"><h2>Message propagation</h2>'
            '<p class="note">No message traces (trace.jsonl) in this run.</p></section>'
        )
    rows = "".join(
        f"<tr><td><b>{escape(t.topic)}</b></td><td class='num'>{t.messages}</td>"
        f"<td class='num'>{_num(t.p50_ms)}</td><td class='num'>{_num(t.p90_ms)}</td>"
        f"<td class='num'>{_num(t.p99_ms)}</td><td class='num'>{_num(t.max_ms)}</td>"
        f"<td class='num'>{t.coverage * 100:.0f}%</td></tr>"
        for t in a.topics
    )
    lat = [h.expected_ms for h in a.hops]
    ref = sorted(lat)[len(lat) // 2] if lat else None
    box = _svg.box_strip(
        {t.topic: t.samples_ms for t in a.topics},
        x_label="ms after publish",
        reference=ref,
        reference_label=f"one hop ≈ {_num(ref)} ms" if ref else "",
    )
    hop_box = _svg.box_strip(
        {
            f"{ln.src}→{ln.dst}": [h.hop_ms for h in a.hops if (h.src, h.dst) == (ln.src, ln.dst)]
            for ln in a.links[:24]
        },
        x_label="hop delay, ms",
    )
    links = "".join(
        f"<tr class='{'fail' if ln.out_of_line * 2 > ln.hops else ''}'>"
        f"<td>{escape(ln.src)} → {escape(ln.dst)}</td>"
        f"<td class='num'>{ln.hops}</td><td class='num'>{_num(ln.expected_ms)}</td>"
        f"<td class='num'>{_num(ln.median_ms)}</td><td class='num'>{_num(ln.median_excess_ms)}</td>"
        f"<td class='num'>{ln.out_of_line}</td></tr>"
        for ln in a.links
    )
    out = a.outliers
    by_cause: dict[tuple[str, str, str], list[Hop]] = defaultdict(list)
    for h in out:
        by_cause[(h.src, h.dst, h.cause or "")].append(h)
    grouped = "".join(
        f"<tr><td>{escape(src)} → {escape(dst)}</td>"
        f"<td><span class='tag {_CAUSE_TAG.get(cause, '')}'>{escape(cause)}</span></td>"
        f"<td class='num'>{len(hs)}</td>"
        f"<td class='num'>+{_num(sorted(h.excess_ms for h in hs)[len(hs) // 2])}</td>"
        f"<td class='num'>+{_num(max(h.excess_ms for h in hs))}</td>"
        f"<td class='sub'>{escape(hs[0].evidence)}</td></tr>"
        for (src, dst, cause), hs in sorted(by_cause.items(), key=lambda kv: -len(kv[1]))
    )
    orows = "".join(
        f"<tr><td>{escape(h.msg_id)}</td><td>{escape(h.topic)}</td>"
        f"<td>{escape(h.src)} → {escape(h.dst)}</td>"
        f"<td class='num'>{_num(h.hop_ms)}</td><td class='num'>{_num(h.expected_ms)}</td>"
        f"<td class='num'>+{_num(h.excess_ms)}</td>"
        f"<td><span class='tag {_CAUSE_TAG.get(h.cause or '', '')}'>{escape(h.cause or '')}</span> "
        f"<span class='sub'>{escape(h.evidence)}</span></td></tr>"
        for h in out[:300]
    )
    outliers = (
        (
            "<table><thead><tr><th>link</th><th>likely cause</th><th>hops</th>"
            "<th>median excess ms</th><th>max excess ms</th><th>evidence (first hop)</th></tr>"
            f"</thead><tbody>{grouped}</tbody></table>"
            f"<details><summary>every out-of-line hop ({min(len(out), 300)} worst)</summary>"
            "<table><thead><tr><th>message</th><th>topic</th><th>hop</th><th>delay ms</th>"
            "<th>configured</th><th>excess</th><th>likely cause</th></tr></thead>"
            f"<tbody>{orows}</tbody></table></details>"
        )
        if out
        else '<p class="note">Every hop took what its configured link explains.</p>'
    )
    return (
        '<section id="propagation"><h2>Message propagation</h2>'
        "<p class=\"sub\">Propagation delay: from a message's publication to each node's first "
        "receipt. A hop is out of line when it exceeds the configured latency (+ serialisation) "
        "by more than 5 ms + 25% of the latency + 2 x jitter.</p>"
        "<table><thead><tr><th>topic</th><th>messages</th><th>p50 ms</th><th>p90 ms</th>"
        "<th>p99 ms</th>"
        f"<th>max ms</th><th>reached</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<h3>Delay distribution per topic</h3>{box}"
        f'<div class="grid"><div><h3>Hop delay per link</h3>{hop_box}</div>'
        "<div><h3>Links</h3><table><thead><tr><th>link</th><th>hops</th><th>configured ms</th>"
        "<th>median ms</th><th>excess ms</th><th>out of line</th></tr></thead>"
        f"<tbody>{links}</tbody>"
        f"</table></div></div><h3>Out-of-line hops ({len(out)})</h3>{outliers}</section>"
    )


def _telemetry(r: _Run) -> str:
    recs = read_telemetry(r.dir)
    tl_names = r.shapes
    queue: dict[str, list[tuple[float, float]]] = defaultdict(list)
    drops: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rtt: dict[str, list[tuple[float, float]]] = defaultdict(list)
    retrans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    errors = []
    for rec in recs:
        t = r.rel(rec)
        if t is None:
            continue
        if rec.get("kind") == "link":
            key = f"{tl_names.name(rec.get('src'))}→{tl_names.name(rec.get('dst'))}"
            if isinstance(rec.get("queue_delay_ms"), int | float):
                queue[key].append((t, float(rec["queue_delay_ms"])))
            if isinstance(rec.get("drops"), int | float):
                drops[key].append((t, float(rec["drops"])))
        elif rec.get("kind") == "tcp":
            peer = tl_names.name(str(rec.get("peer", "")).rsplit(":", 1)[0])
            key = f"{rec.get('instance')}→{peer}"
            if isinstance(rec.get("rtt_ms"), int | float):
                rtt[key].append((t, float(rec["rtt_ms"])))
            if isinstance(rec.get("retrans_total"), int | float):
                retrans[key].append((t, float(rec["retrans_total"])))
        elif rec.get("kind") == "error":
            errors.append(f"{rec.get('source')}: {rec.get('error')}")
    if not (queue or rtt or errors):
        return (
            '<section id="telemetry"><h2>Link and TCP telemetry</h2>'
            '<p class="note">No telemetry was sampled in this run.</p></section>'
        )

    def top(
        series: dict[str, list[tuple[float, float]]], n: int = 8
    ) -> dict[str, list[tuple[float, float]]]:
        ranked = sorted(series.items(), key=lambda kv: -max(v for _, v in kv[1]))
        return dict(ranked[:n])

    charts = [
        ("Mean time packets were held per link (ms), worst 8", top(queue), "ms", False),
        ("TCP RTT per connection (ms), worst 8", top(rtt), "ms", False),
        (
            "Drops per link (cumulative)",
            {k: v for k, v in top(drops).items() if v[-1][1] > 0},
            "drops",
            True,
        ),
        (
            "TCP retransmits (cumulative)",
            {k: v for k, v in top(retrans).items() if v[-1][1] > 0},
            "segments",
            True,
        ),
    ]
    parts = []
    for title, series, unit, step in charts:
        body = (
            _svg.line_chart(series, y_label=unit, step=step)
            if series
            else '<p class="note">none</p>'
        )
        parts.append(f"<div><h3>{escape(title)}</h3>{body}</div>")
    err = (
        ("<h3>Sampling problems</h3><pre>" + escape("\n".join(errors[:20])) + "</pre>")
        if errors
        else ""
    )
    return (
        '<section id="telemetry"><h2>Link and TCP telemetry</h2>'
        f'<div class="grid">{"".join(parts)}</div>{err}</section>'
    )


def _params(r: _Run) -> str:
    params = orjson.dumps(r.run.get("params") or {}, option=orjson.OPT_INDENT_2).decode()
    groups = "".join(
        f"<tr><td>{escape(str(g.get('id')))}</td><td class='num'>{escape(str(g.get('count')))}</td>"
        f"<td><code>{escape(orjson.dumps(g.get('params') or {}).decode())}</code></td>"
        f"<td><code>{escape(' '.join(g.get('program') or []) or '(plan entrypoint)')}</code>"
        "</td></tr>"
        for g in r.run.get("groups") or []
        if isinstance(g, dict)
    )
    return (
        '<section id="params"><h2>Parameters</h2><div class="grid"><div><h3>Run</h3>'
        f"<pre>{escape(params)}</pre></div><div><h3>Groups</h3><table><thead><tr><th>group</th>"
        f"<th>count</th><th>params</th><th>program</th></tr></thead><tbody>{groups}</tbody>"
        "</table></div></div></section>"
    )


def render_html(run_dir: Path) -> str:
    """The report of `run_dir` as one self-contained HTML document."""
    r = _Run(run_dir)
    run = r.run
    outcome = str(run.get("outcome") or "unknown")
    analysis = analyse_traces(run_dir)
    title = f"{run.get('plan', '?')}:{run.get('case', '?')}"
    nav = "".join(
        f'<a href="#{a}">{b}</a>'
        for a, b in (
            ("instances-sec", "Instances"),
            ("timeline", "Timeline"),
            ("network", "Network"),
            ("metrics", "Metrics"),
            ("propagation", "Propagation"),
            ("telemetry", "Telemetry"),
            ("params", "Parameters"),
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} — {escape(str(run.get('run_id', run_dir.name)))}</title>"
        f'<link rel="icon" href="data:,"><style>{_CSS}</style></head><body>'
        f'<header><h1>{escape(title)}<span class="badge {escape(outcome)}">'
        f"{escape(outcome)}</span></h1>"
        f'<div class="sub">run <code>{escape(str(run.get("run_id", run_dir.name)))}</code>'
        f"{' — ' + escape(str(run['reason'])) if run.get('reason') else ''}</div>"
        f"{_summary_cards(r)}<nav style='margin-top:12px'>{nav}</nav></header><main>"
        + _failures(r)
        + _instances_table(r)
        + _timeline(r)
        + _network(r)
        + _metrics(r)
        + _propagation(r, analysis)
        + _telemetry(r)
        + _params(r)
        + f'<p class="sub">Written {_ts(time.time())} by harness report.</p>'
        f"</main><script>{_JS}</script></body></html>"
    )


def write_junit(run_dir: Path) -> Path:
    """junit.xml: one testcase per instance, a failure element with the reason."""
    run = load_run(run_dir)
    if not run:
        raise UsageError(f"{run_dir} has no run.json: is it a run directory?")
    insts = [i for i in run.get("instances") or [] if isinstance(i, dict)]
    failed = [i for i in insts if i.get("outcome") != "passed"]
    name = f"{run.get('plan', '?')}:{run.get('case', '?')}"
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(len(insts)),
        failures=str(len(failed)),
        errors="0",
        timestamp=datetime.fromtimestamp(float(run.get("started") or 0), UTC).isoformat(
            timespec="seconds"
        ),
        time=f"{_duration(run) or 0:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for k in ("run_id", "runner", "outcome"):
        ET.SubElement(props, "property", name=k, value=str(run.get(k)))
    for inst in insts:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=name,
            name=str(inst.get("id")),
            time=f"{_duration(inst) or 0:.3f}",
        )
        if inst.get("outcome") != "passed":
            reason = str(inst.get("reason") or inst.get("outcome") or "no outcome recorded")
            fail = ET.SubElement(case, "failure", message=reason, type=str(inst.get("outcome")))
            fail.text = f"{inst.get('id')}: {reason} (exit code {inst.get('exit_code')})"
        out = run_dir / str(inst.get("dir") or inst.get("id")) / "stdout.log"
        if out.exists():
            ET.SubElement(case, "system-out").text = f"[[ATTACHMENT|{out.resolve()}]]"
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path = run_dir / "junit.xml"
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


def _duration(d: dict[str, Any]) -> float | None:
    s, e = d.get("started"), d.get("ended")
    return (
        float(e) - float(s) if isinstance(s, int | float) and isinstance(e, int | float) else None
    )


def _failed(inst: dict[str, Any], run_ended: bool) -> bool:
    """Failed, or (once the run has ended) without a passing outcome; running is neither."""
    outcome = inst.get("outcome")
    return outcome == "failed" or (run_ended and outcome != "passed")


def summary(run_dir: Path) -> dict[str, Any]:
    """The machine-readable summary of a run (what summary.json holds)."""
    run = load_run(run_dir)
    if not run:
        raise UsageError(f"{run_dir} has no run.json: is it a run directory?")
    insts = [i for i in run.get("instances") or [] if isinstance(i, dict)]
    a = analyse_traces(run_dir)
    ended = run.get("ended") is not None
    return {
        "run_id": run.get("run_id", run_dir.name),
        "plan": run.get("plan"),
        "case": run.get("case"),
        "runner": run.get("runner"),
        "outcome": run.get("outcome"),
        "exit_code": run.get("exit_code"),
        "reason": run.get("reason"),
        "duration_s": _duration(run),
        "instances": {
            "total": len(insts),
            "passed": sum(i.get("outcome") == "passed" for i in insts),
            "failed": sum(_failed(i, ended) for i in insts),
        },
        "failures": [
            {"instance": i.get("id"), "reason": i.get("reason"), "exit_code": i.get("exit_code")}
            for i in insts
            if _failed(i, ended)
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
        "out_of_line_hops": len(a.outliers),
        "report": "report.html",
    }


def write_report(run_dir: Path) -> Path:
    """Write report.html, junit.xml and summary.json into `run_dir`; returns report.html."""
    html = render_html(run_dir)
    path = run_dir / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    write_junit(run_dir)
    (run_dir / "summary.json").write_bytes(
        orjson.dumps(summary(run_dir), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    return path
