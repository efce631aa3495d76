"""Small inline-SVG charts for the report: no scripts, no fetches, readable at a glance."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
OUTCOME_COLOURS = {"passed": "#2f9e44", "failed": "#d9480f", None: "#868e96"}
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="11"'


def colour(i: int) -> str:
    """The i-th series colour."""
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, n)
    if not (math.isfinite(raw) and raw > 0):  # a span no float can step over (damaged times)
        return [lo]
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def fmt(v: float) -> str:
    """A tick label: short, without trailing zeros."""
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.2g}"
    return f"{v:.3f}".rstrip("0").rstrip(".")


class _Frame:
    def __init__(
        self,
        width: int,
        height: int,
        xr: tuple[float, float],
        yr: tuple[float, float],
        left: int = 52,
        right: int = 12,
        top: int = 12,
        bottom: int = 30,
    ) -> None:
        self.w, self.h = width, height
        self.l, self.r, self.t, self.b = left, right, top, bottom
        self.xt = nice_ticks(*xr)
        self.yt = nice_ticks(*yr)
        self.x0, self.x1 = min(self.xt[0], xr[0]), max(self.xt[-1], xr[1])
        self.y0, self.y1 = min(self.yt[0], yr[0]), max(self.yt[-1], yr[1])

    def x(self, v: float) -> float:
        span = (self.x1 - self.x0) or 1
        return self.l + (v - self.x0) / span * (self.w - self.l - self.r)

    def x_value(self, px: float) -> float:
        """The value at horizontal pixel `px` (`x` inverted)."""
        span = (self.x1 - self.x0) or 1
        return self.x0 + (px - self.l) * span / (self.w - self.l - self.r)

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1
        return self.h - self.b - (v - self.y0) / span * (self.h - self.t - self.b)

    def axes(self, x_label: str, y_label: str) -> list[str]:
        out = []
        for t in self.yt:
            y = self.y(t)
            out.append(
                f'<line x1="{self.l}" x2="{self.w - self.r}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#e9ecef"/>'
            )
            out.append(
                f'<text x="{self.l - 6}" y="{y + 4:.1f}" text-anchor="end" '
                f'fill="#495057">{fmt(t)}</text>'
            )
        for t in self.xt:
            x = self.x(t)
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.h - self.b}" '
                f'y2="{self.h - self.b + 4}" stroke="#adb5bd"/>'
            )
            out.append(
                f'<text x="{x:.1f}" y="{self.h - self.b + 15}" text-anchor="middle" '
                f'fill="#495057">{fmt(t)}</text>'
            )
        out.append(
            f'<line x1="{self.l}" x2="{self.w - self.r}" y1="{self.h - self.b}" '
            f'y2="{self.h - self.b}" stroke="#adb5bd"/>'
        )
        out.append(
            f'<text x="{(self.l + self.w - self.r) / 2:.0f}" y="{self.h - 3}" '
            f'text-anchor="middle" fill="#495057">{escape(x_label)}</text>'
        )
        out.append(
            f'<text transform="translate(11 {(self.t + self.h - self.b) / 2:.0f}) '
            f'rotate(-90)" text-anchor="middle" fill="#495057">{escape(y_label)}</text>'
        )
        return out


def _svg(width: int, height: int, body: Sequence[str], cls: str, label: str) -> str:
    return (
        f'<svg class="{cls}" role="img" aria-label="{escape(label)}" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
        f"{FONT}>" + "".join(body) + "</svg>"
    )


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    x_label: str = "seconds since start",
    y_label: str = "",
    width: int = 460,
    height: int = 220,
    step: bool = False,
    markers: bool = False,
) -> str:
    """Lines (or steps) of (x, y) points per named series, with a legend."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return '<p class="empty">no data</p>'
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    legend_rows = math.ceil(len(series) / 3) if len(series) > 1 else 0
    fr = _Frame(width, height, (min(xs), max(xs)), (min(0.0, min(ys)), max(ys)))
    body = fr.axes(x_label, y_label)
    for i, (name, s) in enumerate(series.items()):
        s = sorted(s)
        c = colour(i)
        if step:
            d, prev = [], None
            for x, y in s:
                if prev is not None:
                    d.append(f"L{fr.x(x):.1f},{fr.y(prev):.1f}")
                d.append(f"{'M' if prev is None else 'L'}{fr.x(x):.1f},{fr.y(y):.1f}")
                prev = y
            path = "".join(d)
        else:
            path = "".join(
                f"{'M' if j == 0 else 'L'}{fr.x(x):.1f},{fr.y(y):.1f}" for j, (x, y) in enumerate(s)
            )
        body.append(
            f'<path class="series" d="{path}" fill="none" stroke="{c}" '
            f'stroke-width="1.6"><title>{escape(name)}</title></path>'
        )
        if markers or len(s) == 1:
            body.extend(
                f'<circle cx="{fr.x(x):.1f}" cy="{fr.y(y):.1f}" r="2.2" fill="{c}">'
                f"<title>{escape(name)}: {fmt(y)} at {fmt(x)}</title></circle>"
                for x, y in s
            )
    svg = _svg(width, height, body, "chart line", y_label or "chart")
    return svg + (legend(list(series)) if legend_rows else "")


