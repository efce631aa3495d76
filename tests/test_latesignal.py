"""A signal once a run has ended cuts its report short and leaves its verdict standing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from harness import _supervisor
from harness._latesignal import SIGNALS, handled, signal_name

from .conftest import ROOT

SAMPLE = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
          signal.SIGRTMIN + 3)
"""Of `SIGNALS`, those a test that runs a whole run for each takes."""


@pytest.mark.parametrize("sig", SIGNALS, ids=signal_name)
def test_a_signal_while_the_report_is_written_skips_the_rest_and_says_how_to_make_it(
    sig: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C ended the command with 130 (run.json: passed) and SIGTERM or SIGHUP killed
    it; either way no summary or report, and nothing said."""
    written: list[str] = []

    def slow_report(run_dir: Path) -> None:
        written.append("report")
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the signal comes in here
        written.append("report done")

    monkeypatch.setattr(_supervisor, "write_report", slow_report)
    monkeypatch.setattr(_supervisor, "record_run", lambda run_dir: written.append("history"))
    held = signal.signal(sig, signal.SIG_DFL)  # pytest-timeout's SIGALRM: a run leaves it be
    try:
        _supervisor.finish_run(tmp_path)
        assert signal.getsignal(sig) == signal.SIG_DFL
    finally:
        signal.signal(sig, held)
    assert written == ["report"]
    assert capsys.readouterr().err == (
        f"harness: {signal_name(sig)} as the run ended: its report was not written "
        f"(harness report {tmp_path} writes it)\n")


def test_a_signal_while_the_history_is_written_says_the_report_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """It said "its report was not written" of a report written whole."""

    def slow_history(run_dir: Path) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal comes in here

    monkeypatch.setattr(_supervisor, "write_report", lambda run_dir: None)
    monkeypatch.setattr(_supervisor, "record_run", slow_history)
    _supervisor.finish_run(tmp_path / "run")
    assert capsys.readouterr().err == (
        "harness: SIGTERM as the run ended: its entry in the run history was not written "
        f"(harness runs --outputs {tmp_path} adds it)\n")


def test_a_signal_that_came_as_the_run_ended_is_taken_not_raised_later() -> None:
    """A second Ctrl-C during an interrupted run's tear-down waited in the receiver and
    was raised once it closed: KeyboardInterrupt, exit 130 and no report."""

    async def main() -> tuple[str | None, str | None]:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            nothing = await _supervisor._pending_signal(signals)
            signal.raise_signal(signal.SIGINT)
            await trio.lowlevel.checkpoint()
            return nothing, await _supervisor._pending_signal(signals)

    assert trio.run(main) == (None, "SIGINT")


@pytest.mark.parametrize("sig", SAMPLE, ids=signal_name)
def test_a_signal_once_the_summary_is_printed_leaves_the_exit_code_the_verdict_s(
    sig: int, tmp_path: Path
) -> None:
    """What is left then is printing the summary and exiting, and Python gives its own
    handlers back to the default as it exits: a passed run's command was killed by
    SIGTERM or SIGHUP, or exited 130 (run.json: passed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "faulty:beat", "--plans", "tests/plans",
         "--outputs", str(tmp_path), "-i", "2", "-p", "seconds=1", "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # the verdict's line: the report is written
    proc.send_signal(sig)
    out = first + proc.stdout.read()  # (communicate would skip what readline buffered)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, (proc.returncode, out, err)
    assert "PASSED" in first and out.rstrip().endswith("report.html"), out  # the whole summary


def test_a_run_takes_sigint_and_sigterm_always_and_the_others_unless_ignored_or_taken(
) -> None:
    """A shell starts a background job ignoring SIGINT and SIGQUIT: `kill -INT` must still
    stop its run, while nohup's ignored SIGHUP stays ignored, and a program that runs the
    harness within it keeps the signals it handles itself."""
    before = {s: signal.getsignal(s) for s in SIGNALS}
    try:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        assert handled() == list(SIGNALS)
        for s in SIGNALS:
            signal.signal(s, signal.default_int_handler)  # the command's, until a run's
        assert handled() == list(SIGNALS)
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        assert handled() == [signal.SIGINT, signal.SIGTERM]
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        signal.signal(signal.SIGUSR2, lambda signum, frame: None)
        assert handled() == [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1]
    finally:
        for s, was in before.items():
            signal.signal(s, was)


def test_every_signal_whose_default_ends_a_process_is_taken_but_its_own_faults() -> None:
    """SIGUSR1 killed a run with nothing it had made removed. The list is checked against
    the kernel's own: signal(7) says which end a process (Term and Core), and these are
    left out on purpose."""
    left_out = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP,
                signal.SIGSYS, signal.SIGABRT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGPROF,
                signal.SIGVTALRM, signal.SIGKILL}
    not_ending = {signal.SIGCHLD, signal.SIGCONT, signal.SIGSTOP, signal.SIGTSTP,
                  signal.SIGTTIN, signal.SIGTTOU, signal.SIGURG, signal.SIGWINCH}
    assert set(SIGNALS) == set(signal.valid_signals()) - left_out - not_ending
    assert len(SIGNALS) == len(set(SIGNALS))


def test_signal_names_name_real_time_signals_and_no_others() -> None:
    """32 and 33 (glibc's own) were named SIGRTMIN+-2 and SIGRTMIN+-1."""
    assert [signal_name(n) for n in (15, signal.SIGRTMIN, signal.SIGRTMIN + 3, 32, 33)] == [
        "SIGTERM", "SIGRTMIN", "SIGRTMIN+3", "signal 32", "signal 33"]
