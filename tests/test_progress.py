"""The live progress line: printed when something changed, and now and then when nothing did."""

from __future__ import annotations

import io
from pathlib import Path

from harness._progress import Progress


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_outside_a_terminal_a_line_comes_on_change_and_on_a_heartbeat() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = Progress(3, out, interval=2.0, heartbeat=15.0, clock=clock)
    progress.started = 3
    progress.update()
    assert out.getvalue().splitlines() == ["[   0.0s] started 3/3  passed 0  failed 0"]
    clock.now += 1.0
    progress.passed = 1
    progress.update()  # changed, but within `interval` of the last line
    assert len(out.getvalue().splitlines()) == 1
    clock.now += 1.5
    progress.update()
    assert out.getvalue().splitlines()[-1] == "[   2.5s] started 3/3  passed 1  failed 0"
    for _ in range(6):  # 12 s with nothing new: silent
        clock.now += 2.0
        progress.update()
    assert len(out.getvalue().splitlines()) == 2
    clock.now += 2.0  # 14 s since the last line: the next update would be past 15 s
    progress.update()
    assert out.getvalue().splitlines()[-1] == "[  16.5s] started 3/3  passed 1  failed 0"
    progress.phase = "checked 2/3"
    progress.update()  # changed, but the heartbeat line was just printed
    clock.now += 2.0
    progress.update()
    assert out.getvalue().splitlines()[-1].endswith("phase: checked 2/3")
    assert len(out.getvalue().splitlines()) == 4


def test_on_a_terminal_the_line_is_redrawn_only_when_it_changed() -> None:
    out, clock = _Tty(), _Clock()
    progress = Progress(2, out, heartbeat=15.0, clock=clock)
    progress.update()
    clock.now += 60.0
    progress.update()  # unchanged: a terminal shows the line already
    assert out.getvalue().count("\r\x1b[2K") == 1
    progress.started = 2
    progress.update()
    assert out.getvalue().endswith("\r\x1b[2K[  60.0s] started 2/2  passed 0  failed 0")
    progress.note("instance a/0 failed: boom")  # above the line, which is drawn again
    assert out.getvalue().endswith("instance a/0 failed: boom\n[  60.0s] started 2/2  passed 0  "
                                   "failed 0")


class _Gone(io.StringIO):
    """A stream whose reader went away after `take` writes."""

    def __init__(self, take: int) -> None:
        super().__init__()
        self.take = take
        self.attempts = 0

    def write(self, text: str) -> int:
        self.attempts += 1
        if self.attempts > self.take:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_a_stream_that_fails_ends_the_progress_not_the_run() -> None:
    """`harness run ... 2>&1 | head -1`: the run failed ("the supervisor failed:
    BrokenPipeError") at the next progress line."""
    out, clock = _Gone(take=1), _Clock()
    progress = Progress(3, out, clock=clock)
    progress.note("first")
    progress.started = 1
    progress.update(force=True)  # fails: from now on nothing is written
    progress.note("a failure")
    clock.now += 30
    progress.passed = 3
    progress.update()
    progress.finish()
    assert (out.getvalue(), out.attempts) == ("first\n", 2)


def test_what_an_instance_said_is_one_short_line_on_the_terminal() -> None:
    """A state named "line1\\nFAKE: run PASSED\\x1b[31m..." wrote a newline and an escape
    sequence to the terminal, and a 1 MB name made each progress line 1 MB."""
    out = io.StringIO()
    p = Progress(3, out, clock=_Clock())
    p.phase = "line1\nFAKE: run PASSED\x1b[31mRED\r 1/3"
    p.update(force=True)
    p.note("instance g/0 failed: boom\n  at line 3\x00")
    p.phase = "x" * 1_000_000
    p.update(force=True)
    lines = out.getvalue().split("\n")
    assert lines[0].endswith(r"phase: line1\nFAKE: run PASSED\x1b[31mRED\r 1/3")
    assert lines[1] == r"instance g/0 failed: boom\n  at line 3\x00"
    assert lines[2].endswith("phase: " + "x" * 119 + "…")
    from harness._outcome import InstanceState
    from harness._progress import summary_table
    from harness.plans import InstanceSpec

    st = InstanceState(InstanceSpec("g/0", "g", 0, 0, "", {}, None))
    st.record({"type": "failure", "error": "two\nlines"})
    assert summary_table([st]).splitlines()[-1] == r"  g/0  failed: two\nlines"


def test_the_runs_headline_shows_an_instances_words_on_one_line(tmp_path: Path) -> None:
    """The reason quotes the first failure: its newline split the headline and its escape
    sequences reached the terminal."""
    from harness._supervisor import RunResult

    reason = "1 of 1 failed; first: g/0: failed: TestFailure: first\nsecond\x1b[31mRED\r"
    result = RunResult("r1", tmp_path, "failed", 1, reason, [], 1.0, notes=["a\nb"])
    head = result.summary().splitlines()[:2]
    assert head == ["run r1: FAILED in 1.0 s (1 of 1 failed; first: g/0: failed: TestFailure: "
                    "first\\nsecond\\x1b[31mRED\\r)", "note: a\\nb"]


def test_the_instances_that_failed_of_themselves_are_listed_before_those_stopped_after() -> None:
    """With 100 instances stopped after one failed, the one that failed came after the
    first 25 listed and was not shown at all."""
    from harness._outcome import InstanceState
    from harness._progress import summary_table
    from harness.plans import InstanceSpec

    states = [InstanceState(InstanceSpec(f"g/{i}", "g", i, i, "", {}, None)) for i in range(30)]
    for st in states:
        st.stopped = "stopped after g/27 failed"
    states[27].stopped = None
    states[27].record({"type": "failure", "error": "no PoET proof"})
    rows = summary_table(states, limit=3).splitlines()
    assert rows[-4:] == ["  g/27  failed: no PoET proof", "  g/0   stopped after g/27 failed",
                         "  g/1   stopped after g/27 failed", "  ... and 27 more (see run.json)"]


def test_a_state_signalled_again_by_a_restarted_instance_shows_no_more_than_all(
    tiny: Path,
) -> None:
    """A restarted instance signals its state again: the line read "shaped 5/4"."""
    from harness._supervisor import RunOptions, Supervisor
    from harness.plans import build_run_spec

    spec = build_run_spec("tiny", instances=4, plan_roots=[tiny])
    sup = Supervisor(spec, RunOptions())
    assert sup.progress is not None
    sup.record({"kind": "signal", "state": "shaped", "seq": 5})
    assert sup.progress.phase == "shaped 4/4"
    sup.record({"kind": "signal", "state": "ready", "seq": 3})
    assert sup.progress.phase == "ready 3/4"
