"""The report's propagation section: delays per topic and per hop, and out-of-line hops."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from harness.observe import _svg
from harness.observe._report._format import folded_table, num

if TYPE_CHECKING:
    from harness.observe._trace import LinkDelay, TraceAnalysis

_CAUSE_TAG = {"loss and retransmit": "loss", "queueing": "queue", "slow handler": "slow"}

def _badness(ln: LinkDelay) -> tuple[float, float, str, str]:
    """Worst first: the larger share of out-of-line hops, then the larger median excess."""
    return (-ln.out_of_line / max(1, ln.hops), -ln.median_excess_ms, ln.src, ln.dst)


def propagation_section(a: TraceAnalysis) -> str:
    """The Message propagation section."""
    if not a.messages:
        return (
            '<section id="propagation"><h2>Message propagation</h2>'
            '<p class="note">No message traces (trace.jsonl) in this run.</p></section>'
        )
    rows = "".join(
        f"<tr><td><b>{escape(t.topic)}</b></td><td class='num'>{t.messages}</td>"
        f"<td class='num'>{num(t.p50_ms)}</td><td class='num'>{num(t.p90_ms)}</td>"
        f"<td class='num'>{num(t.p99_ms)}</td><td class='num'>{num(t.max_ms)}</td>"
        f"<td class='num'>{t.coverage * 100:.0f}%</td></tr>"
        for t in a.topics
    )
    lat = sorted(ln.expected_ms for ln in a.links)
    ref = lat[len(lat) // 2] if lat else None
    box = _svg.box_strip(
        {t.topic: t.samples_ms for t in a.topics},
        x_label="ms after publish",
        reference=ref,
        reference_label=f"one hop ≈ {num(ref)} ms" if ref else "",
    )
    hop_box = _svg.box_strip(
        {
            f"{ln.src}→{ln.dst}": list(a.link_hop_ms[(ln.src, ln.dst)])
            for ln in sorted(a.links, key=_badness)[:24]
        },
        x_label="hop delay, ms",
    )
    links = folded_table(
        "<th>link</th><th>hops</th><th>configured ms</th><th>median ms</th><th>excess ms</th>"
        "<th>out of line</th>",
        [
            f"<tr class='{'fail' if ln.out_of_line * 2 > ln.hops else ''}'>"
            f"<td>{escape(ln.src)} → {escape(ln.dst)}</td>"
            f"<td class='num'>{ln.hops}</td><td class='num'>{num(ln.expected_ms)}</td>"
            f"<td class='num'>{num(ln.median_ms)}</td>"
            f"<td class='num'>{num(ln.median_excess_ms)}</td>"
            f"<td class='num'>{ln.out_of_line}</td></tr>"
            for ln in sorted(a.links, key=_badness)
        ],
        "links",
    )
    out = a.outliers
    grouped = folded_table(
        "<th>link</th><th>likely cause</th><th>hops</th><th>median excess ms</th>"
        "<th>max excess ms</th><th>evidence (first hop)</th>",
        [
        f"<tr><td>{escape(g.src)} → {escape(g.dst)}</td>"
        f"<td><span class='tag {_CAUSE_TAG.get(g.cause, '')}'>{escape(g.cause)}</span></td>"
        f"<td class='num'>{g.hops}</td>"
        f"<td class='num'>+{num(g.median_excess_ms)}</td>"
        f"<td class='num'>+{num(g.max_excess_ms)}</td>"
        f"<td class='sub'>{escape(g.evidence)}</td></tr>"
        for g in a.outlier_groups
        ],
        "links with out-of-line hops",
    )
    orows = "".join(
        f"<tr><td>{escape(h.msg_id)}</td><td>{escape(h.topic)}</td>"
        f"<td>{escape(h.src)} → {escape(h.dst)}</td>"
        f"<td class='num'>{num(h.hop_ms)}</td><td class='num'>{num(h.expected_ms)}</td>"
        f"<td class='num'>+{num(h.excess_ms)}</td>"
        f"<td><span class='tag {_CAUSE_TAG.get(h.cause or '', '')}'>{escape(h.cause or '')}</span> "
        f"<span class='sub'>{escape(h.evidence)}</span></td></tr>"
        for h in out[:300]
    )
    outliers = (
        (
            grouped
            +
            f"<details><summary>every out-of-line hop ({min(len(out), 300)} worst)</summary>"
            "<table><thead><tr><th>message</th><th>topic</th><th>hop</th><th>delay ms</th>"
            "<th>configured</th><th>excess</th><th>likely cause</th></tr></thead>"
            f"<tbody>{orows}</tbody></table></details>"
        )
        if out
        else '<p class="note">Every hop took what its configured link explains.</p>'
    )
    by_cause = "".join(f", {escape(c)} {n:,}" for c, n in a.causes.items())
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
        f"<div><h3>Links ({len(a.links)}, worst first)</h3>{links}</div></div>"
        f"<h3>Out-of-line hops ({a.out_of_line:,}{by_cause})</h3>{outliers}</section>"
    )

