"""The one benchmark report: its figures files (the schema other benchmarks write), the
ratio to the peer, the previous report beside each figure, regressions, the README table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _figures  # noqa: E402
import report  # noqa: E402


def _write(dir: Path, name: str, items: object) -> Path:
    path = dir / "bench" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items))
    return path


def _report(dir: Path, source: str, items: list[dict[str, object]],
            since: float | None = None) -> dict[str, dict[str, Any]]:
    """Write `source`'s figures, gather a report and keep it as the next one's previous;
    its rows by name."""
    _write(dir, source, items)
    got = report.gather(dir, since, 0.1)
    (dir / "bench-report.json").write_text(json.dumps(got))
    return {f["name"]: f for f in got["figures"]}


def _sync(fan_out: float, rate: float) -> list[dict[str, object]]:
    return [
        {"name": "fan-out", "value": fan_out, "unit": "ms", "peer": None, "peer_value": None},
        {"name": "rate", "value": rate, "unit": "msgs/s", "peer": None, "peer_value": None}]


def test_a_list_of_items_in_the_agreed_schema_is_read_with_the_optional_fields() -> None:
    figs = _figures.parse([
        {"name": "a", "value": 2, "unit": "ms", "peer": "Redis", "peer_value": 4},
        {"name": "b", "value": 10, "unit": "msgs/s", "peer": None, "peer_value": None,
         "target": ">= 5", "better": "higher"},
    ])
    assert [(f.name, f.value, f.peer, f.peer_value, f.ratio) for f in figs] == [
        ("a", 2.0, "Redis", 4.0, 0.5), ("b", 10.0, None, None, None)]
    assert figs[0].lower_is_better and not figs[1].lower_is_better
    assert figs[1].target == ">= 5"


@pytest.mark.parametrize(("items", "message"), [
    ({"name": "a"}, "not a JSON list"),
    (["x"], "item 0 is not an object"),
    ([{"value": 1, "unit": "s"}], "item 0: 'name'"),
    ([{"name": "a", "value": "1", "unit": "s"}], "'value'"),
    ([{"name": "a", "value": float("nan"), "unit": "s"}], "'value'"),
    ([{"name": "a", "value": 1}], "'unit'"),
    ([{"name": "a", "value": 1, "unit": "s", "peer_value": "2"}], "'peer_value'"),
    ([{"name": "a", "value": 1, "unit": "s", "better": "more"}], "'better'"),
])
def test_a_figure_that_breaks_the_schema_is_named(items: object, message: str) -> None:
    with pytest.raises(_figures.FiguresError, match=message):
        _figures.parse(items)


def test_write_then_load_gives_the_same_figures_with_the_load_average(tmp_path: Path) -> None:
    figs = [_figures.Figure("x", 1.5, "s", "peer", 3.0, target="<= 2 s")]
    path = _figures.write("mine", figs, tmp_path)
    assert path == tmp_path / "bench" / "mine.json"
    [back] = _figures.load(path)
    assert back.load is not None
    assert (back.name, back.value, back.peer_value, back.target) == ("x", 1.5, 3.0, "<= 2 s")


def test_every_file_is_gathered_and_a_bad_one_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    _write(tmp_path, "report", [{"name": "report s", "value": 4, "unit": "s",
                                 "peer": None, "peer_value": None}])
    _write(tmp_path, "sync", [{"name": "fan-out", "value": 1, "unit": "ms",
                               "peer": "Redis", "peer_value": 2}])
    _write(tmp_path, "broken", {"not": "a list"})
    got = report.gather(tmp_path, None, 0.1)
    assert [(f["name"], f["source"], f["ratio"]) for f in got["figures"]] == [
        ("report s", "report", None), ("fan-out", "sync", 0.5)]
    assert len(got["problems"]) == 1 and "broken.json" in got["problems"][0]
    assert got["machine"]["cores"] == os.cpu_count() and len(got["machine"]["load"]) == 3


def test_the_previous_reports_figures_stand_beside_and_regressions_are_flagged(
    tmp_path: Path,
) -> None:
    def run(fan_out: float, rate: float) -> dict[str, dict[str, Any]]:
        return _report(tmp_path, "sync", _sync(fan_out, rate))

    first = run(1.0, 1000)
    assert first["fan-out"]["previous"] is None and not first["fan-out"]["regressed"]
    second = run(1.5, 1050)  # slower fan-out (lower is better), a better rate
    assert second["fan-out"]["previous"] == 1.0 and second["fan-out"]["regressed"]
    assert second["rate"]["previous"] == 1000 and not second["rate"]["regressed"]
    third = run(1.5, 800)  # the same fan-out, a lower rate (higher is better)
    assert not third["fan-out"]["regressed"] and third["rate"]["regressed"]
    md = report.markdown(report.gather(tmp_path, None, 0.1))  # compared with the third
    assert "| rate | 800 msgs/s | - | - | - | 800 msgs/s | +0% |" in md
    regressed = report.table({"figures": [third["rate"]]})
    assert "| 1,050 msgs/s | -24% **regressed** |" in regressed


def test_without_a_previous_report_the_readmes_table_is_the_previous_one(
    tmp_path: Path,
) -> None:
    """A fresh checkout has no outputs/bench-report.json: the figures the README shows
    (written there by the last report) stand beside the new ones instead."""
    _write(tmp_path, "sync", _sync(1.25, 41245))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\n{report.END}\n")
    first = report.gather(tmp_path, None, 0.1, readme)
    assert first["previous"]["written"] is None
    first["figures"][0]["stale"] = True  # its name in the table is marked; still found
    assert report.update_readme(readme, first)
    assert report.readme_report(readme)["figures"] == [
        {"name": "fan-out", "value": 1.25, "unit": "ms"},
        {"name": "rate", "value": 41245.0, "unit": "msgs/s"}]
    _write(tmp_path, "sync", _sync(2.5, 41245))
    second = report.gather(tmp_path, None, 0.1, readme)
    assert second["previous"]["written"] == first["written"]
    rows = {f["name"]: f for f in second["figures"]}
    assert rows["fan-out"]["previous"] == 1.25 and rows["fan-out"]["regressed"]
    assert rows["rate"]["previous"] == 41245 and not rows["rate"]["regressed"]
    (tmp_path / "bench-report.json").write_text(json.dumps(first | {"written": "before"}))
    assert report.gather(tmp_path, None, 0.1, readme)["previous"]["written"] == "before"
    # A previous report of one benchmark only: the others' figures come from the README.
    (tmp_path / "bench-report.json").write_text(json.dumps(
        first | {"written": "partial", "figures": [{"name": "rate", "value": 40000}]}))
    third = {f["name"]: f for f in report.gather(tmp_path, None, 0.1, readme)["figures"]}
    assert third["rate"]["previous"] == 40000 and third["fan-out"]["previous"] == 1.25
    readme.write_text("no table\n")
    assert report.readme_report(readme) == {}


def test_a_file_older_than_the_run_is_marked_as_not_measured_in_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "old", [{"name": "o", "value": 1, "unit": "s",
                                     "peer": None, "peer_value": None}])
    os.utime(path, (1000, 1000))
    [row] = report.gather(tmp_path, 2000, 0.1)["figures"]
    assert row["stale"]
    assert "not measured in this run" in report.table({"figures": [row]})


def test_the_command_writes_both_reports_and_the_readme_table(tmp_path: Path) -> None:
    _write(tmp_path, "sync", [{"name": "fan-out", "value": 1, "unit": "ms",
                               "peer": "Redis", "peer_value": 2}])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\nold table\n{report.END}\noutro\n")
    cmd = [sys.executable, str(BENCH / "report.py"), "--outputs", str(tmp_path),
           "--readme", str(readme)]
    subprocess.run(cmd, check=True, capture_output=True)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert "| fan-out | 1 ms | Redis | 2 ms | 0.50x |" in text
    data = json.loads((tmp_path / "bench-report.json").read_text())
    assert data["figures"][0]["peer_value"] == 2
    assert "| fan-out |" in (tmp_path / "bench-report.md").read_text()


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(BENCH / "report.py"), "--outputs", str(tmp_path),
                        "--readme", str(tmp_path / "nope.md")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope.md" in r.stderr


def test_the_wait_for_a_quiet_machine_reads_proc_stat_and_gives_up_after_its_patience() -> None:
    """Busy share from /proc/stat's first line (iowait counts as idle); the wait returns at
    the first quiet second, or after its patience with the machine still busy."""
    import _quiet

    stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n"
    assert _quiet.cpu_times(stat) == (850, 1000)
    assert _quiet.busy_share((850, 1000), (850 + 150, 1000 + 200)) == pytest.approx(0.25)
    assert _quiet.busy_share((5, 10), (5, 10)) == 0.0

    def machine(busy_seconds: int) -> tuple[object, object]:
        clock = {"t": 0}

        def sample() -> tuple[int, int]:  # 100 jiffies a second, all busy until busy_seconds
            t = clock["t"]
            busy = min(t, busy_seconds)
            return 100 * t - 100 * busy, 100 * t

        def sleep(s: float) -> None:
            clock["t"] += int(s)

        return sample, sleep

    sample, sleep = machine(3)
    assert _quiet.wait_quiet(0.15, 90, sample, sleep) == (True, 4.0, 0.0)  # type: ignore[arg-type]
    sample, sleep = machine(1000)
    ok, waited, share = _quiet.wait_quiet(0.15, 5, sample, sleep)  # type: ignore[arg-type]
    assert (ok, waited, share) == (False, 5.0, 1.0)


def test_a_figure_within_what_the_last_reports_saw_is_not_flagged(tmp_path: Path) -> None:
    """Worse than the previous report, but no worse than one of the last `RECENT`: this
    machine's noise, not flagged; worse than all of them: flagged. Each report keeps the
    last `RECENT` values; a figure not measured in a run adds nothing to them."""
    def run(fan_out: float, rate: float, since: float | None = None
            ) -> dict[str, dict[str, Any]]:
        return _report(tmp_path, "sync", _sync(fan_out, rate), since)

    run(2.0, 1000)
    run(1.0, 1500)
    rows = run(1.5, 1200)  # 50 % slower and 20 % fewer than the previous: as seen before
    assert rows["fan-out"]["change"] == 0.5 and not rows["fan-out"]["regressed"]
    assert not rows["rate"]["regressed"]
    assert rows["fan-out"]["recent"] == [2.0, 1.0, 1.5]
    rows = run(2.2, 900)  # beyond everything the last reports saw
    assert rows["fan-out"]["regressed"] and rows["rate"]["regressed"]
    for _ in range(report.RECENT):
        rows = run(1.0, 1500)
    assert rows["fan-out"]["recent"] == [1.0] * report.RECENT  # 2.0 and 2.2 have left
    rows = run(1.5, 1500)
    assert rows["fan-out"]["regressed"]
    rows = run(1.5, 1500, since=time.time() + 60)  # files older than the run: stale
    assert rows["fan-out"]["stale"] and rows["fan-out"]["recent"] == [1.0] * 4 + [1.5]


def test_a_figure_worse_by_no_more_than_the_machine_got_slower_is_not_flagged(
    tmp_path: Path,
) -> None:
    """Each figures file carries how long the calibration workload took when written: a
    figure 30 % worse while the machine ran 36 % slower is the machine's, and said so."""
    def run(value: float, speed: float) -> dict[str, Any]:
        return _report(tmp_path, "sim", [{"name": "sim wall", "value": value, "unit": "s",
                                          "peer": None, "peer_value": None,
                                          "speed": speed}])["sim wall"]

    run(10.0, 0.14)
    slower = run(13.0, 0.19)
    assert slower["machine"] == pytest.approx(0.19 / 0.14 - 1) and not slower["regressed"]
    assert "| +30% (machine slower by 36%) |" in report.table({"figures": [slower]})
    worse = run(16.0, 0.19)  # 23 % worse again on a machine as fast as last time
    assert worse["machine"] == pytest.approx(0.0) and worse["regressed"]
    assert "| +23% **regressed** |" in report.table({"figures": [worse]})
    [item] = json.loads((tmp_path / "bench" / "sim.json").read_text())
    assert _figures.parse([item])[0].speed == 0.19


