"""A disk that fills during a run still gets the run's last record: run.json says how the
run ended, not "running" (which `harness show` calls ABORTED)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT

MANIFEST = """
name = "fill"
[defaults]
runner = "local:exec"
[[testcases]]
name = "fill"
instances = { min = 1, max = 2, default = 2 }
entrypoint = "fill.plan:fill"
"""
PLAN = """
import trio
async def fill(env):
    if env.global_seq == 0:
        (env.outputs_path / "fill-now").touch()  # the test's filler takes every free byte
    await trio.sleep(1.0)
"""

# Both scripts run in a mount namespace of their own, with a small tmpfs as the outputs.
PRELUDE = """
import json, os, subprocess, sys, threading, time
from pathlib import Path
out, plans = Path(sys.argv[1]), sys.argv[2]
os.umask(0o022)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(out)], check=True)
def fill(fd):
    # to the last byte
    for chunk in (65536, 4096, 1):
        try:
            while True:
                os.write(fd, b"x" * chunk)
        except OSError:
            pass
"""

# Once an instance asks, a thread fills the tmpfs and takes any byte freed, until the run
# has ended.
SCRIPT = PRELUDE + """
stop = threading.Event()
def filler():
    while not any(out.glob("*/single/0/fill-now")) and not stop.is_set():
        time.sleep(0.005)
    fd = os.open(out / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    while not stop.is_set():
        fill(fd)
        time.sleep(0.0002)
threading.Thread(target=filler, daemon=True).start()
run = subprocess.run([sys.executable, "-m", "harness", "run", "fill", "--plans", plans,
                      "--outputs", str(out), "-q", "--metrics-listen", "off"],
                     capture_output=True, text=True, timeout=120)
stop.set()
time.sleep(0.01)
os.unlink(out / "filler")
run_json = next(out.glob("*/run.json"))
record = json.loads(run_json.read_text())
show = subprocess.run([sys.executable, "-m", "harness", "show", "--outputs", str(out)],
                      capture_output=True, text=True, timeout=60)
left = sorted(p.name for p in out.glob("*/.*"))
print(json.dumps({"code": run.returncode, "stderr": run.stderr, "record": record,
                  "show": show.stdout, "left": left,
                  "mode": oct(run_json.stat().st_mode & 0o777)}))
"""

# A run whose supervisor died, on a disk full by the time it is found: marking it aborted
# takes the space its reserve held.
ABORTED_SCRIPT = PRELUDE + """
from harness._liveness import mark_aborted
from harness._rundir import Reserve
subprocess.run([sys.executable, "-m", "harness", "run", "tiny", "--plans", plans, "--outputs",
                str(out), "-q", "--metrics-listen", "off"], check=True, capture_output=True)
run_dir = next(out.glob("*/run.json")).parent
record = json.loads((run_dir / "run.json").read_text())  # its supervisor has exited
record.update(outcome="running", ended=None, exit_code=None)
(run_dir / "run.json").write_text(json.dumps(record))
assert Reserve.make(run_dir / ".run.json.reserve", 1 << 20) is not None
fill(os.open(out / "filler", os.O_WRONLY | os.O_CREAT, 0o600))
marked = mark_aborted(run_dir, "test")
print(json.dumps({"marked": marked,
                  "outcome": json.loads((run_dir / "run.json").read_text())["outcome"],
                  "reserve": (run_dir / ".run.json.reserve").exists()}))
"""

# Two runs, the history lacking the second; then `harness runs` on a full disk.
HISTORY_SCRIPT = PRELUDE + """
import sqlite3
for _ in range(2):
    subprocess.run([sys.executable, "-m", "harness", "run", "tiny", "--plans", plans,
                    "--outputs", str(out), "-q", "--metrics-listen", "off"], check=True,
                   capture_output=True)
with sqlite3.connect(out / "history.sqlite") as db:
    latest = max(r for (r,) in db.execute("SELECT run_id FROM runs"))
    db.execute("DELETE FROM runs WHERE run_id = ?", (latest,))
fill(os.open(out / "filler", os.O_WRONLY | os.O_CREAT, 0o600))
runs = subprocess.run([sys.executable, "-m", "harness", "runs", "--json", "--outputs", str(out)],
                      capture_output=True, text=True, timeout=60)
print(json.dumps({"code": runs.returncode, "stderr": runs.stderr, "latest": latest,
                  "listed": [r["run_id"] for r in json.loads(runs.stdout or "[]")]}))
"""

# The disk all but full before the run: less free than run.json's reserve.
NEARLY_FULL_SCRIPT = PRELUDE + """
fd = os.open(out / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
fill(fd)
os.ftruncate(fd, os.fstat(fd).st_size - 300_000)
run = subprocess.run([sys.executable, "-m", "harness", "run", "tiny", "--plans", plans,
                      "--outputs", str(out), "-q", "--metrics-listen", "off"],
                     capture_output=True, text=True, timeout=120)
print(json.dumps({"code": run.returncode, "stderr": run.stderr,
                  "left": sorted(p.name for p in out.iterdir())}))
"""

needs_mounts = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="mounting a small tmpfs in a mount namespace needs root and unshare")


def _in_own_mounts(script: str, tmp_path: Path, plans: Path) -> dict[str, Any]:
    """What `script` printed, run in a mount namespace of its own."""
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                        "-c", script, str(out), str(plans)],
                       capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


@needs_mounts
def test_a_disk_that_fills_during_the_run_still_gets_its_last_record(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path
) -> None:
    got = _in_own_mounts(SCRIPT, tmp_path, make_plan("fill", MANIFEST, PLAN))
    assert got["code"] == 3, got["stderr"]
    assert "No space left on device" in got["stderr"]
    record = got["record"]
    assert record["outcome"] == "error" and record["ended"] is not None, record
    assert record["exit_code"] == 3  # it was null: "only while the run goes on"
    assert record["reason"] == "cannot write the run's outputs: No space left on device"
    assert "ABORTED" not in got["show"] and "ERROR" in got["show"], got["show"]
    assert got["left"] == []  # the reserve is gone
    assert got["mode"] == "0o644"  # written into the reserve, still readable by all


@needs_mounts
def test_a_dead_supervisors_run_is_marked_aborted_on_a_full_disk(
    tiny: Path, tmp_path: Path
) -> None:
    """Its reserve was removed only after run.json was written, which the full disk
    refused: `harness clean` failed and the run stayed "running"."""
    got = _in_own_mounts(ABORTED_SCRIPT, tmp_path, tiny)
    assert got == {"marked": True, "outcome": "aborted", "reserve": False}


@needs_mounts
def test_the_runs_the_history_holds_are_listed_on_a_full_disk(tiny: Path, tmp_path: Path) -> None:
    """`harness runs` failed as a whole ("run history ... is unusable: database or disk is
    full") when it could not record a run the history lacked."""
    got = _in_own_mounts(HISTORY_SCRIPT, tmp_path, tiny)
    assert got["code"] == 0, got["stderr"]
    assert got["stderr"].startswith("harness: warning: the run history was not brought up to "
                                    "date (")
    assert got["stderr"].endswith("history.sqlite: No space left on device): runs it lacks "
                                  "are not listed\n")
    assert len(got["listed"]) == 1 and got["latest"] not in got["listed"]


@needs_mounts
def test_a_run_on_a_disk_without_room_for_its_last_record_is_refused_before_it_starts(
    tiny: Path, tmp_path: Path
) -> None:
    """Its reserve could not be made and the run went on without it: its end was never
    written and run.json said "running" for good."""
    got = _in_own_mounts(NEARLY_FULL_SCRIPT, tmp_path, tiny)
    assert got["code"] == 3, got["stderr"]
    assert got["stderr"].startswith("harness: error: cannot write the run's outputs"), got
    assert "No space left on device" in got["stderr"] and len(got["stderr"].splitlines()) == 1
    assert got["left"] == ["filler"]  # no run directory half made
