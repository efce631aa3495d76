"""report.html (rendered in headless Chromium), junit.xml and summary.json."""

from __future__ import annotations

import errno
import itertools
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness._cli import main
from harness._errors import UsageError
from harness.observe import _svg, render_html, write_report
from harness.observe._report._charts import condense as _condense
from tests.observe import _chromium
from tests.observe._fixture import RUN_ID, orphan

needs_chromium = pytest.mark.skipif(_chromium.CHROMIUM is None, reason="chromium is not installed")


def test_report_files(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory(failed=(2,), lossy=(0, 1))
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [f"single/{i}" for i in range(4)]
    assert (suite.get("tests"), suite.get("failures")) == ("4", "1")
    failures = [(c.get("name"), f.get("message")) for c in cases for f in c.findall("failure")]
    assert failures == [("single/2", "height mismatch at layer 7")]
    assert float(cases[0].get("time") or 0) == pytest.approx(10.9)
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["outcome"] == "failed" and s["instances"] == {"total": 4, "passed": 3, "failed": 1}
    assert s["failures"] == [
        {"instance": "single/2", "reason": "height mismatch at layer 7", "exit_code": 1}
    ]
    assert set(s["propagation"]) == {"atxs", "blocks"} and s["out_of_line_hops"] > 0


def test_a_report_that_cannot_be_written_leaves_the_last_one_whole(
    run_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while the second of the three files is written: the three files of
    the last report stay as they were (none half-written, none new beside old ones), and
    no temporary file is left."""
    run_dir = run_factory(failed=(2,))
    write_report(run_dir)
    names = ("report.html", "junit.xml", "summary.json")
    before = {n: (run_dir / n).read_bytes() for n in names}
    (run_dir / "single" / "2" / "log.jsonl").write_text("")  # the next report differs
    real = Path.write_bytes
    calls = []

    def full_disk(self: Path, data: bytes) -> int:  # type: ignore[override]
        calls.append(self.name)
        if len(calls) == 2:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError):
        write_report(run_dir)
    monkeypatch.undo()
    assert [c.split(".")[:2] + c.split(".")[-1:] for c in calls[:2]] == [
        ["report", "html", "tmp"], ["junit", "xml", "tmp"]]
    assert {n: (run_dir / n).read_bytes() for n in names} == before
    assert not list(run_dir.glob("*.tmp"))


def test_report_is_self_contained(run_factory: Callable[..., Path]) -> None:
    html = render_html(run_factory(slow_handler=3))
    # no external scripts, styles, images or fonts: only the SVG namespace names a URL
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}


def test_report_links_instance_logs_relatively(run_factory: Callable[..., Path]) -> None:
    run_dir = run_factory()
    html = render_html(run_dir)
    for i in range(4):
        for name in ("log.jsonl", "stdout.log", "stderr.log", "metrics.jsonl", "trace.jsonl"):
            assert f'href="single/{i}/{name}"' in html
            assert (run_dir / "single" / str(i) / name).exists()


def test_a_run_says_what_started_it(run_factory: Callable[..., Path]) -> None:
    """A search's run names the search and the list (run.json's `origin`); a person's
    run says nothing of the kind."""
    run_dir = run_factory()
    assert "started by" not in render_html(run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    record["origin"] = "harness search 20261206-010000-abcdef (list 3 of <10>)"
    (run_dir / "run.json").write_text(json.dumps(record))
    assert ('<div class="sub">started by harness search 20261206-010000-abcdef '
            '(list 3 of &lt;10&gt;)</div>') in render_html(run_dir)
    main(["report", str(run_dir)])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["origin"] == record["origin"]


def test_report_of_a_bare_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "20261126-000000-000000"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "run_id": run_dir.name,
                "plan": "p",
                "case": "c",
                "outcome": "interrupted",
                "started": 1.0,
                "ended": None,
                "instances": [{"id": "single/0"}],
            }
        )
    )
    html = write_report(run_dir).read_text()
    for text in ("No message traces", "No metrics were recorded", "No telemetry", "interrupted"):
        assert text in html
    case = ET.parse(run_dir / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert case is not None and case.get("message") == "no outcome recorded"


def test_report_needs_a_run_json(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no run\.json"):
        write_report(tmp_path)


def test_cli_report(
    run_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = run_factory()
    assert main(["report", RUN_ID, "--outputs", str(tmp_path / "outputs")]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.html")
    assert (run_dir / "junit.xml").exists() and (tmp_path / "outputs" / "history.sqlite").exists()
    assert main(["report", str(tmp_path)]) == 2
    assert "harness: error:" in capsys.readouterr().err


@needs_chromium
def test_console_check_catches_errors(tmp_path: Path) -> None:
    """The check below must be able to fail: a broken page shows its errors."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<p>x</p><img src="http://example.invalid/a.png">'
        "<script>console.error('deliberate'); nothing();</script>"
    )
    page = _chromium.load(bad, tmp_path)
    assert any("deliberate" in m for m in page.console)
    assert any("nothing is not defined" in m for m in page.console)