def test_writing_figures_measures_the_machine_s_speed(tmp_path: Path) -> None:
    [back] = _figures.load(_figures.write("mine", [_figures.Figure("x", 1.0, "s")], tmp_path))
    assert back.speed is not None and 0 < back.speed < 60
    with pytest.raises(_figures.FiguresError, match="'speed'"):
        _figures.parse([{"name": "a", "value": 1, "unit": "s", "speed": "fast"}])


def test_the_machine_s_own_figures_show_their_change_but_are_never_flagged(
    tmp_path: Path,
) -> None:
    def run(value: float) -> dict[str, Any]:
        return _report(tmp_path, "calibrate", [{"name": "calibration", "value": value,
                                                "unit": "s", "peer": None, "peer_value": None,
                                                "better": "none"}])["calibration"]

    run(0.14)
    slower = run(0.27)
    assert slower["change"] == pytest.approx(0.27 / 0.14 - 1) and not slower["regressed"]
    assert "| +93% |" in report.table({"figures": [slower]})


def test_a_figure_of_the_previous_report_not_measured_now_is_a_problem_in_the_readme_too(
    tmp_path: Path,
) -> None:
    """A benchmark whose peer or tool is missing (no Chromium on a fresh machine) leaves its
    figure out: the report says so instead of the row just vanishing from the table."""
    _write(tmp_path, "sync", _sync(1.0, 1000))
    _report(tmp_path, "report", [{"name": "opens in Chromium", "value": 1.0, "unit": "s",
                                  "peer": None, "peer_value": None}])
    (tmp_path / "bench" / "report.json").unlink()
    got = report.gather(tmp_path, None, 0.1)
    assert got["problems"] == [
        "1 figure(s) of the previous report not measured this time: 'opens in Chromium'"]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\n{report.END}\n")
    assert report.update_readme(readme, got)
    text = readme.read_text()
    assert "- 1 figure(s) of the previous report not measured this time" in text
    assert [f["name"] for f in report.readme_report(readme)["figures"]] == ["fan-out", "rate"]


