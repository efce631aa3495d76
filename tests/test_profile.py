"""The CPU-time profile of an instance (`harness run --profile-cpu`, harness.sdk._profile)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness._runparams import PROFILE_ENV
from harness.sdk._profile import CpuProfiler, profiler_from_environ

from .conftest import ROOT, harness_cli, only_run_dir


def _burn(seconds: float) -> int:
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def _read(path: Path) -> dict[str, int]:
    counts = {}
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        counts[stack] = int(n)
    return counts


def test_a_profile_counts_the_stacks_that_use_the_cpu_and_not_a_sleep(tmp_path: Path) -> None:
    path = tmp_path / "cpu.folded"
    profiler = CpuProfiler(path, interval=0.002)
    cpu = time.process_time()
    profiler.start()
    try:
        time.sleep(0.4)  # no CPU: no samples
        _burn(0.4)
    finally:
        profiler.stop()
    cpu = time.process_time() - cpu
    counts = _read(path)
    total = sum(counts.values())
    burning = sum(n for stack, n in counts.items() if "_burn (test_profile.py:" in stack)
    # One sample per 2 ms of CPU at most; the kernel counts CPU time in scheduler ticks
    # (4 ms at HZ=250, 10 ms at HZ=100), so at least one per 10 ms. A wall-clock sampler
    # would add about 200 samples of the sleep, not in _burn.
    assert cpu / 0.010 * 0.7 <= total <= cpu / 0.002 * 1.3
    assert burning >= 0.8 * total
    # Root first: the test function calls _burn, so it comes before it on each line.
    stack = max(counts, key=lambda s: counts[s])
    assert stack.index("test_a_profile_counts") < stack.index("_burn (")


def test_a_sample_taken_while_the_profile_is_written_does_not_break_the_write(
    tmp_path: Path,
) -> None:
    """The signal handler may run inside `write` (a 100-node run's instance crashed with
    "dictionary changed size during iteration"): many stacks make each write long, and a
    timer at its finest fires during most of them."""
    profiler = CpuProfiler(tmp_path / "cpu.folded", interval=0.0001)
    profiler.counts.update({f"stack{i}": 1 for i in range(20_000)})
    profiler.start()
    try:
        for _ in range(30):
            profiler.write()
    finally:
        profiler.stop()
    written = _read(tmp_path / "cpu.folded")
    assert sum(written.values()) > 20_000  # samples came meanwhile, and were written


def test_the_profile_is_asked_for_by_the_environment(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert profiler_from_environ(tmp_path) is None
    monkeypatch.setenv(PROFILE_ENV, "0.01")
    profiler = profiler_from_environ(tmp_path)
    assert profiler is not None and profiler.interval == 0.01
    assert profiler.path.parent == tmp_path and profiler.path.name.endswith(".folded")
    monkeypatch.setenv(PROFILE_ENV, "often")
    with pytest.raises(ValueError, match=PROFILE_ENV):
        profiler_from_environ(tmp_path)
    with pytest.raises(ValueError, match="> 0"):
        CpuProfiler(tmp_path / "x", interval=0)


def test_run_with_profile_cpu_leaves_a_profile_in_every_instance_s_outputs(
    tmp_path: Path,
) -> None:
    # 1,000 rounds: about 15 ms of CPU an instance, some 75 samples. With the default 3, an
    # instance forked from the process host used under 2 ms, and one took no sample (in CI).
    r = harness_cli("run", "pingpong", "-i", "3", "-p", "rounds=1000", "--runner", "local:exec",
                    "--outputs", str(tmp_path), "-q", "--profile-cpu", "0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    instances = [d for d in (only_run_dir(tmp_path) / "single").iterdir() if d.is_dir()]
    assert len(instances) == 3
    for inst in instances:
        (profile,) = inst.glob("cpu-*.folded")
        counts = _read(profile)
        assert sum(counts.values()) > 0
        assert any("_invoke.py" in stack for stack in counts)


def test_a_profile_interval_in_the_callers_environment_is_not_passed_on(
    tmp_path: Path,
) -> None:
    """HARNESS_PROFILE_CPU=abc in the shell failed every instance with a bare "exit code 3"
    (only --profile-cpu sets it, checked)."""
    r = subprocess.run([sys.executable, "-m", "harness", "run", "pingpong", "-i", "2",
                        "--runner", "local:exec", "-q", "--outputs", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "HARNESS_PROFILE_CPU": "abc"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(tmp_path.glob("*/single/*/cpu-*.folded"))


@pytest.mark.parametrize("interval", ["0", "inf", "1e20", "nan"])
def test_a_bad_profile_interval_is_a_one_line_error(tmp_path: Path, interval: str) -> None:
    """inf and 1e20 failed every instance (setitimer's time_t), exit 1."""
    r = harness_cli("run", "pingpong", "--runner", "local:exec", "--outputs", str(tmp_path),
                    "--profile-cpu", interval)
    assert r.returncode == 2
    assert "--profile-cpu" in r.stderr and "must be > 0 ms and at most 60000 ms" in r.stderr
    assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())


def test_profile_cpu_is_refused_on_the_cluster_runner(tmp_path: Path) -> None:
    r = harness_cli("run", "pingpong", "--runner", "cluster:k8s", "--outputs", str(tmp_path),
                    "--profile-cpu")
    assert r.returncode == 2
    assert "--profile-cpu is for local runs" in r.stderr and "Traceback" not in r.stderr
