"""What a plan's author is told when an instance fails: its reason says why, not only how
it ended (the end of its stderr, where it was stuck at a stop, a forgotten await)."""

from __future__ import annotations

import json
import signal
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from harness._stderr import QUOTE_CHARS, last_words, stack_note

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
[[testcases]]
name = "stuck"
instances = { min = 1, max = 1, default = 1 }
entrypoint = "diag.plan:stuck"
[[testcases]]
name = "sleeper"
instances = { min = 1, max = 1, default = 1 }
program = ["sleep", "1000"]
[[testcases]]
name = "forgot"
instances = { min = 1, max = 1, default = 1 }
entrypoint = "diag.plan:forgot"
[[testcases]]
name = "cycle"
instances = { min = 1, max = 1, default = 1 }
entrypoint = "diag.plan:cycle"
backend = "asyncio"
[[testcases]]
name = "waits"
instances = { min = 1, max = 1, default = 1 }
entrypoint = "diag.plan:waits"
[[testcases]]
name = "waits_asyncio"
instances = { min = 1, max = 1, default = 1 }
entrypoint = "diag.plan:waits"
backend = "asyncio"
"""
DIAG_CODE = """
import subprocess, time

async def stuck(env):
    # a child of its own, in its process group: it must not be told to dump a stack
    subprocess.Popen(["sh", "-c", "trap 'echo child: USR2 >&2' USR2; while :; do sleep 0.05; done"])
    time.sleep(1000)  # blocks the event loop: only a signal handler in C runs

async def forgot(env):
    env.sync.publish("news", 1)  # no await: nothing is published
    await env.sync.signal_entry("done")

async def waits(env):
    import anyio
    await anyio.sleep(1000)  # the loop is free: only a task's chain of coroutines has it

async def cycle(env):
    import gc
    gc.disable()  # no collection comes before success is recorded
    box = {"coroutine": env.sync.publish("news", 1)}
    box["self"] = box  # finalized only by a collection
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
    root = make_plan("diag", DIAG, DIAG_CODE)
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
    root = make_plan("diag", DIAG, DIAG_CODE)
    code, _, run = _run(root, "script", tmp_path / "out")
    (inst,) = run["instances"]
    assert code == 1 and inst["reason"].startswith("exit code 1; stderr ends: ")
    assert inst["reason"].endswith("in f | ValueError: bad frame"), inst["reason"]


def test_a_python_instance_stuck_at_the_timeout_dumps_its_stacks_and_says_where(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path,
) -> None:
    """`time.sleep(1000)` in an async test read "still running at the run's timeout", with
    nothing of where it was stuck. The dump goes to its process alone (not to the child in
    its group), and its SIGTERM still ends it (not the SIGKILL seconds later)."""
    root = make_plan("diag", DIAG, DIAG_CODE)
    code, _, run = _run(root, "stuck", tmp_path / "out", "--timeout", "2")
    (inst,) = run["instances"]
    assert code == 1 and inst["reason"] == (
        "still running at the run's timeout (2s); it was in stuck (plan.py:7): every "
        "thread's stack at the stop is in stderr.log"), inst["reason"]
    assert inst["exit_code"] == -signal.SIGTERM
    stderr = (only_run_dir(tmp_path / "out") / "single/0/stderr.log").read_text()
    assert "Current thread 0x" in stderr and '/diag/plan.py", line 7 in stuck' in stderr
    assert "child: USR2" not in stderr


@pytest.mark.parametrize("case", ["waits", "waits_asyncio"])
def test_a_python_instance_awaiting_at_the_timeout_says_where_it_awaited(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path, case: str,
) -> None:
    """An instance awaiting in its own code (a sleep, a socket) is in no thread's stack:
    the dump showed only the harness's frames, and the reason said nothing of where."""
    root = make_plan("diag", DIAG, DIAG_CODE)
    code, _, run = _run(root, case, tmp_path / "out", "--timeout", "2")
    (inst,) = run["instances"]
    assert code == 1 and inst["reason"] == (
        "still running at the run's timeout (2s); it was awaiting in waits (plan.py:15): "
        "every thread's stack at the stop is in stderr.log"), inst["reason"]
    stderr = (only_run_dir(tmp_path / "out") / "single/0/stderr.log").read_text()
    assert "harness.sdk: where the event loop's tasks waited at the stop" in stderr


def test_a_program_at_the_timeout_gets_no_stack_signal(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path,
) -> None:
    """A program knows nothing of the SDK's stack dumps: the signal would end it."""
    root = make_plan("diag", DIAG, DIAG_CODE)
    code, _, run = _run(root, "sleeper", tmp_path / "out", "--timeout", "1")
    (inst,) = run["instances"]
    assert code == 1 and inst["reason"] == "still running at the run's timeout (1s)"
    assert inst["exit_code"] == -signal.SIGTERM


