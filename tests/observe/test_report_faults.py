"""Faults in the report (timeline markers and spans, the Faults section, the instances'
notes), in summary.json and in `harness show`, from a fixture run's faults.jsonl."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from harness._cli import main
from harness.observe import render_html, summary
from harness.observe._report._faults import FAULT_COLOURS


def _section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">.*?</section>', page, re.S)
    assert match, f"no {sid} section"
    return match.group(0)


def test_the_timeline_marks_each_fault_and_shades_it_until_undone(
    run_factory: Callable[..., Path],
) -> None:
    timeline = _section(render_html(run_factory(faults=True)), "timeline")
    for label, kind in (("fault 0: kill single/1", "process"),
                        ("fault 1: partition single/0", "network"),
                        ("live 0 (cli): skew single/2", "time"),
                        ("fault 2: limit failed", "failed")):
        assert re.search(rf'stroke="{FAULT_COLOURS[kind]}"[^>]*><title>{re.escape(label)} at ',
                         timeline), f"no {kind} marker {label!r}"
    spans = re.findall(r'<rect class="span" x="([\d.]+)" y="\d+" width="([\d.]+)"[^>]*'
                       r'fill="(#\w+)"[^>]*><title>([^<]*)</title>', timeline)
    by_label = {tip.split(" from ")[0]: (float(w), colour) for _, w, colour, tip in spans}
    # kill 3 -> 4 s (undone), partition 5 -> 7 s (undone), the live skew from 8 s to the
    # run's end at 12 s (never undone); the failed limit never was in force
    assert set(by_label) == {"fault 0: kill", "fault 1: partition", "live 0 (cli): skew"}
    assert by_label["fault 0: kill"][1] == FAULT_COLOURS["process"]
    assert by_label["fault 1: partition"][1] == FAULT_COLOURS["network"]
    assert by_label["live 0 (cli): skew"][1] == FAULT_COLOURS["time"]
    kill = by_label["fault 0: kill"][0]
    assert by_label["fault 1: partition"][0] == pytest.approx(2 * kill, rel=0.02)
    assert by_label["live 0 (cli): skew"][0] == pytest.approx(4 * kill, rel=0.02)


def test_a_fault_that_found_none_of_its_instances_running_is_no_span_and_not_undone() -> None:
    """It was shaded and said "undone at ..." as if it had held its instance down."""
    from harness.observe._report._faults import FaultRow, fault_line, fault_marks

    rows = [FaultRow("live 1", "kill", applied=3.27, undone=5.69, chosen=("single/3",),
                     missed=("single/3",))]
    markers, spans = fault_marks(rows, end=10.0)
    assert spans == [] and [m[2] for m in markers] == ["live 1: kill missed single/3"]
    line = fault_line(rows[0].to_json())
    assert "undone" not in line and line.endswith("; missed (not running): single/3")


def test_a_long_marker_label_ends_in_an_ellipsis_at_a_word() -> None:
    """Cut at 28 characters, "live 0 (harness fault pid 3893)" read "... pid 38"."""
    from harness.observe._svg import _LABEL_CHARS, _cut

    assert _cut("fault 0: kill single/1") == "fault 0: kill single/1"
    cut = _cut("live 0 (harness fault pid 3893): kill single/1")
    assert cut == "live 0 (harness fault pid…" and len(cut) <= _LABEL_CHARS


def test_a_cut_without_a_duration_is_shaded_until_the_heal() -> None:
    from harness.observe._report._faults import FaultRow, fault_marks

    rows = [FaultRow("fault 0", "partition", applied=1.0, chosen=("a/0",)),
            FaultRow("fault 1", "heal", applied=3.0),
            FaultRow("fault 2", "pause", applied=2.0, chosen=("a/1",)),
            FaultRow("fault 3", "resume", applied=2.5, chosen=("a/0",))]
    markers, spans = fault_marks(rows, end=10.0)
    assert len(markers) == 4
    # the resume is of another instance: the pause lasts to the end
    assert [(a, b) for a, b, _, _ in spans] == [(1.0, 3.0), (2.0, 10.0)]


def test_the_faults_section_lists_each_fault(run_factory: Callable[..., Path]) -> None:
    section = _section(render_html(run_factory(faults=True)), "faults")
    rows = re.findall(r"<tr class='(\w*)'>(.*?)</tr>", section)
    cells = [(cls, re.sub(r"(<[^>]+>)+", "|", row)) for cls, row in rows]
    text = [c for _, c in cells]
    assert [cls for cls, _ in cells] == ["", "", "", "fail", ""]
    assert "3.00 s|fault 0|process| kill|single/1|4.00 s|" in text[0]
    assert "5.00 s|fault 1|network| partition|single/0|7.00 s|" in text[1]
    assert "8.00 s|live 0 (cli)|time| skew|single/2|—|" in text[2]
    assert "9.00 s (failed)|fault 2|" in text[3]
    assert "fault 2 could not be played: no cgroup for single/3" in text[3]
    assert "fault 3|process| pause|" in text[4] and "not played" in text[4]


def test_a_run_without_faults_has_no_faults_section(run_factory: Callable[..., Path]) -> None:
    page = render_html(run_factory())
    assert 'id="faults"' not in page and 'href="#faults"' not in page
    assert 'class="span"' not in page


def test_the_instances_table_shows_restarts_and_notes(run_factory: Callable[..., Path]) -> None:
    table = _section(render_html(run_factory(faults=True)), "instances-sec")
    row = re.search(r"<tr[^>]*><td><b>single/1</b>.*?</tr>", table)
    assert row and '<td class="num">1</td>' in row.group(0)
    assert '<span class="sub">restarted 1 time(s) by faults</span>' in row.group(0)


def test_show_lists_the_faults_and_the_notes(
    run_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = run_factory(faults=True)
    assert [(f["fault"], f["played"]) for f in summary(run_dir)["faults"]] == [
        ("fault 0", True), ("fault 1", True), ("live 0 (cli)", True),
        ("fault 2", False),  # refused: it said played
        ("fault 3", False)]
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "  single/1: restarted 1 time(s) by faults\n" in out
    assert "     3.00 s  fault 0 (kill) on single/1, undone at 4.00 s\n" in out
    assert ("     9.00 s  fault 2 (limit); FAILED: fault 2 could not be played: "
            "no cgroup for single/3\n") in out
    assert "fault 3 (pause): not played (the run ended before it was applied)\n" in out


def test_the_timeline_draws_each_life_of_a_restarted_instance(
    run_factory: Callable[..., Path],
) -> None:
    """Only its last life was drawn: killed at 3 s and started again at 4 s, single/1's
    bar ran from 4 s, while the table said it ran for the whole run."""
    from tests.observe._fixture import M0, T0

    run_dir = run_factory(faults=True)
    with (run_dir / "events.jsonl").open("a") as f:
        for sec, status in ((3.0, "exited"), (4.0, "started")):
            f.write(json.dumps({"ts": T0 + sec, "mono": M0 + sec, "kind": "instance",
                                "instance": "single/1", "status": status}) + "\n")
    timeline = _section(render_html(run_dir), "timeline")
    lives = re.findall(r"<title>single/1: ([\d.]+) to ([\d.]+) s, ([^<]*)<", timeline)
    assert [float(a) for a, _, _ in lives] == [0.11, 4.0] and float(lives[0][1]) == 3.0
    # the life a fault ended is not drawn as passed (its colour and words were the last's)
    assert [said for _, _, said in lives] == ["ended by a fault, started again", "passed"]


def test_a_timeline_too_long_to_draw_says_so_and_draws_the_failed_first(
    run_factory: Callable[..., Path],
) -> None:
    """70 instances: 60 bars, no word of the other ten, and single/65, which failed, had
    none."""
    timeline = _section(render_html(run_factory(instances=70, failed=(65,))), "timeline")
    assert "60 of 70 instances are drawn, the failed ones first" in timeline
    assert "<title>single/65: " in timeline and "<title>single/69: " not in timeline
