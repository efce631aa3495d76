"""The report's network section: the links' shapes as a graph and the changes over time."""

from __future__ import annotations

from html import escape
from typing import Any

from harness.observe import _svg
from harness.observe._report._data import RunData
from harness.observe._report._format import folded_table, num, to_json

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
            colour = MARK["network" if event.get("event") == "backend-note" else "failure"]
            markers.append((float(at), colour, f"net: {event.get('message')}"))
    return markers


def _event_alerts(r: RunData) -> str:
    """What the network did on its own (the shaping engine died) or its backend said (a
    slower fallback engine), above everything else."""
    alerts = []
    for event in r.run.network_events:
        message = f'<b>{escape(str(event.get("message")))}</b>'
        if event.get("event") == "backend-note":  # said, not done: no bearing on the verdict
            alerts.append(f'<p class="alert">{message}</p>')
            continue
        verdict = ("allowed by --allow-unshaped" if event.get("allowed")
                   else "this failed the run")  # fmt: skip
        alerts.append(f'<p class="alert">{message} ({escape(verdict)})</p>')
    return "".join(alerts)

def _shape_label(shape: dict[str, Any]) -> str:
    """A shape as people say it: "100 ms ±10 ms, 1% loss", "cut", "unshaped"."""
    if shape.get("drop"):
        return "cut"
    parts = []
    if shape.get("latency_ms"):
        parts.append(f"{shape['latency_ms']:g} ms")
        if shape.get("jitter_ms"):
            parts[-1] += f" ±{shape['jitter_ms']:g} ms"
    elif shape.get("jitter_ms"):
        parts.append(f"±{shape['jitter_ms']:g} ms")
    for key, what in (("loss_pct", "loss"), ("corrupt_pct", "corrupt"),
                      ("duplicate_pct", "duplicate"), ("reorder_pct", "reorder")):
        if shape.get(key):
            parts.append(f"{shape[key]:g}% {what}")
    if shape.get("bandwidth_bps"):
        parts.append(f"{shape['bandwidth_bps'] / 1e6:g} Mbit/s")
    return ", ".join(parts) or "unshaped"


def _severity(shape: Any) -> tuple[int, float, float]:
    if not isinstance(shape, dict):
        return (0, 0.0, 0.0)
    return (1 if shape.get("drop") else 0, float(shape.get("loss_pct") or 0),
            float(shape.get("latency_ms") or 0) + float(shape.get("jitter_ms") or 0))


def _config_words(config: dict[str, Any], name: Any) -> tuple[str, tuple[int, float, float]]:
    """A sync-protocol config as words ("default 100 ms, 1% loss; to single/8: cut") and
    how bad the worst shape it asks for is."""
    if config.get("enabled") is False:
        return "off (every direction cut)", (1, 0.0, 0.0)
    words, worst = [], (0, 0.0, 0.0)
    if isinstance(config.get("default"), dict):
        words.append(f"default {_shape_label(config['default'])}")
        worst = _severity(config["default"])
    for rule in config.get("rules") or []:
        if not isinstance(rule, dict):
            continue
        shape = {"drop": True} if rule.get("drop") else rule.get("shape")
        peers = [str(name(p)) for p in rule.get("peers") or []]
        shown = ", ".join(peers[:3]) + (f" and {len(peers) - 3} more" if len(peers) > 3 else "")
        words.append(f"to {shown}: {_shape_label(shape) if isinstance(shape, dict) else '?'}")
        worst = max(worst, _severity(shape))
    for link in config.get("links") or []:
        if isinstance(link, dict):
            shape = {"drop": True} if link.get("drop") else link.get("shape")
            words.append(f"{name(link.get('src'))} → {name(link.get('dst'))}: "
                         f"{_shape_label(shape) if isinstance(shape, dict) else '?'}")
            worst = max(worst, _severity(shape))
    return "; ".join(words) or "no change", worst


def _change_words(change: dict[str, Any], name: Any) -> tuple[str, str, tuple[int, float, float]]:
    """(whose egress, what, how bad) of one network change, netem's record (with `op`)
    or a config line."""
    if "op" in change:
        asked = dict(change.get("asked") or {})
        if change["op"] == "request" and isinstance(asked.get("config"), dict):
            what, worst = _config_words(asked["config"], name)
            return str(name(asked.get("host"))), what, worst
        if change["op"] in ("default", "rule") and isinstance(asked.get("shape"), dict):
            where = (name(asked.get("host")) if change["op"] == "default"
                     else f"{name(asked.get('src'))} → {name(asked.get('dst'))}")
            return str(where), _shape_label(asked["shape"]), _severity(asked["shape"])
        what, severity = _op_words(str(change["op"]), asked, name)
        return str(change.get("asked_by") or "?"), what, severity
    config = change.get("applied") if isinstance(change.get("applied"), dict) else None
    config = config or change.get("request")
    if not isinstance(config, dict):
        return str(change.get("asked_by") or "?"), to_json(config), (0, 0.0, 0.0)
    what, worst = _config_words(config, name)
    return str(change.get("asked_by") or "everyone"), what, worst


_NAMED = 3  # hosts or directions a sentence names before "and N more"


def _some(items: list[str]) -> str:
    more = f" and {len(items) - _NAMED} more" if len(items) > _NAMED else ""
    return ", ".join(items[:_NAMED]) + more