def legend(names: Sequence[str]) -> str:
    """An HTML legend of coloured swatches, in series order."""
    items = "".join(
        f'<span><i style="background:{colour(i)}"></i>{escape(n)}</span>'
        for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def box_strip(
    groups: Mapping[str, Sequence[float]],
    *,
    x_label: str = "ms",
    width: int = 560,
    reference: float | None = None,
    reference_label: str = "",
) -> str:
    """One row per group: its values as dots, a box from p25 to p75 with the median, and
    whiskers to p5 and p95; an optional dashed reference line (e.g. the configured latency)."""
    vals = [v for vs in groups.values() for v in vs]
    if not vals:
        return '<p class="empty">no data</p>'
    row, top = 34, 10
    height = top + row * len(groups) + 34
    left = max(60, 7 * max(len(g) for g in groups) + 12)
    hi = max(vals + ([reference] if reference is not None else []))
    fr = _Frame(width, height, (0.0, hi), (0, 1), left=left, top=top)
    body = []
    for t in fr.xt:
        x = fr.x(t)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - 30}" stroke="#e9ecef"/>'
        )
        body.append(
            f'<text x="{x:.1f}" y="{height - 16}" text-anchor="middle" '
            f'fill="#495057">{fmt(t)}</text>'
        )
    body.append(
        f'<text x="{(left + width) / 2:.0f}" y="{height - 3}" text-anchor="middle" '
        f'fill="#495057">{escape(x_label)}</text>'
    )
    for i, (name, vs) in enumerate(groups.items()):
        cy = top + row * i + row / 2
        c = colour(i)
        body.append(
            f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" '
            f'fill="#212529">{escape(name)}</text>'
        )
        s = sorted(vs)
        if not s:
            continue

        def q(p: float, s: list[float] = s) -> float:
            return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]

        body.append(
            f'<line x1="{fr.x(q(0.05)):.1f}" x2="{fr.x(q(0.95)):.1f}" y1="{cy:.1f}" '
            f'y2="{cy:.1f}" stroke="{c}" stroke-width="1.2"/>'
        )
        body.append(
            f'<rect x="{fr.x(q(0.25)):.1f}" y="{cy - 9:.1f}" '
            f'width="{max(1.5, fr.x(q(0.75)) - fr.x(q(0.25))):.1f}" height="18" '
            f'fill="{c}" fill-opacity="0.18" stroke="{c}"/>'
        )
        body.append(
            f'<line x1="{fr.x(q(0.5)):.1f}" x2="{fr.x(q(0.5)):.1f}" y1="{cy - 9:.1f}" '
            f'y2="{cy + 9:.1f}" stroke="{c}" stroke-width="2.4"/>'
        )
        body.extend(_dots(s, fr, cy, c, x_label))
    if reference is not None:
        x = fr.x(reference)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{height - 30}" '
            'stroke="#495057" stroke-dasharray="4 3"/>'
        )
        body.append(
            f'<text x="{x + 4:.1f}" y="{top + 2}" fill="#495057">{escape(reference_label)}</text>'
        )
    return _svg(width, height, body, "chart box", x_label)


STRIP_DEPTH = 13  # dots stacked at one position at most: the strip's height in dots
STRIP_DOTS = 400  # dots per row at most, beyond one per position