@needs_chromium
def test_report_renders_in_chromium(run_factory: Callable[..., Path], tmp_path: Path) -> None:
    run_dir = run_factory(instances=5, failed=(2,), lossy=(0, 1), slow_handler=3, messages=10)
    report = write_report(run_dir)
    page = _chromium.load(report, tmp_path)
    assert page.console == []
    dom = page.dom
    for heading in (
        "Failures",
        "Instances",
        "Timeline",
        "Network",
        "Metrics",
        "Message propagation",
        "Link and TCP telemetry",
        "Parameters",
    ):
        assert f"<h2>{heading}</h2>" in dom
    charts = re.findall(r'<svg class="chart (\w+)"', dom)
    assert charts.count("timeline") == 1 and charts.count("topology") == 1
    assert charts.count("box") == 2 and charts.count("line") >= 5
    assert len(re.findall(r'class="series"', dom)) >= 20  # lines drawn, not empty frames
    assert "loss and retransmit" in dom and "slow handler" in dom
    png = tmp_path / "report.png"
    _chromium.screenshot(report, tmp_path, png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


def test_summary_of_a_live_run_counts_no_failures(run_factory: Callable[..., Path]) -> None:
    from harness.observe import summary

    s = summary(run_factory(ended=False))
    assert s["outcome"] is None and s["duration_s"] is None
    assert s["instances"] == {"total": 4, "passed": 0, "failed": 0} and s["failures"] == []


def test_timeline_labels_do_not_overlap() -> None:
    """Barriers released a few ms apart: each label takes the first text row where it
    clears the one before it, and a label with no room left is dropped, not drawn over."""
    markers = [(1.0 + 0.01 * k, "#7048e8", f"barrier-{k} released") for k in range(8)]
    markers.append((9.0, "#1c7ed6", "phase late"))
    svg = _svg.timeline([("i/0", [(0.0, 10.0, "#2b8a3e", "i/0")])], markers, end=10.0)
    texts = re.findall(
        r'<text x="([\d.]+)" y="(\d+)" fill="#(?:7048e8|1c7ed6)">([^<]*)</text>', svg
    )
    assert svg.count('stroke-dasharray="3 2"') == len(markers)  # every marker keeps its line
    assert [t[2] for t in texts] == [
        "barrier-0 released",
        "barrier-1 released",
        "barrier-2 released",
        "phase late",
    ]
    spans: dict[str, list[tuple[float, float]]] = {}
    for x, y, label in texts:
        spans.setdefault(y, []).append((float(x), float(x) + 6 * len(label)))
    for row in spans.values():
        row.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(row)), row


