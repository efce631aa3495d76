"""The command ends as interrupted on SIGTERM and SIGHUP from its first moment, as on
Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("sig", "ignored"), [
    ("SIGTERM", False), ("SIGHUP", False), ("SIGQUIT", False), ("SIGUSR1", False),
    ("SIGALRM", False), ("SIGINT", True), ("SIGTERM", True),
])  # fmt: skip
def test_sigterm_and_sighup_before_a_run_starts_end_as_an_interruption(
    sig: str, ignored: bool
) -> None:
    """In the command's first half second, before a run's own handlers, they killed it:
    exit 143 or 129 and not a word. SIGINT and SIGTERM count even when the command starts
    ignoring them (`cmd &` in a script ignores SIGINT): one was lost, and the run passed."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        if {ignored}:
            signal.signal(signal.{sig}, signal.SIG_IGN)
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


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGUSR1"])
def test_a_signal_while_the_cli_is_imported_is_taken_after_the_import(sig: str) -> None:
    """Raised inside an extension module's import (orjson's), the KeyboardInterrupt killed
    the command with SIGSEGV now and then (a review: 4 of 150 signals sent ~40 ms in)."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        class Finder:
            def find_spec(self, name, path, target=None):
                if name == "harness._cli":
                    os.kill(os.getpid(), signal.{sig})
                    print("the import went on", flush=True)
                return None
        sys.meta_path.insert(0, Finder())
        from harness import _entry
        sys.argv = ["harness", "list"]
        sys.exit(_entry.main())
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert (r.returncode, r.stdout, r.stderr) == (
        130, "the import went on\n", "harness: interrupted\n")


def test_a_signal_once_the_command_is_done_leaves_its_exit_code() -> None:
    """Between the command's end and the process's exit, SIGTERM or Ctrl-C raised a
    KeyboardInterrupt nothing caught: exit -2 (or 130) for a command that had succeeded."""
    code = textwrap.dedent("""
        import os, signal, sys
        from harness import _cli, _entry
        _cli.main = lambda: 0
        code = _entry.main()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        sys.exit(code)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert (r.returncode, r.stderr) == (0, "")


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


NAPS = """
name = "naps"
[defaults]
runner = "local:exec"
[[testcases]]
name = "nap"
instances = { min = 1, max = 2, default = 1 }
entrypoint = "naps.plan:nap"
"""
NAP = """
import trio

async def nap(env):
    await trio.sleep(3)
"""


def test_a_run_under_nohup_goes_on_after_sighup(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path
) -> None:
    """The run's own signal handling took SIGHUP back from nohup: a run started with
    `nohup harness run ... &` ended, interrupted (130), when its terminal closed."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "naps:nap", "--plans",
         str(make_plan("naps", NAPS, NAP)), "--outputs", str(out), "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30  # a guard against a hang, not a timing
        while not list(out.glob("*/single/0/log.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.05)  # the instance runs: the run's handlers are in
        proc.send_signal(signal.SIGHUP)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stdout + stderr
