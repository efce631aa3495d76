"""Per-run work the supervisor does once, not once per instance (the start-up benchmark,
benchmarks/bench_start.py, prints what it costs; nothing here is timed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.plans import build_run_spec

from .conftest import only_run_dir

PLAN = """
name = "few"
[[testcases]]
name = "env"
instances = { min = 1, max = 50, default = 4 }
entrypoint = "few.plan:env"
"""
CODE = """
import os

async def env(env):
    with open(env.outputs_path / "env.json", "w") as f:
        import json
        json.dump(dict(os.environ), f)
"""


def test_the_inherited_environment_is_worked_out_once_per_run(
    make_plan: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan's import roots (a path resolution each) are looked up once for the whole
    run, yet every instance still gets the same PYTHONPATH and none of the contract's
    variables from the supervisor's own environment."""
    import harness._supervisor as supervisor

    calls: list[Path] = []
    real = supervisor.import_roots

    def counted(plan_dir: Path) -> list[Path]:
        calls.append(plan_dir)
        return real(plan_dir)

    monkeypatch.setattr(supervisor, "import_roots", counted)
    monkeypatch.setenv("TEST_INSTANCE_ROLE", "stale, from the caller")
    root = make_plan("few", PLAN, CODE)
    spec = build_run_spec("few:env", instances=4, runner="local:exec", plan_roots=[root])
    options = harness.RunOptions(outputs=tmp_path / "out", progress=False, metrics_listen=None)
    result = harness.run(spec, options)
    assert result.exit_code == 0, result.reason
    assert len(calls) == 1
    run_dir = only_run_dir(tmp_path / "out")
    envs: list[dict[str, Any]] = [
        json.loads((run_dir / "single" / str(i) / "env.json").read_text()) for i in range(4)
    ]
    paths = {e["PYTHONPATH"] for e in envs}
    assert len(paths) == 1 and str(root.resolve()) in paths.pop().split(":")
    assert all(e.get("TEST_INSTANCE_ROLE") != "stale, from the caller" for e in envs)
    assert sorted(e["TEST_INSTANCE_ID"] for e in envs) == [f"single/{i}" for i in range(4)]


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_the_process_hosts_warm_up_runs_start_ups_and_leaves_nothing_behind(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round is a whole start-up against the stand-in service (hello, start, a
    signal, success); afterwards no thread, socket or directory of it is left."""
    import tempfile
    import threading

    from harness.runners import _warmup

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    served: list[str] = []
    real = _warmup.orjson.loads

    def seen(line: bytes) -> Any:
        frame = real(line)
        if isinstance(frame, dict) and "op" in frame:  # a request (the client reads replies)
            served.append(frame["op"])
        return frame

    monkeypatch.setattr(_warmup.orjson, "loads", seen)
    threads = threading.active_count()
    _warmup.warm_up(backend, rounds=3)
    assert served == ["hello", "signal_event", "signal_entry", "signal_event"] * 3
    assert threading.active_count() == threads
    assert list(tmp_path.iterdir()) == []
