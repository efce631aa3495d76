"""A signal once a run has ended cuts its report short and leaves its verdict standing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import trio

from harness import _supervisor


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: s.name)
def test_a_signal_while_the_report_is_written_skips_the_rest_and_says_how_to_make_it(
    sig: signal.Signals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
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
    before = signal.getsignal(sig)
    _supervisor.finish_run(tmp_path)
    assert written == ["report"]
    assert capsys.readouterr().err == (
        f"harness: {sig.name} after the run had ended: its report was not written "
        f"(harness report {tmp_path} writes it)\n")
    assert signal.getsignal(sig) == before


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