def test_timeline_marks_network_changes_from_the_network_record(
    run_factory: Callable[..., Path],
) -> None:
    """Markers come from network.jsonl, as a real run writes it; a burst of changes (every
    instance shaping its link at once) is one marker."""
    run_dir = run_factory()
    record = run_dir / "network.jsonl"
    first = json.loads(record.read_text().splitlines()[0])  # the supervisor's, at 0.5 s
    config = {"default": {"latency_ms": 20.0}}
    burst = [
        {"ts": first["ts"] + 7.5 + 0.01 * k, "mono": first["mono"] + 7.5 + 0.01 * k,
         "asked_by": f"single/{k % 4}", "request": config, "applied": config}
        for k in range(10)
    ]  # fmt: skip
    with record.open("a") as f:
        f.writelines(json.dumps(rec) + "\n" for rec in burst)
    html = render_html(run_dir)
    start = html.index('<section id="timeline">')
    timeline = html[start : html.index("</section>", start)]
    titles = re.findall(r'stroke="#e8590c"[^>]*><title>([^<]*) at ([\d.]+) s</title>', timeline)
    assert [(label.split(" (")[0], float(t)) for label, t in titles] == [
        ("net: supervisor", 0.5),
        ("net: single/1", 6.0),
        ("net: 10 changes", 8.0),
    ]


@given(
    st.lists(
        st.lists(st.tuples(st.floats(0, 100), st.floats(0, 10)), min_size=1, max_size=12),
        min_size=11,
        max_size=30,
    )
)
def test_condensed_counters_never_go_down(raw: list[list[tuple[float, float]]]) -> None:
    """Many counters, each sampled at its own times: p10, median and p90 per time bin
    are each non-decreasing, because every counter is."""
    series = {}
    for i, samples in enumerate(raw):
        total, points = 0.0, []
        for t, inc in sorted(samples):
            total += inc
            points.append((t, total))
        series[f"i/{i}"] = points
    condensed = _condense(series, kind="counter")
    assert len(condensed) == 3
    for line in condensed.values():
        values = [v for _, v in line]
        assert values == sorted(values), line