def test_a_forgotten_await_fails_the_instance_naming_the_coroutine(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path,
) -> None:
    """`env.sync.publish(...)` without `await` only warned (RuntimeWarning: coroutine ...
    was never awaited), and the instance passed."""
    root = make_plan("diag", DIAG, DIAG_CODE)
    code, stdout, run = _run(root, "forgot", tmp_path / "out")
    (inst,) = run["instances"]
    assert code == 1, stdout
    assert inst["reason"] == ("failed: coroutine 'SyncClient.publish' was never awaited "
                              "(a forgotten `await`) at plan.py:10"), inst["reason"]
    assert inst["exit_code"] == 1


def test_a_forgotten_await_in_a_reference_cycle_is_found_before_success(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path,
) -> None:
    """A coroutine only a collection finalizes warned after the success was recorded, if
    ever (a forked instance ends by os._exit): the instance passed."""
    root = make_plan("diag", DIAG, DIAG_CODE)
    code, stdout, run = _run(root, "cycle", tmp_path / "out")
    (inst,) = run["instances"]
    assert code == 1, stdout
    assert inst["reason"] == ("failed: coroutine 'SyncClient.publish' was never awaited "
                              "(a forgotten `await`)"), inst["reason"]


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


def test_a_stack_note_quotes_the_plans_innermost_frame_of_the_current_thread_first(
    tmp_path: Path,
) -> None:
    plan = tmp_path / "plan"
    stderr = tmp_path / "stderr.log"
    before = "Current thread 0x0000000000000001 (most recent call first):\n" \
             f'  File "{plan}/old.py", line 1 in earlier\n'
    dump = ("Thread 0x00007f0000000002 (most recent call first):\n"
            f'  File "{plan}/worker.py", line 3 in poll\n\n'
            "Current thread 0x00007f0000000001 (most recent call first):\n"
            '  File "/usr/lib/python3.11/socket.py", line 9 in recv\n'
            f'  File "{plan}/lib/net.py", line 21 in fetch\n'
            f'  File "{plan}/plan.py", line 5 in case\n'
            '  File "/x/harness/sdk/_invoke.py", line 130 in _run\n')
    stderr.write_text(before + dump)
    offset = len(before)
    assert stack_note(stderr, offset, plan) == (
        "; it was in fetch (lib/net.py:21): every thread's stack at the stop is in stderr.log")
    stderr.write_text(before + dump.replace(str(plan), "/elsewhere"))
    assert stack_note(stderr, offset, plan) == (
        "; every thread's stack at the stop is in stderr.log")
    stderr.write_text(before + "the instance ended before the dump\n")
    assert stack_note(stderr, offset, plan) is None


def test_watching_for_forgotten_awaits_passes_other_unraisables_on_and_ends_clean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a coroutine never awaited is taken; the hook and the warning filters are as
    they were once the test function has returned (`_run` runs in the warm-up too)."""
    import sys
    import warnings

    from harness.sdk._awaits import ForgottenAwaits

    others: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: others.append(u.object))
    filters = list(warnings.filters)

    async def step() -> None:
        pass

    class Broken:
        def __del__(self) -> None:
            raise OSError("closing")

    forgotten = ForgottenAwaits(Path(__file__).parent)
    with forgotten.watching():
        line = sys._getframe().f_lineno + 1
        step()  # type: ignore[unused-coroutine]
        Broken()
        assert forgotten.reason() == (
            "coroutine 'test_watching_for_forgotten_awaits_passes_other_unraisables_on_and_"
            "ends_clean.<locals>.step' was never awaited (a forgotten `await`) at "
            f"{Path(__file__).name}:{line}")
    assert others == [Broken.__del__]
    assert sys.unraisablehook is not None and warnings.filters == filters
    with pytest.warns(RuntimeWarning, match="never awaited"):  # no longer watched: as before
        step()  # type: ignore[unused-coroutine]
    assert len(forgotten.found) == 1


def test_a_coroutine_a_library_makes_and_drops_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The instance failed for any coroutine never awaited, a library's own too, which its
    plan cannot fix. Dropped in the plan's code, a library's coroutine still fails it."""
    import importlib.util

    from harness.sdk._awaits import ForgottenAwaits

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "somelib.py").write_text(
        "async def flush():\n    pass\n\n\ndef close():\n    flush()\n")
    spec = importlib.util.spec_from_file_location("somelib", tmp_path / "site" / "somelib.py")
    assert spec is not None and spec.loader is not None
    somelib = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(somelib)
    plan = tmp_path / "plan"
    plan.mkdir()
    (plan / "plan.py").write_text("def case(lib):\n    lib.flush()\n")
    namespace: dict[str, object] = {}
    exec(compile((plan / "plan.py").read_text(), str(plan / "plan.py"), "exec"), namespace)

    forgotten = ForgottenAwaits(plan)
    with caplog.at_level("WARNING", logger="py.warnings"), forgotten.watching():
        somelib.close()
        assert forgotten.reason() is None
        assert f"made and dropped by a library (at {tmp_path}/site/somelib.py:6)" in caplog.text
        namespace["case"](somelib)  # type: ignore[operator]
        assert forgotten.reason() == ("coroutine 'flush' was never awaited (a forgotten "
                                      "`await`) at plan.py:2")
