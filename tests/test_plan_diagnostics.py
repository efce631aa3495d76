"""What a plan's author is told when an instance fails: its reason says why, not only how
it ended (the end of its stderr, where it was stuck at a stop, a forgotten await)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from harness._stderr import QUOTE_CHARS, last_words

from .conftest import harness_cli, only_run_dir

DIAG = """
name = "diag"
[defaults]
runner = "local:exec"
[[testcases]]
name = "shell"
instances = { min = 1, max = 1, default = 1 }
program = ["sh", "-c", "echo starting; echo boom >&2; exit 1"]
[[testcases]]
name = "script"
instances = { min = 1, max = 1, default = 1 }
program = ["python", "-c", "import sys\\ndef f():\\n    raise ValueError('bad frame')\\nf()"]
"""


def _run(root: Path, case: str, out: Path, *args: str) -> tuple[int, str, dict]:
    r = harness_cli("run", f"diag:{case}", "--plans", str(root), "--outputs", str(out), "-q",
                    "--metrics-listen", "off", *args)
    run = json.loads((only_run_dir(out) / "run.json").read_text())
    return r.returncode, r.stdout, run


def test_a_program_that_exits_non_zero_is_failed_with_the_end_of_its_stderr(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path,
) -> None:
    """A shell plan's `echo boom >&2; exit 1` read "exit code 1" in the summary, run.json
    and junit.xml: why it exited was only in its stderr.log."""
    root = make_plan("diag", DIAG, "")
    code, stdout, run = _run(root, "shell", tmp_path / "out")
    assert code == 1, stdout
    (inst,) = run["instances"]
    assert inst["reason"] == "exit code 1; stderr ends: boom"
    assert "single/0  exit code 1; stderr ends: boom" in stdout
    case = ET.parse(only_run_dir(tmp_path / "out") / "junit.xml").find(
        "testsuite/testcase/failure")
    assert case is not None and case.get("message") == inst["reason"]


def test_a_python_programs_traceback_is_quoted_down_to_its_exception(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path,
) -> None:
    root = make_plan("diag", DIAG, "")
    code, _, run = _run(root, "script", tmp_path / "out")
    (inst,) = run["instances"]
    assert code == 1 and inst["reason"].startswith("exit code 1; stderr ends: ")
    assert inst["reason"].endswith("in f | ValueError: bad frame"), inst["reason"]


def test_the_quote_keeps_a_tracebacks_exception_when_lines_follow_it(tmp_path: Path) -> None:
    """Lines written after a traceback (a log line, an atexit hook) must not leave out the
    exception that says what happened."""
    stderr = tmp_path / "stderr.log"
    frames = "".join(f'  File "plan.py", line {n}, in f{n}\n    f{n + 1}()\n' for n in range(40))
    after = "".join(f"shutting down part {n}\n" for n in range(8))
    stderr.write_text(f"Traceback (most recent call last):\n{frames}"
                      f"KeyError: 'peer 7'\n{after}")
    quote = last_words(stderr)
    assert quote is not None
    assert quote.startswith("KeyError: 'peer 7' … | ")
    assert quote.endswith("shutting down part 7") and len(quote) <= QUOTE_CHARS


def test_the_quote_is_bounded_and_keeps_the_start_of_a_long_last_line(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.log"
    stderr.write_text("".join(f"line {n} " + "x" * 80 + "\n" for n in range(50)))
    quote = last_words(stderr)
    assert quote is not None and len(quote) <= QUOTE_CHARS
    assert quote.endswith("line 49 " + "x" * 80) and "line 44" not in quote
    stderr.write_text("short\n" + "fatal: " + "y" * 5000 + "\n\n")
    quote = last_words(stderr)
    assert quote is not None and quote.startswith("fatal: yyy") and len(quote) == QUOTE_CHARS
    stderr.write_text("\n \n")
    assert last_words(stderr) is None
    assert last_words(tmp_path / "missing.log") is None