def test_a_counter_with_labels_is_a_line_per_label_set_each_a_running_total(
    run_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """counter("received", topic=...) keeps a total per label set: the instance's one line
    went from one set's total to the other's, down and up (10, 1, 20, 2, ...)."""
    from harness.observe import Metrics
    from harness.observe._report import _charts

    run_dir = run_factory(instances=2, change_at=None)
    (run_dir / "single/0/metrics.jsonl").unlink(missing_ok=True)
    with Metrics(run_dir / "single/0/metrics.jsonl") as metrics:
        for k in range(6):
            metrics.counter("received", 10 if k % 2 == 0 else 1,
                            topic="blocks" if k % 2 == 0 else "atxs")
    drawn: dict[str, dict[str, list[tuple[float, float]]]] = {}

    def line_chart(series: dict[str, list[tuple[float, float]]], **kw: object) -> str:
        drawn[str(kw["y_label"])] = series
        return ""

    monkeypatch.setattr(_charts._svg, "line_chart", line_chart)
    render_html(run_dir)
    lines = drawn["received (total)"]
    assert {k: [v for _, v in s] for k, s in lines.items()} == {
        "single/0 topic=blocks": [10, 20, 30], "single/0 topic=atxs": [1, 2, 3]}


def test_metrics_beyond_the_charts_drawn_are_named_not_dropped_silently(
    run_factory: Callable[..., Path],
) -> None:
    """Only the first 12 metrics by name get a chart: the others were left out unsaid."""
    from harness.observe import Metrics

    run_dir = run_factory(instances=2, change_at=None)
    with Metrics(run_dir / "single/0/metrics.jsonl") as metrics:
        for k in range(15):
            metrics.gauge(f"zz_{k:02d}", k)
    page = render_html(run_dir)
    names = sorted({m.group(1) for m in re.finditer(r"<h3>(\w+) <span class='tag'>", page)})
    assert len(names) == 12
    assert "12 of the " in page and "SDK metrics are drawn, in name order; not drawn: " in page
    assert "zz_14." in page


def test_topology_of_a_large_network_is_drawn_compact() -> None:
    """Above 40 hosts every host is still a dot (coloured by outcome, named by its tooltip)
    and shaped directions are plain lines, at most TOPOLOGY_MAX_EDGES of them."""
    hosts = [
        (f"g/{i}", f"198.18.0.{i + 1}", "#e03131" if i == 7 else "#2b8a3e") for i in range(200)
    ]
    edges = [
        (f"g/{i}", f"g/{j}", "drop", "#e03131") for i in range(0, 100) for j in range(100, 105)
    ]
    svg = _svg.topology(hosts, edges)
    titles = re.findall(r'<circle [^>]*fill="(#\w+)"[^>]*><title>(g/\d+) ', svg)
    assert len(titles) == 200 and ("#e03131", "g/7") in titles
    assert len(re.findall(r"<path d=\"M[^\"]* Q", svg)) == _svg.TOPOLOGY_MAX_EDGES < len(edges)
    assert "g/3</text>" not in svg and "drop</text>" not in svg  # no text to overlap
    small = _svg.topology(hosts[:5], [("g/0", "g/3", "drop", "#e03131")])
    assert "g/3</text>" in small and "drop</text>" in small and 'marker-end="url(#arr)"' in small


def test_a_strip_of_many_values_draws_its_tail_in_few_elements() -> None:
    """10,000 samples with a slow tail: the tail's dots are there (the chart once drew only
    the 400 smallest), each position is one titled group counting its values, and the row
    costs a bounded number of elements, not one titled circle per sample."""
    fast = [50.0 + (i % 100) / 100 for i in range(9_990)]
    slow = [200.0 + i for i in range(10)]
    svg = _svg.box_strip({"a→b": fast + slow}, x_label="ms")
    titles = re.findall(r'<g class="pt"[^>]*><title>([^<]*)</title>', svg)
    counted = [int(t.split()[0]) if "values" in t else 1 for t in titles]
    assert sum(counted) == 10_000
    assert any(t == "209 ms" or t.endswith(" to 209 ms") for t in titles)  # the slowest
    assert any(t.endswith("to 50.99 ms") for t in titles)
    circles = svg.count("<circle")
    assert len(titles) <= circles <= len(titles) + _svg.STRIP_DOTS
    assert circles < 500


def test_report_draws_the_topology_of_a_60_instance_run(run_factory: Callable[..., Path]) -> None:
    html = write_report(run_factory(instances=60, messages=2, log_lines=2)).read_text()
    section = html[html.index('<section id="network">') :]
    assert section.count("<title>single/") >= 60 and "too many" not in section


def test_a_live_runs_junit_skips_the_instances_without_an_outcome_yet(
    run_factory: Callable[..., Path],
) -> None:
    """`harness report` while a run went on wrote every instance as a failure ("no outcome
    recorded"), which a CI reading junit.xml took for a failed run."""
    run_dir = run_factory(ended=False)
    write_report(run_dir)
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "0", "4")
    assert all(c.find("skipped") is not None and c.find("failure") is None
               for c in suite.findall("testcase"))
    orphan(run_dir, None)  # its supervisor died: now no outcome is a failure
    record = json.loads((run_dir / "run.json").read_text())
    record.update(outcome="aborted", ended=record["started"] + 5)
    (run_dir / "run.json").write_text(json.dumps(record))
    write_report(run_dir)
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("skipped")) == ("4", "0")


def test_a_live_runs_report_draws_its_running_instances_up_to_now_and_no_failures(
    run_factory: Callable[..., Path],
) -> None:
    """`harness report` 6 s into a run drew its running instances' bars up to 1 s (the
    timeline's least length) and headed the page with an empty Failures section."""
    run_dir = run_factory(ended=False, change_at=None)
    record = json.loads((run_dir / "run.json").read_text())
    record.update(outcome="running")
    (run_dir / "run.json").write_text(json.dumps(record))
    events = (run_dir / "events.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "events.jsonl").write_text(  # none has exited yet
        "".join(e for e in events if '"exited"' not in e))
    page = render_html(run_dir)
    assert 'id="failures"' not in page
    since = time.time() - json.loads((run_dir / "run.json").read_text())["started"]
    ends = [float(e) for e in re.findall(r"<title>single/\d+: [\d.]+ to ([\d.]+) s", page)]
    assert len(ends) == 4 and all(abs(e - since) < 60 for e in ends), (ends, since)