def _dots(values: Sequence[float], fr: _Frame, cy: float, c: str, label: str) -> Iterator[str]:
    """Sorted `values` as a strip of dots: one group per 2-pixel column, its dots stacked
    as high as its share of the values (STRIP_DEPTH at most), titled with its count and
    range. Every position is drawn, the tail included, yet a row costs at most a dot per
    column plus STRIP_DOTS: thousands of titled circles made the page slow to open."""
    scale = min(1.0, STRIP_DOTS / len(values))
    i = 0
    while i < len(values):
        col = int(fr.x(values[i]) // 2)  # pixels 2 * col up to 2 * col + 2
        # sorted: the column's values end where its right edge's value would go
        end = max(i + 1, bisect_left(values, fr.x_value(2 * col + 2), i))
        vs, i = values[i:end], end
        n = min(STRIP_DEPTH, max(1, round(len(vs) * scale)))
        # 7919 is prime to STRIP_DEPTH, so a column's dots take distinct rows
        dots = "".join(
            f'<circle cx="{2 * col + 1}" cy="{cy + ((j * 7919) % STRIP_DEPTH - 6) * 0.9:.1f}" '
            'r="1.7"/>'
            for j in range(n)
        )
        what = (
            f"{fmt(vs[0])} {label}"
            if len(vs) == 1
            else f"{len(vs)} values, {fmt(vs[0])} to {fmt(vs[-1])} {label}"
        )
        yield (
            f'<g class="pt" fill="{c}" fill-opacity="0.65"><title>{escape(what)}</title>{dots}</g>'
        )


def timeline(
    lanes: Sequence[tuple[str, Sequence[tuple[float, float, str, str]]]],
    markers: Sequence[tuple[float, str, str]],
    *,
    end: float,
    width: int = 920,
    spans: Sequence[tuple[float, float, str, str]] = (),
) -> str:
    """Horizontal lanes of bars (start, end, colour, tooltip) under vertical markers
    (time, colour, label) such as phases, barrier releases and network changes, over shaded
    spans (start, end, colour, tooltip) across every lane, such as a fault's."""
    row, top, left = 18, 34, 110
    height = top + row * len(lanes) + 30
    fr = _Frame(width, height, (0.0, max(end, 0.001)), (0, 1), left=left, top=top)
    body = []
    for a, b, c, tip in spans:
        w = max(2.0, fr.x(b) - fr.x(a))
        body.append(
            f'<rect class="span" x="{fr.x(a):.1f}" y="{top - 4}" width="{w:.1f}" '
            f'height="{height - 24 - top}" fill="{c}" fill-opacity="0.12">'
            f"<title>{escape(tip)}</title></rect>"
        )
    for t in fr.xt:
        x = fr.x(t)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - 28}" stroke="#f1f3f5"/>'
        )
        body.append(
            f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle" '
            f'fill="#495057">{fmt(t)} s</text>'
        )
    for i, (name, bars) in enumerate(lanes):
        y = top + row * i
        body.append(
            f'<text x="{left - 8}" y="{y + 12}" text-anchor="end" '
            f'fill="#212529">{escape(name)}</text>'
        )
        for a, b, c, tip in bars:
            w = max(2.0, fr.x(b) - fr.x(a))
            body.append(
                f'<rect x="{fr.x(a):.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                f'rx="3" fill="{c}"><title>{escape(tip)}</title></rect>'
            )
    for (t, c, label), label_row in zip(sorted(markers), _label_rows(markers, fr), strict=True):
        x = fr.x(t)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{height - 28}" '
            f'stroke="{c}" stroke-width="1.2" stroke-dasharray="3 2">'
            f"<title>{escape(label)} at {fmt(t)} s</title></line>"
        )
        if label_row is not None:
            body.append(
                f'<text x="{x + 2:.1f}" y="{10 + 11 * label_row}" fill="{c}">'
                f"{escape(_cut(label))}</text>"
            )
    return _svg(width, height, body, "chart timeline", "timeline")


_LABEL_CHARS = 28
_LABEL_ROWS = 3
_CHAR_PX = 6.2  # an 11 px sans-serif character, a little generously


