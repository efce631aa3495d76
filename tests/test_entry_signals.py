"""The command ends as interrupted on SIGTERM and SIGHUP from its first moment, as on
Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_before_a_run_starts_end_as_an_interruption(sig: str) -> None:
    """In the command's first half second, before a run's own handlers, they killed it:
    exit 143 or 129 and not a word."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        from harness import _cli, _entry
        real = _cli.build_parser
        def parser(only):
            os.kill(os.getpid(), signal.{sig})  # as the command's modules are set up
            return real(only)
        _cli.build_parser = parser
        sys.argv = ["harness", "list"]
        sys.exit(_entry.main())
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert (r.returncode, r.stderr) == (130, "harness: interrupted\n")


def test_an_ignored_sighup_stays_ignored() -> None:
    """nohup's promise: the command must not take SIGHUP back."""
    code = textwrap.dedent("""
        import signal, sys
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        from harness import _cli, _entry
        _cli.main = lambda: signal.getsignal(signal.SIGHUP) == signal.SIG_IGN and 7 or 0
        sys.exit(_entry.main())
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 7, r.stderr
