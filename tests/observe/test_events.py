"""`harness events`' reading: events.jsonl and network.jsonl merged in time order, followed
until the run ends, one line each for people."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.observe import follow_events, format_event, run_events


def _write(path: Path, *records: dict[str, Any]) -> None:
    with path.open("ab") as f:
        for rec in records:
            f.write(orjson.dumps(rec) + b"\n")


def _run(tmp_path: Path) -> Path:
    _write(tmp_path / "events.jsonl",
           {"ts": 100.0, "mono": 1.0, "kind": "instance", "instance": "g/0", "status": "started"},
           {"ts": 100.5, "mono": 1.5, "kind": "network", "event": "backend-failed"},
           {"ts": 100.7, "mono": 1.7, "kind": "network", "event": "backend-note"},
           {"ts": 102.0, "mono": 3.0, "kind": "fault", "fault": "live 0 (me)", "step": "applied",
            "action": "isolate", "chosen": ["g/0"], "asked_by": "me"})  # fmt: skip
    _write(tmp_path / "network.jsonl",
           {"ts": 101.0, "mono": 2.0, "op": "configure", "asked_by": "g/0", "asked": {},
            "applied": {}},
           {"ts": 101.5, "mono": 1.5, "op": "backend-failed", "asked_by": "netem"},
           {"ts": 101.7, "mono": 1.7, "op": "backend-note", "asked_by": "netem"})  # fmt: skip
    return tmp_path


def test_the_network_changes_come_in_time_order_and_once(tmp_path: Path) -> None:
    events = list(run_events(_run(tmp_path)))
    assert [(e["kind"], e.get("op") or e.get("event") or e.get("status") or e.get("step"))
            for e in events] == [
        ("instance", "started"), ("network", "backend-failed"), ("network", "backend-note"),
        ("network", "configure"), ("fault", "applied")]  # fmt: skip


def test_following_reads_until_the_run_ends_and_once_more_after(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    over = [False, False, True]
    polls: list[float] = []

    def sleep(s: float) -> None:
        polls.append(s)
        _write(run_dir / "events.jsonl",
               {"ts": 103.0 + len(polls), "mono": 4.0 + len(polls), "kind": "phase",
                "name": f"poll {len(polls)}"})  # fmt: skip

    events = list(follow_events(run_dir, ended=lambda _: over.pop(0), sleep=sleep))
    assert [e.get("name") for e in events if e["kind"] == "phase"] == ["poll 1", "poll 2"]
    assert len(events) == 5 + 2 and len(polls) == 2


def test_following_a_run_whose_directory_is_removed_ends_with_that_error(tmp_path: Path) -> None:
    """It polled for ever: a removed run never records its end."""
    (tmp_path / "run").mkdir()
    run_dir = _run(tmp_path / "run")
    seen: list[dict[str, Any]] = []
    with pytest.raises(FileNotFoundError, match="directory was removed") as caught:
        for event in follow_events(run_dir, ended=lambda _: False,
                                   sleep=lambda _: shutil.rmtree(run_dir)):
            seen.append(event)
    assert caught.value.filename == str(run_dir)
    assert len(seen) == 5  # what was there before it went


def test_a_line_for_people_leads_with_the_time_since_the_start_and_the_essentials() -> None:
    line = format_event({"ts": 102.25, "mono": 3.0, "kind": "fault", "fault": "live 0 (me)",
                         "step": "applied", "action": "kill", "chosen": ["g/0", "g/1"],
                         "duration": 1.0, "asked_by": "me"}, start=100.0)  # fmt: skip
    assert line == ("    +2.250s fault        -              live 0 (me) applied kill g/0,g/1 "
                    "duration=1.0 asked_by=me")
    line = format_event({"ts": 100.5, "kind": "event", "instance": "g/0", "type": "failure",
                         "error": "boom"}, start=100.0)
    assert line.split() == ["+0.500s", "event", "g/0", "failure", "boom"]


def test_an_event_is_one_line_whatever_an_instance_put_in_it() -> None:
    """A state's newline made two lines of one event, and its escapes reached the
    terminal (the run's progress lines escaped them)."""
    line = format_event({"ts": 100.5, "kind": "signal", "instance": "g/0",
                         "state": "phase\n\x1b[2Jcleared\x07"}, start=100.0)
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert "phase\\n\\x1b[2Jcleared\\x07" in line