def test_harness_report_of_a_run_whose_supervisor_died_marks_it_aborted(
    run_factory: Callable[..., Path], tmp_path: Path,
) -> None:
    """A run whose supervisor was SIGKILLed (the OOM killer) read "running" to `harness
    report`, and its junit.xml skipped every instance with no failure: a CI step that made
    the report after the run showed it green. `harness show` marks such a run aborted."""
    run_dir = run_factory(ended=False)
    orphan(run_dir)
    assert main(["report", str(run_dir)]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["outcome"] == "aborted"
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("skipped") == "0"
    assert suite.get("errors") == "1"  # its instances passed (events.jsonl): the run itself


@pytest.mark.parametrize(("outcome", "element"), [("failed", "failure"), ("error", "error"),
                                                  ("interrupted", "error")])
def test_junit_shows_a_run_that_failed_with_every_instance_passed(
    run_factory: Callable[..., Path], outcome: str, element: str,
) -> None:
    """A fault never played failed the run (exit 1), and junit.xml had failures="0"
    errors="0": CI showed it green. So did a run interrupted (exit 130) once every instance
    had passed, in its tear-down."""
    run_dir = run_factory()
    record = json.loads((run_dir / "run.json").read_text())
    record.update(outcome=outcome, exit_code=1,
                  reason="fault 0 could not be played: never played\x1b[31m")
    (run_dir / "run.json").write_text(json.dumps(record))
    write_report(run_dir)
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
        "5", str(int(element == "failure")), str(int(element == "error")))
    (run_case,) = [c for c in suite.findall("testcase") if c.get("name") == "run"]
    found = run_case.find(element)
    assert found is not None and found.get("message") == (
        "fault 0 could not be played: never played\\x1b[31m")


def test_junit_stays_xml_whatever_an_instance_said(run_factory: Callable[..., Path]) -> None:
    """A reason holding a terminal escape or a NUL made junit.xml no XML at all ("not
    well-formed (invalid token)")."""
    run_dir = run_factory(failed=(2,))
    record = json.loads((run_dir / "run.json").read_text())
    record["instances"][2]["reason"] = "\x1b[31mred\x1b[0m \x00 end"
    record["instances"][2]["exit_code"] = None
    (run_dir / "run.json").write_text(json.dumps(record))
    write_report(run_dir)
    fail = ET.parse(run_dir / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert fail is not None and fail.get("message") == "\\x1b[31mred\\x1b[0m \\x00 end"
    assert fail.text is not None and "exit code" not in fail.text  # not "exit code None"


def test_a_report_reads_the_run_only_once_no_other_writer_holds_it(
    run_factory: Callable[..., Path],
) -> None:
    """`harness report` of a live run that read it before its end and wrote after the
    supervisor's final report left the live report (summary.json "running") as the last."""
    import threading
    import time

    from harness.observe._report import report_lock

    run_dir = run_factory(ended=False)
    done = threading.Event()
    with report_lock(run_dir):  # another writer is at work
        writer = threading.Thread(target=lambda: (write_report(run_dir), done.set()))
        writer.start()
        time.sleep(0.3)
        assert not done.is_set() and not (run_dir / "summary.json").exists()
        record = json.loads((run_dir / "run.json").read_text())  # the run ends meanwhile
        record.update(outcome="passed", ended=record["started"] + 12, exit_code=0)
        (run_dir / "run.json").write_text(json.dumps(record))
    writer.join(timeout=60)
    assert json.loads((run_dir / "summary.json").read_text())["outcome"] == "passed"


def test_long_reasons_with_escapes_stay_short_single_lines_in_the_report(
    run_factory: Callable[..., Path],
) -> None:
    """Reasons of 200,000 characters over many lines, in the header and for each of the
    instances, made a 19 MB page whose cards were pushed off the first screen."""
    run_dir = run_factory(failed=(1, 2))
    record = json.loads((run_dir / "run.json").read_text())
    long = "boom\x1b[31m\n" * 20_000
    record["reason"] = long
    for i in (1, 2):
        record["instances"][i]["reason"] = long
    (run_dir / "run.json").write_text(json.dumps(record))
    html = render_html(run_dir)
    assert len(html) < 200_000 and "\x1b" not in html
    assert "boom\\x1b[31m\\nboom" in html


def test_a_right_to_left_override_in_a_reason_is_shown_escaped(
    run_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str],
) -> None:
    """U+202E in a failure turned the rest of its line around, in the report and on the
    terminal: "failed: \u202edessap" read as "failed: passed"."""
    run_dir = run_factory(failed=(1,))
    record = json.loads((run_dir / "run.json").read_text())
    record["instances"][1]["reason"] = "failed: \u202edessap\u202c"
    (run_dir / "run.json").write_text(json.dumps(record))
    html = render_html(run_dir)
    assert "failed: \\u202edessap\\u202c" in html
    assert main(["show", str(run_dir)]) == 0
    assert "failed: \\u202edessap" in capsys.readouterr().out