def _op_words(op: str, asked: dict[str, Any], name: Any) -> tuple[str, tuple[int, float, float]]:
    """A partition, heal, cut or override (a fault's) as a sentence, and how bad it is:
    "cut 2 directions: single/0 → single/1, single/1 → single/0"."""
    def hosts(key: str) -> str:
        return _some([str(name(h)) for h in asked.get(key) or []])

    def directions(pairs: list[Any]) -> str:
        return _some([f"{name(p[0])} → {name(p[1])}" for p in pairs])

    cut = (1, 0.0, 0.0)
    if op == "partition":
        join = "from {} to {}" if asked.get("oneway") else "between {} and {}"
        return "partition " + join.format(hosts("a"), hosts("b")), cut
    if op == "heal":
        if not asked.get("a") and not asked.get("b"):
            return "heal: every partition lifted", (0, 0.0, 0.0)
        return f"heal between {hosts('a')} and {hosts('b')}", (0, 0.0, 0.0)
    pairs = [p for p in asked.get("pairs") or asked.get("shapes") or []
             if isinstance(p, list) and len(p) >= 2]
    n = f"{len(pairs)} direction{'s' if len(pairs) != 1 else ''}"
    if op in ("cut", "uncut"):
        verb, severity = ("cut", cut) if op == "cut" else ("cut lifted from", (0, 0.0, 0.0))
        return f"{verb} {n}: {directions(pairs)}", severity
    if op == "override":
        by_shape: dict[str, list[Any]] = {}
        worst = (0, 0.0, 0.0)
        for p in pairs:
            shape = p[2] if len(p) > 2 and isinstance(p[2], dict) else None
            label = "their own shapes again" if shape is None else _shape_label(shape)
            by_shape.setdefault(label, []).append(p)
            worst = max(worst, _severity(shape)) if shape is not None else worst
        parts = [f"{directions(ps)}: {label}" for label, ps in by_shape.items()]
        return f"override {n}: " + "; ".join(parts), worst
    return f"{op} {to_json(asked)[:200]}", (0, 0.0, 0.0)


def _changes_table(r: RunData) -> str:
    """Network changes as sentences, the same change asked by many hosts on one row, the
    worst (cuts, then loss, then delay) first, the rest folded."""
    groups: dict[str, list[tuple[float | None, str]]] = {}
    worst: dict[str, tuple[int, float, float]] = {}
    for change in r.shapes.changes:
        who, what, bad = _change_words(change, r.shapes.name)
        groups.setdefault(what, []).append((r.rel(change), who))
        worst[what] = bad
    rows = []
    for what in sorted(groups, key=lambda w: (tuple(-x for x in worst[w]), w)):
        items = groups[what]
        times = [t for t, _ in items if t is not None]
        at = "—"
        if times:
            span = f"-{num(max(times), 2)}" if max(times) > min(times) else ""
            at = f"{num(min(times), 2)}{span} s"
        hosts = sorted({w for _, w in items})
        named = ", ".join(hosts[:3]) + (", …" if len(hosts) > 3 else "")
        sentence = (f"{hosts[0]}: {what}" if len(hosts) == 1
                    else f"{len(hosts)} hosts ({named}): {what}")
        rows.append(f"<tr><td class='num'>{at}</td><td>{escape(sentence)}</td></tr>")
    if not rows:
        return '<p class="note">No network changes.</p>'
    return folded_table("<th>at</th><th>change</th>", rows, "changes")


def network_section(r: RunData) -> str:
    """The Network section."""
    tl = r.shapes
    net = r.run.network or {}
    hosts = []
    outcome = {i.id: i.outcome for i in r.instances}
    ip_of = {name: ip for ip, name in reversed(tl.names.items())}  # the first address
    for iid in tl.hosts or [i.id for i in r.instances]:
        hosts.append((iid, ip_of.get(iid, ""), _svg.OUTCOME_COLOURS.get(outcome.get(iid), "#868e96")))
    # counted by class, not visited direction by direction (1,000 hosts: a million)
    directions = tl.directions(_shape_label)
    counts = directions.counts
    common = max(counts, key=lambda k: counts[k]) if counts else None
    n_other = sum(counts.values()) - (counts[common] if common is not None else 0)
    edges = []
    for a, b, shape in directions.others(common, _svg.TOPOLOGY_MAX_EDGES):
        c = "#e03131" if shape.get("drop") else "#e8590c"
        edges.append((a, b, _shape_label(shape), c))
    caption = (
        f"Every direction: <b>{escape(common)}</b> unless drawn."
        if common
        else "No link is shaped."
    )
    if n_other > _svg.TOPOLOGY_MAX_EDGES:
        caption += f" The first {_svg.TOPOLOGY_MAX_EDGES} of {n_other} others are drawn."
    topo = _svg.topology(hosts, edges, hub_label=str(net.get("backend") or "hub"))
    changes = _changes_table(r)
    subnet = escape(str(net.get("subnet") or "—"))
    return (
        '<section id="network"><h2>Network</h2>'
        + _event_alerts(r)
        + f'<p class="sub">Backend <b>{escape(str(net.get("backend") or "none"))}</b>, data subnet '
        f"<code>{subnet}</code>. Shapes at the end of the run (egress, per direction). "
        f"{caption}</p>"
        f'<div class="grid"><div>{topo}</div><div><h3>Changes (worst first)</h3>{changes}</div></div></section>'
    )