def test_a_regression_stays_flagged_while_its_figure_is_not_measured_again(
    tmp_path: Path,
) -> None:
    """`nox -s bench -- benchmarks/bench_b.py` keeps a's file (marked not measured): a's
    row stays compared with what the report that measured it compared it with, instead of
    with itself (+0%, its regression gone from the table)."""
    _report(tmp_path, "a", [{"name": "a", "value": 1.0, "unit": "s", "peer": None,
                             "peer_value": None}])
    _report(tmp_path, "b", [{"name": "b", "value": 1.0, "unit": "s", "peer": None,
                             "peer_value": None}])
    _write(tmp_path, "a", [{"name": "a", "value": 2.0, "unit": "s", "peer": None,
                            "peer_value": None}])
    os.utime(tmp_path / "bench" / "a.json", (1000, 1000))  # measured before the next run
    flagged = report.gather(tmp_path, None, 0.1)
    assert flagged["figures"][0]["regressed"]
    (tmp_path / "bench-report.json").write_text(json.dumps(flagged))
    rows = _report(tmp_path, "b", [{"name": "b", "value": 1.0, "unit": "s", "peer": None,
                                    "peer_value": None}], since=2000)
    assert rows["a"]["stale"] and not rows["b"]["stale"]
    assert (rows["a"]["previous"], rows["a"]["change"], rows["a"]["regressed"]) == (1.0, 1.0,
                                                                                   True)
    assert "| +100% **regressed** |" in report.table({"figures": [rows["a"]]})


