"""The report's chart sections: the instances' metrics and the link and TCP telemetry."""

from __future__ import annotations

from collections import defaultdict
from html import escape

from harness.observe import _svg
from harness.observe._metrics import read_metrics
from harness.observe._report._data import RunData
from harness.observe._stored import read_scraped, read_scrapes

Series = dict[str, list[tuple[float, float]]]

CHARTS_DRAWN = 12
"""The most charts of SDK metrics, and of scraped series, the Metrics section draws."""

def condense(series: Series, *, kind: str, max_series: int = 10, bins: int = 60) -> Series:
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

def metrics_section(r: RunData) -> str:
    """The Metrics section: SDK metrics and scraped ones, `CHARTS_DRAWN` charts of each at
    most (a note names the others)."""
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
            series = by_name[name][iid + _label_words(rec.get("labels"))]
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
        labels, value = rec.get("labels") or {}, rec.get("value")
        if not isinstance(labels, dict) or not isinstance(value, int | float):
            continue  # a damaged record
        key = str(rec["instance"]) + "".join(f" {k}={v}" for k, v in sorted(labels.items()))
        scraped[str(rec.get("sample"))][key].append((t, float(value)))
        scraped_kind[str(rec.get("sample"))] = str(rec["type"])
    charts = []
    for name in sorted(by_name)[:CHARTS_DRAWN]:
        kind = kinds[name]
        y = f"{name} ({'total' if kind == 'counter' else kind})"
        charts.append(
            f"<div><h3>{escape(name)} <span class='tag'>{kind}</span></h3>"
            + _svg.line_chart(
                condense(by_name[name], kind=kind),
                y_label=y,
                step=kind in ("counter", "gauge"),
                markers=kind in ("histogram", "point"),
            )
            + "</div>"
        )
    for name in sorted(scraped)[:CHARTS_DRAWN]:
        charts.append(
            f"<div><h3>{escape(name)} <span class='tag'>scraped</span></h3>"
            + _svg.line_chart(condense(scraped[name], kind=scraped_kind[name]), y_label=name)
            + "</div>"
        )
    body = (
        f'<div class="grid">{"".join(charts)}</div>'
        if charts
        else '<p class="note">No metrics were recorded (metrics.jsonl, scraped.jsonl).</p>'
    )
    left_out = (_left_out(sorted(by_name), "SDK metrics")
                + _left_out(sorted(scraped), "scraped series"))
    return f'<section id="metrics"><h2>Metrics</h2>{scrape_note(r)}{left_out}{body}</section>'


def _left_out(names: list[str], what: str, drawn: int = CHARTS_DRAWN, named: int = 20) -> str:
    """A note naming the `names` past the first `drawn` (in name order), which get no chart."""
    rest = names[drawn:]
    if not rest:
        return ""
    shown = ", ".join(rest[:named]) + (f" and {len(rest) - named} more" if len(rest) > named else "")
    text = f"{drawn} of the {len(names)} {what} are drawn, in name order; not drawn: {shown}."
    return f'<p class="note">{escape(text)}</p>'


def _label_words(labels: object) -> str:
    """" k=v" per label: an SDK metric's line per instance and label set (a counter's total
    is kept per label set; one line over them all went from one set's total to another's)."""
    if not isinstance(labels, dict):
        return ""
    return "".join(f" {k}={v}" for k, v in sorted(labels.items()))


def scrape_note(r: RunData, worst: int = 3) -> str:
    """A note when some scrapes went unanswered (the scraped charts have gaps there): how
    many, why, and the instances answered least."""
    got = read_scrapes(r.dir)
    if got is None:
        return ""
    timeout, tallies = got
    asked = sum(t.asked for t in tallies.values())
    answered = sum(t.answered for t in tallies.values())
    if asked == answered:
        return ""
    timed_out = sum(t.timed_out for t in tallies.values())
    failed = sum(t.failed for t in tallies.values())
    least = sorted(tallies.items(), key=lambda kv: (kv[1].answered / max(1, kv[1].asked), kv[0]))
    names = "; ".join(
        f"{iid}: {t.answered} of {t.asked}" + (f" (last error: {t.last_error})"
                                               if t.last_error else "")
        for iid, t in least[:worst] if t.answered < t.asked
    )
    text = (f"Scrapes answered: {answered:,} of {asked:,} ({timed_out:,} timed out after "
            f"{timeout:g} s, {failed:,} failed); the scraped charts hold the answered ones. "
            f"Answered least: {names}.")
    return f'<p class="note">{escape(text)}</p>'

def telemetry_section(r: RunData) -> str:
    """The Link and TCP telemetry section."""
    recs = r.telemetry
    tl_names = r.shapes
    queue: dict[str, list[tuple[float, float]]] = defaultdict(list)
    drops: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rtt: dict[str, list[tuple[float, float]]] = defaultdict(list)
    retrans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    errors = []
    # the series' names, by the raw values they come from (tens of thousands of samples
    # over a few hundred links and connections)
    link_keys: dict[tuple[str, str], str] = {}
    tcp_keys: dict[tuple[str, str], str] = {}
    rel, mono0 = r.rel, r.mono0
    for rec in recs:
        get = rec.get
        mono = get("mono")  # what r.rel does, without a call for the usual float
        t = mono - mono0 if type(mono) is float else rel(rec)
        if t is None:
            continue
        kind = get("kind")
        if kind == "link":
            raw = (str(get("src")), str(get("dst")))
            key = link_keys.get(raw) or link_keys.setdefault(
                raw, f"{tl_names.name(raw[0])}→{tl_names.name(raw[1])}")
            if isinstance(value := get("queue_delay_ms"), int | float):
                queue[key].append((t, float(value)))
            if isinstance(value := get("drops"), int | float):
                drops[key].append((t, float(value)))
        elif kind == "tcp":
            raw = (str(get("instance")), str(get("peer", "")))
            key = tcp_keys.get(raw) or tcp_keys.setdefault(
                raw, f"{raw[0]}→{tl_names.name(raw[1].rsplit(':', 1)[0])}")
            if isinstance(value := get("rtt_ms"), int | float):
                rtt[key].append((t, float(value)))
            if isinstance(value := get("retrans_total"), int | float):
                retrans[key].append((t, float(value)))
        elif kind == "error":
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

