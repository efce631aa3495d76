"""The report of a 100-instance run stays readable: long tables worst first, the rest
folded; network changes as sentences; traces read in both forms (gzip and plain)."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.observe import analyse_traces, render_html
from tests.observe._bigrun import make_big_run
from tests.observe._fixture import M0, T0


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_big_run(tmp_path_factory.mktemp("big"), messages=25)


@pytest.fixture(scope="module")
def html(big_run: Path) -> str:
    return render_html(big_run)


def _section(html: str, sid: str) -> str:
    return html[html.index(f'<section id="{sid}">'):].split("</section>", 1)[0]


def test_network_changes_read_as_sentences_worst_first(html: str) -> None:
    net = _section(html, "network")
    rows = re.findall(r"<tr><td class='num'>[^<]*</td><td>([^<]*)</td></tr>", net)
    # the 100 hosts shaping their egress at the start are one row, not 100
    assert rows == [
        "single/7: default 50 ms; to single/8, single/9: cut",
        "single/3: default 100 ms ±10 ms, 1% loss",
        "100 hosts (single/0, single/1, single/10, …): default 50 ms",
    ]
    assert "{&quot;" not in net and "latency_ms" not in net  # no raw JSON


def test_long_link_tables_show_the_worst_first_and_fold_the_rest(
    html: str, big_run: Path
) -> None:
    prop = _section(html, "propagation")
    links = prop[prop.index("<h3>Links"):prop.index("<h3>Out-of-line hops")]
    shown, _, folded = links.partition("<details")
    row = r"<td>(single/\d+) → single/\d+</td><td class='num'>(\d+)</td>.*?(\d+)</td></tr>"
    first = re.findall(row, shown)
    assert len(first) == 15
    assert {src for src, _, _ in first} >= {"single/5", "single/11"}  # +180 ms on every hop
    shares = [int(out) / int(hops) for _, hops, out in first + re.findall(row, folded)]
    assert shares == sorted(shares, reverse=True) and shares[0] == 1.0 and shares[-1] < 1.0
    n_links = len(analyse_traces(big_run).links)
    assert f"the other {n_links - 15} links</summary>" in folded
    assert len(re.findall(r"<td>single/\d+ → single/\d+</td>", folded)) == n_links - 15


def test_gzip_traces_give_the_same_analysis_as_plain_ones(tmp_path: Path) -> None:
    plain = make_big_run(tmp_path / "a", instances=12, messages=6, degree=4)
    packed = make_big_run(tmp_path / "b", instances=12, messages=6, degree=4, gzip_traces=True)
    assert not list(packed.glob("*/*/trace.jsonl"))
    a, b = analyse_traces(plain), analyse_traces(packed)
    assert a.hops and [(h.msg_id, h.src, h.dst, h.hop_ms) for h in a.hops] == [
        (h.msg_id, h.src, h.dst, h.hop_ms) for h in b.hops
    ]
    assert a.topics == b.topics


def test_a_gzip_trace_cut_short_keeps_what_was_written(tmp_path: Path) -> None:
    run = make_big_run(tmp_path, instances=12, messages=6, degree=4, gzip_traces=True)
    whole = analyse_traces(run)
    path = run / "single" / "4" / "trace.jsonl.gz"
    data = path.read_bytes()
    lines = gzip.decompress(data).splitlines()
    # a writer killed mid-stream (no gzip trailer), then restarted (a second member)
    cut = gzip.compress(b"\n".join(lines[:3]) + b"\n")[:-8]
    path.write_bytes(cut)
    assert len([h for h in analyse_traces(run).hops if h.dst == "single/4"]) < len(
        [h for h in whole.hops if h.dst == "single/4"]
    )
    path.write_bytes(gzip.compress(b"\n".join(lines[:3]) + b"\n")
                     + gzip.compress(b"\n".join(lines[3:]) + b"\n"))
    assert [(h.msg_id, h.src, h.dst) for h in analyse_traces(run).hops] == [
        (h.msg_id, h.src, h.dst) for h in whole.hops
    ]


def test_a_change_asked_by_three_hosts_names_them_all_without_an_ellipsis(
    run_factory: Callable[..., Path],
) -> None:
    """Three hosts shaping their egress alike read "3 hosts (single/0, single/1, single/2,
    …)", as if there were more."""
    run_dir = run_factory(instances=3, change_at=None)
    shape = {"latency_ms": 20.0}
    with (run_dir / "network.jsonl").open("a") as f:
        for i in range(3):
            f.write(json.dumps({"ts": T0 + 1, "mono": M0 + 1, "asked_by": f"single/{i}",
                                "request": {"default": shape}, "applied": {"default": shape}})
                    + "\n")
    rows = re.findall(r"<tr><td class='num'>[^<]*</td><td>([^<]*)</td></tr>",
                      _section(render_html(run_dir), "network"))
    assert "3 hosts (single/0, single/1, single/2): default 20 ms" in rows


def test_a_fault_s_network_changes_read_as_sentences_not_json(tmp_path: Path) -> None:
    """A fault's cut and shape override read as their raw JSON (every field of every
    shape), which ran past the page's width."""
    import netem
    from harness.observe._jsonl import read_jsonl
    from harness.observe._report._network import _change_words

    record = tmp_path / "network.jsonl"
    with netem.Network(backend="none", record=record, dry_run=True) as net:
        a, b, c = net.build(3)
        net.partition([a], [b, c])
        net.heal()
        net.cut([(a, b), (b, a)], asked_by="fault 1")
        net.uncut([(a, b), (b, a)], asked_by="fault 1 undone")
        net.override({(a, b): netem.LinkShape(latency_ms=80), (b, a): None}, asked_by="fault 2")
    names = {str(h.ip): f"single/{h.number - 1}" for h in (a, b, c)}
    words = [_change_words(line, lambda ip: names.get(str(ip), ip))[:2]
             for line in read_jsonl(record) if line["op"] not in ("build", "close")]
    assert words == [
        ("netem", "partition between single/0 and single/1, single/2"),
        ("netem", "heal: every partition lifted"),
        ("fault 1", "cut 2 directions: single/0 → single/1, single/1 → single/0"),
        ("fault 1 undone", "cut lifted from 2 directions: single/0 → single/1, "
                           "single/1 → single/0"),
        ("fault 2", "override 2 directions: single/0 → single/1: 80 ms; "
                    "single/1 → single/0: their own shapes again"),
    ]