def test_a_figure_whose_unit_changed_is_not_compared_with_the_previous_one(
    tmp_path: Path,
) -> None:
    """1.2 s then 1200 ms is the same time, not a 99,900 % regression ("previous 1.2 ms")."""
    def run(value: float, unit: str) -> dict[str, Any]:
        _write(tmp_path, "t", [{"name": "t", "value": value, "unit": unit, "peer": None,
                                "peer_value": None}])
        return report.gather(tmp_path, None, 0.1)

    (tmp_path / "bench-report.json").write_text(json.dumps(run(1.2, "s")))
    got = run(1200, "ms")
    [row] = got["figures"]
    assert (row["previous"], row["change"], row["regressed"]) == (None, None, False)
    assert got["problems"] == ["'t': unit 'ms', the previous report's 's'; not compared"]
    readme = tmp_path / "README.md"  # the README's table, standing in for a lost report
    readme.write_text(f"{report.BEGIN}\n{report.END}\n")
    report.update_readme(readme, report.gather(tmp_path, None, 0.1) | {"problems": []})
    (tmp_path / "bench-report.json").unlink()
    _write(tmp_path, "t", [{"name": "t", "value": 1.3, "unit": "s", "peer": None,
                            "peer_value": None}])
    got = report.gather(tmp_path, None, 0.1, readme)
    assert got["figures"][0]["previous"] is None and "unit 's'" in got["problems"][0]


@pytest.mark.parametrize("previous", [
    '{"figures": [1', '{"figures": 5}', '[1, 2]',
    '{"figures": [{"name": ["a"], "value": 1}, 7]}',
    '{"figures": [{"name": "a", "value": 1, "recent": 3, "unit": "s"}]}',
])
def test_a_damaged_previous_report_is_a_problem_not_a_crash(tmp_path: Path,
                                                            previous: str) -> None:
    (tmp_path / "bench-report.json").write_text(previous)
    _write(tmp_path, "a", [{"name": "a", "value": 2, "unit": "s", "peer": None,
                            "peer_value": None}])
    got = report.gather(tmp_path, None, 0.1)
    assert [f["name"] for f in got["figures"]] == ["a"]
    if previous.startswith('{"figures": [{'):  # readable; its bad figures left out
        assert got["problems"] == []
    else:
        assert len(got["problems"]) == 1 and "previous report is unreadable" in got["problems"][0]