def test_show_gives_a_failure_s_exit_code_only_when_it_has_one(
    run_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str],
) -> None:
    """An instance the run never started read "not started (interrupted) (exit code None)"."""
    run_dir = run_factory(failed=(1, 2))
    record = json.loads((run_dir / "run.json").read_text())
    record["instances"][1].update(reason="not started (interrupted)", exit_code=None)
    record["instances"][2].update(reason="failed: boom", exit_code=7)
    (run_dir / "run.json").write_text(json.dumps(record))
    assert main(["show", str(run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  single/1: not started (interrupted)" in lines
    assert "  single/2: failed: boom (exit code 7)" in lines


def test_an_instance_that_never_started_has_no_bar_on_the_timeline(
    run_factory: Callable[..., Path],
) -> None:
    """One the run stopped before it started (no start, no exit) was drawn as a bar over
    the whole run: "single/3: 0.00 to 12.00 s"."""
    run_dir = run_factory(change_at=None)
    record = json.loads((run_dir / "run.json").read_text())
    record["instances"][3].update(started=None, ended=None, pid=None, exit_code=None,
                                  outcome="failed", reason="not started: interrupted")
    (run_dir / "run.json").write_text(json.dumps(record))
    events = (run_dir / "events.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "events.jsonl").write_text("".join(e for e in events if '"single/3"' not in e))
    html = render_html(run_dir)
    timeline = html[html.index('<section id="timeline">'):html.index('<section id="network">')]
    assert "single/3" in timeline and "<title>single/3:" not in timeline
    assert "<title>single/2: 0.12 to " in timeline


def test_a_failed_instances_long_error_log_lines_are_cut_in_the_report(
    run_factory: Callable[..., Path],
) -> None:
    """Its error-level log lines went into the Failures section whole: three records of
    900 kB made a 2.7 MB page (the reasons and the stderr tail beside them are cut)."""
    run_dir = run_factory(failed=(1,), change_at=None)
    with (run_dir / "single/1/log.jsonl").open("a") as f:
        for _ in range(3):
            f.write(json.dumps({"ts": 1795000005.0, "mono": 1005.0, "level": "error",
                                "event": "E\n" * 450_000}) + "\n")
    html = render_html(run_dir)
    assert len(html) < 300_000
    assert "error  E\\nE\\nE" in html


def test_long_errors_and_state_names_are_cut_on_the_timeline(
    run_factory: Callable[..., Path],
) -> None:
    """A failure event's error and a barrier's state name went whole into the timeline's
    tooltips: a 2 MiB error made a page of 2 MiB more."""
    run_dir = run_factory(change_at=None)
    big = "x" * (2 << 20)
    with (run_dir / "events.jsonl").open("a") as f:
        for event in ({"kind": "event", "type": "failure", "instance": "single/1",
                       "error": f"TestFailure: {big}"},
                      {"kind": "barrier", "state": big, "target": 1, "status": "released"}):
            f.write(json.dumps({"ts": 1795000009.0, "mono": 1009.0, **event}) + "\n")
    html = render_html(run_dir)
    assert len(html) < 500_000
    assert "<title>single/1 failure TestFailure: xxx" in html
