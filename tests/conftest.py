"""Shared fixtures: write throw-away plans, run the CLI as a user would."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_KERNEL_VM = os.environ.get("KERNELVM") == "1"
"""True inside the kernel VM (tests/kernelvm): Debian's kernel, cgroup v2 only, emulated."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def harness_cli(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS`, as a separate process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT,
    )


def unless_raced(attempt: Callable[[], bool], tries: int = 3) -> None:
    """Run `attempt` until it returns True. It returns False when another process's
    clean-up removed what it left behind before it could clean that itself: a run starting
    on the other test worker clears every dead run's leftovers. Fails after `tries` such
    attempts, so a clean-up that never reports what it removed still fails."""
    for _ in range(tries):
        if attempt():
            return
    pytest.fail(f"the clean-up did not report removing this test's leftovers, {tries} times "
                "running: it does not report what it removes, or another clean-up always "
                "got there first")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (by parent links in /proc), including other sessions."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


_VOLATILE = re.compile(r"^#.*$|valid_lft \S+|preferred_lft \S+", re.MULTILINE)


def host_network_state() -> dict[str, str]:
    """What a network must leave untouched in the namespace the tests run in."""
    commands = {
        "link": ["ip", "link"],
        "addr": ["ip", "addr"],
        "route": ["ip", "route", "show", "table", "all"],
        "iptables": ["iptables-save"],
        "qdisc": ["tc", "qdisc"],
    }
    out = {}
    for key, cmd in commands.items():
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[key] = _VOLATILE.sub("", proc.stdout)
    return out


def only_run_dir(outputs: Path) -> Path:
    """The one run directory under `outputs` (beside it may lie history.sqlite)."""
    (run_dir,) = [p for p in outputs.iterdir() if p.is_dir()]
    return run_dir


TINY_MANIFEST = """
name = "tiny"
[defaults]
runner = "local:exec"
[[testcases]]
name = "ok"
instances = { min = 1, max = 10, default = 2 }
entrypoint = "tiny.plan:ok"
  [testcases.params]
  d = { type = "duration", default = "50ms", min = "10ms", max = "250s" }
  n = { type = "int", default = 1, min = 0, max = 5 }
"""
TINY_PLAN = "async def ok(env):\n    pass\n"


@pytest.fixture
def tiny(make_plan: Callable[[str, str, str], Path]) -> Path:
    """A plans root holding `tiny`: one case, `ok`, whose instances pass at once."""
    return make_plan("tiny", TINY_MANIFEST, TINY_PLAN)


@pytest.fixture
def make_plan(tmp_path: Path) -> Callable[[str, str, str], Path]:
    """make_plan(name, manifest_toml, plan_py) -> the plans root holding it."""

    def make(name: str, manifest: str, code: str = "") -> Path:
        root = tmp_path / "plans"
        d = root / name
        d.mkdir(parents=True)
        (d / "manifest.toml").write_text(textwrap.dedent(manifest))
        (d / "__init__.py").write_text("")
        if code:
            (d / "plan.py").write_text(textwrap.dedent(code))
        return root

    return make


ALONE = (
    "tests/spacemesh/test_processes.py", "tests/test_e2e_netns.py", "tests/test_fault_cli.py",
    "tests/k8s/test_cluster.py", "tests/test_relay.py", "tests/test_faults_live.py",
    "tests/netem/test_shaping_live.py", "tests/netem/test_userspace_engine_live.py",
    "tests/kernelvm/test_kernelvm.py",
)
"""Modules marked `alone`: runs that load both cores (200 instances, Spacemesh at 20, an
emulated VM of 2 CPUs booted), and tests that measure time or CPU shares, which such a run
beside them would skew. `nox -s tests` runs the rest on two workers, then these one at a
time (a relay scrape timed out while a 200-instance run went on beside it). The small
Spacemesh runs of tests/spacemesh/test_plan.py and test_systest_live.py wait on their
layers: a quarter of a core (53 s of CPU in 200 s), so they run beside the others."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of `ALONE`'s modules `alone`."""
    for item in items:
        if Path(str(item.fspath)).relative_to(ROOT).as_posix() in ALONE:
            item.add_marker(pytest.mark.alone)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Why each measured-again test (tests/netem/_timing.py) failed its first attempt."""
    reruns = terminalreporter.stats.get("rerun", [])
    if reruns:
        terminalreporter.section("measured again after a failed first attempt")
        for report in reruns:
            crash = getattr(report.longrepr, "reprcrash", None)
            reason = crash.message.splitlines()[0] if crash is not None else "(no message)"
            terminalreporter.write_line(f"{report.nodeid}: {reason}")