def _cut(label: str) -> str:
    """A marker's label as drawn: at most `_LABEL_CHARS`, an ellipsis saying it goes on
    (its tooltip has it whole); cut at a word where one ends near (a pid cut "pid 38" read
    as another pid)."""
    if len(label) <= _LABEL_CHARS:
        return label
    head = label[:_LABEL_CHARS - 1]
    space = head.rfind(" ")
    return (head[:space] if space >= _LABEL_CHARS // 2 else head).rstrip(" ,(") + "…"


def _label_rows(markers: Sequence[tuple[float, str, str]], fr: _Frame) -> list[int | None]:
    """A text row above the chart for each marker's label (in time order), the first row
    where it does not overlap the label before it; None where every row is taken (the
    marker's line keeps its tooltip)."""
    free_from = [-math.inf] * _LABEL_ROWS
    rows: list[int | None] = []
    for t, _, label in sorted(markers):
        x = fr.x(t)
        row = next((i for i, edge in enumerate(free_from) if edge < x), None)
        if row is not None:
            free_from[row] = x + 2 + _CHAR_PX * len(_cut(label)) + 4
        rows.append(row)
    return rows


TOPOLOGY_LABELLED_HOSTS = 40  # above this, hosts are dots named by their tooltips
TOPOLOGY_MAX_EDGES = 400


def topology(
    hosts: Sequence[tuple[str, str, str]],
    edges: Sequence[tuple[str, str, str, str]],
    *,
    hub_label: str = "hub",
) -> str:
    """Hosts (name, address, colour) on a circle around the hub they are joined by, and
    shaped directions (src, dst, label, colour) as arrows between them (the first
    TOPOLOGY_MAX_EDGES). Up to TOPOLOGY_LABELLED_HOSTS hosts are labelled and arrows carry
    their shape; above that hosts are small dots and arrows plain lines, each named by its
    tooltip, so that a 200-host run still shows who failed and which links were shaped."""
    n = max(1, len(hosts))
    compact = n > TOPOLOGY_LABELLED_HOSTS
    size = 560 if compact else 440
    cx = cy = size / 2
    radius = size / 2 - (30 if compact else 70)
    node_r, gap = (6, 9) if compact else (13, 16)
    edge_style = (
        'stroke-width="1.2" opacity="0.8"'
        if compact
        else 'stroke-width="1.5" marker-end="url(#arr)"'
    )
    pos = {}
    body = [
        '<defs><marker id="arr" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="6" '
        'markerHeight="6" orient="auto-start-reverse"><path d="M0,0L8,4L0,8z" '
        'fill="#868e96"/></marker></defs>'
    ]
    for i, (name, _, _) in enumerate(hosts):
        a = -math.pi / 2 + 2 * math.pi * i / n
        pos[name] = (cx + radius * math.cos(a), cy + radius * math.sin(a))
        body.append(
            f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{pos[name][0]:.1f}" '
            f'y2="{pos[name][1]:.1f}" stroke="#dee2e6" stroke-width="{1 if compact else 2}"/>'
        )
    for src, dst, label, c in edges[:TOPOLOGY_MAX_EDGES]:
        if src not in pos or dst not in pos:
            continue
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        # bend to the left of the direction, so a -> b and b -> a do not overlap
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1
        bend = 8 if compact else 22
        bx, by = mx - dy / length * bend, my + dx / length * bend
        sx, sy = x1 + dx / length * gap, y1 + dy / length * gap
        ex, ey = x2 - dx / length * gap, y2 - dy / length * gap
        body.append(
            f'<path d="M{sx:.1f},{sy:.1f} Q{bx:.1f},{by:.1f} {ex:.1f},{ey:.1f}" '
            f'fill="none" stroke="{c}" {edge_style}>'
            f"<title>{escape(src)} → {escape(dst)}: {escape(label)}</title></path>"
        )
        if not compact:
            body.append(
                f'<text x="{(bx + mx) / 2:.1f}" y="{(by + my) / 2:.1f}" text-anchor="middle" '
                f'fill="{c}" font-size="10">{escape(label)}</text>'
            )
    body.append(f'<circle cx="{cx}" cy="{cy}" r="20" fill="#f8f9fa" stroke="#adb5bd"/>')
    body.append(
        f'<text x="{cx}" y="{cy + 4}" text-anchor="middle" fill="#495057">'
        f"{escape(hub_label)}</text>"
    )
    for name, addr, c in hosts:
        x, y = pos[name]
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{node_r}" fill="{c}" stroke="#fff" '
            f'stroke-width="{1 if compact else 2}"><title>{escape(name)} {escape(addr)}</title>'
            "</circle>"
        )
        if compact:
            continue
        ty = y - 19 if y < cy else y + 27
        body.append(
            f'<text x="{x:.1f}" y="{ty:.1f}" text-anchor="middle" fill="#212529">'
            f"{escape(name)}</text>"
        )
        body.append(
            f'<text x="{x:.1f}" y="{ty + 11:.1f}" text-anchor="middle" fill="#868e96" '
            f'font-size="9">{escape(addr)}</text>'
        )
    return _svg(size, size, body, "chart topology", "network topology")