def test_a_previous_figure_of_zero_stands_beside_the_new_one(tmp_path: Path) -> None:
    """The RTT over a configured 100 ms read 0 ms: the next report shows "previous 0 ms"
    (not "-", as if there were none) and keeps it among the recent values."""
    def run(value: float) -> dict[str, Any]:
        return _report(tmp_path, "shaping", [{"name": "rtt over", "value": value,
                                              "unit": "ms", "peer": None,
                                              "peer_value": None}])["rtt over"]

    run(0.0)
    row = run(0.2)
    assert (row["previous"], row["change"], row["regressed"]) == (0.0, None, False)
    assert row["recent"] == [0.0, 0.2]
    assert "| rtt over | 0.2 ms | - | - | - | 0 ms | - |" in report.table({"figures": [row]})


@pytest.mark.parametrize(("value", "unit", "peer_value", "target", "met"), [
    (1.55, "ms", None, "<= 1 ms", False),
    (0.9, "ms", None, "<= 1 ms", True),
    (3.28, "x", None, ">= 20x", False),
    (1.83, "x", None, "< 4x", True),
    (83688, "msgs/s", None, ">= 20,000 msgs/s", True),
    (0.365, "s", 5.05, "<= 0.25x Mininet's", True),
    (2.0, "s", 5.0, "<= 0.25x Mininet's", False),
    (2.0, "s", None, "<= 0.25x Mininet's", None),  # no peer: no ratio to judge
    (1500, "ms", None, "<= 1 s", False),
    (2.0, "s", None, "fast enough", None),
    (2.0, "s", None, None, None),
])
def test_a_target_not_met_is_marked_in_the_table(
    tmp_path: Path, value: float, unit: str, peer_value: float | None, target: str | None,
    met: bool | None,
) -> None:
    _write(tmp_path, "t", [{"name": "t", "value": value, "unit": unit, "peer": "p",
                            "peer_value": peer_value, "target": target}])
    got = report.gather(tmp_path, None, 0.1)
    assert got["figures"][0]["target_met"] is met
    marked = "**not met** |" in report.table(got)
    assert marked is (met is False)
    assert f"{int(met is False)} target(s) not met" in report.markdown(got)


def test_a_peer_missing_this_time_is_a_problem(tmp_path: Path) -> None:
    """No Mininet (or redis-server) on this machine: the figure stays, without its peer,
    and the report says which peer's figure is missing instead of just showing '-'."""
    def run(peer_value: float | None) -> dict[str, Any]:
        _write(tmp_path, "netem", [{"name": "build", "value": 0.4, "unit": "s",
                                    "peer": "Mininet" if peer_value else None,
                                    "peer_value": peer_value,
                                    "target": "<= 0.25x Mininet's"}])
        got = report.gather(tmp_path, None, 0.1)
        (tmp_path / "bench-report.json").write_text(json.dumps(got))
        return got

    assert run(5.0)["problems"] == []
    assert run(None)["problems"] == [
        "1 figure(s) without their peer's this time (the previous report's: Mininet): "
        "'build'"]


