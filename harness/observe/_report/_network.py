"""The report's network section: the links' shapes as a graph and the changes over time."""

from __future__ import annotations

from html import escape
from typing import Any

from harness.observe import _svg
from harness.observe._report._data import RunData
from harness.observe._report._format import num, to_json

#: Colours of the timeline's markers.
MARK = {"phase": "#1c7ed6", "barrier": "#7048e8", "network": "#e8590c", "failure": "#e03131"}


def network_markers(r: RunData, total: float) -> list[tuple[float, str, str]]:
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
        markers.append((burst[0][0], MARK["network"], label))
    for event in r.run.network_events:  # e.g. the shaping engine died
        at = event.get("at_s")
        if isinstance(at, int | float):
            markers.append((float(at), MARK["failure"], f"net: {event.get('message')}"))
    return markers


def _event_alerts(r: RunData) -> str:
    """What the network did on its own (the shaping engine died), above everything else."""
    alerts = []
    for event in r.run.network_events:
        verdict = ("allowed by --allow-unshaped" if event.get("allowed")
                   else "this failed the run")  # fmt: skip
        alerts.append(f'<p class="alert"><b>{escape(str(event.get("message")))}</b> '
                      f"({escape(verdict)})</p>")
    return "".join(alerts)

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
        return f"{change['op']} {to_json(config if config is not None else asked)}"
    return to_json(change.get("applied") or change.get("request"))

def network_section(r: RunData) -> str:
    """The Network section."""
    tl = r.shapes
    net = r.run.network or {}
    hosts = []
    outcome = {i.id: i.outcome for i in r.instances}
    for iid in tl.hosts or [i.id for i in r.instances]:
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
        f"<tr><td class='num'>{num(r.rel(c), 2)} s</td><td>{escape(str(c.get('asked_by')))}</td>"
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
        + _event_alerts(r)
        + f'<p class="sub">Backend <b>{escape(str(net.get("backend") or "none"))}</b>, data subnet '
        f"<code>{subnet}</code>. Shapes at the end of the run (egress, per direction). "
        f"{caption}</p>"
        f'<div class="grid"><div>{topo}</div><div><h3>Changes</h3>{changes}</div></div></section>'
    )