def test_no_figures_at_all_leave_the_previous_report_and_the_readme_alone(
    tmp_path: Path,
) -> None:
    """A wrong --outputs (or every file broken) is bad input: an empty report would have
    replaced the README's table with an empty one."""
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\n| a | 1 ms |\n{report.END}\n")
    before = readme.read_text()
    (tmp_path / "bench-report.json").write_text('{"figures": []}')
    _write(tmp_path, "broken", {"not": "a list"})
    r = subprocess.run([sys.executable, str(BENCH / "report.py"), "--outputs", str(tmp_path),
                        "--readme", str(readme)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "broken.json" in r.stderr
    assert readme.read_text() == before
    assert (tmp_path / "bench-report.json").read_text() == '{"figures": []}'
    assert not (tmp_path / "bench-report.md").exists()


def test_a_figure_named_twice_is_taken_once_and_the_problem_names_where(
    tmp_path: Path,
) -> None:
    item = {"name": "x", "value": 1, "unit": "s", "peer": None, "peer_value": None}
    _write(tmp_path, "a", [item, item | {"value": 2}])
    _write(tmp_path, "b", [item | {"value": 3}])
    got = report.gather(tmp_path, None, 0.1)
    assert [f["value"] for f in got["figures"]] == [1]
    assert got["problems"] == ["a.json: figure 'x' also in a.json; this one left out",
                               "b.json: figure 'x' also in a.json; this one left out"]


def test_the_readme_s_markers_count_only_on_lines_of_their_own(tmp_path: Path) -> None:
    """Prose that quotes the markers (as docs/benchmarks.md does) is not the block: the
    text between the quote and the block stays."""
    readme = tmp_path / "README.md"
    prose = (f"The table between `{report.BEGIN}` and `{report.END}` is written by "
             "benchmarks/report.py.\n\nMore prose.\n")
    readme.write_text(f"{prose}{report.BEGIN}\nold\n{report.END}\noutro\n")
    _write(tmp_path, "sync", _sync(1.0, 1000))
    assert report.readme_report(readme)["figures"] == []
    assert report.update_readme(readme, report.gather(tmp_path, None, 0.1))
    text = readme.read_text()
    assert text.startswith(prose + report.BEGIN + "\n") and text.endswith(report.END + "\noutro\n")
    assert "old" not in text and "| fan-out | 1 ms |" in text
    readme.write_text(f"{prose}no block\n")
    assert not report.update_readme(readme, report.gather(tmp_path, None, 0.1))
    assert readme.read_text() == f"{prose}no block\n"


def test_a_ratio_far_below_one_is_not_shown_as_zero(tmp_path: Path) -> None:
    _write(tmp_path, "netem", [
        {"name": "build", "value": 0.1, "unit": "s", "peer": "Mininet", "peer_value": 50},
        {"name": "stop", "value": 1, "unit": "s", "peer": "Mininet", "peer_value": 2}])
    text = report.table(report.gather(tmp_path, None, 0.1))
    assert "| 0.002x |" in text and "| 0.50x |" in text


def test_a_run_of_some_benchmarks_keeps_the_others_figures_with_carry(tmp_path: Path) -> None:
    """A fresh checkout, one benchmark run (`nox -s bench -- benchmarks/X.py`): the README's
    other rows stay, as they were shown and marked not measured; without --carry they go."""
    _write(tmp_path, "sync", _sync(1.25, 41245))
    _write(tmp_path, "sim", [{"name": "speed-up", "value": 3.2, "unit": "x", "peer": None,
                              "peer_value": None, "target": ">= 20x", "better": "higher"},
                             {"name": "build", "value": 0.5, "unit": "s", "peer": "Mininet",
                              "peer_value": 5.0, "target": "<= 0.25x Mininet's"}])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\n{report.END}\n")
    assert report.update_readme(readme, report.gather(tmp_path, None, 0.1, readme))
    (tmp_path / "bench" / "sim.json").unlink()  # what a fresh checkout's one run leaves
    _write(tmp_path, "sync", _sync(2.5, 41245))
    cut = report.gather(tmp_path, None, 0.1, readme)
    assert [f["name"] for f in cut["figures"]] == ["fan-out", "rate"]
    kept = report.gather(tmp_path, None, 0.1, readme, carry=True)
    rows = {f["name"]: f for f in kept["figures"]}
    assert list(rows) == ["fan-out", "rate", "speed-up", "build"]
    assert rows["fan-out"]["previous"] == 1.25 and not rows["fan-out"]["stale"]
    speed, build = rows["speed-up"], rows["build"]
    assert (speed["value"], speed["stale"], speed["target_met"]) == (3.2, True, False)
    assert (build["peer"], build["peer_value"], build["ratio"]) == ("Mininet", 5.0, 0.1)
    assert build["target_met"] is True
    assert "kept from it" in kept["problems"][-1]
    assert report.update_readme(readme, kept)
    table = readme.read_text()
    assert f"| speed-up{report.STALE} | 3.2 x |" in table and "**not met**" in table
    assert f"| build{report.STALE} | 0.5 s | Mininet | 5 s | 0.10x |" in table
    # And from a previous bench-report.json, which keeps each figure's history too.
    (tmp_path / "bench-report.json").write_text(json.dumps(kept))
    again = {f["name"]: f for f in report.gather(tmp_path, None, 0.1, readme,
                                                 carry=True)["figures"]}
    assert again["build"]["ratio"] == 0.1 and again["build"]["stale"]
