"""Per-run work the supervisor does once, not once per instance (the start-up benchmark,
benchmarks/bench_start.py, prints what it costs; nothing here is timed)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.observe import configure_logging
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


@pytest.mark.parametrize("backend", ["trio", "asyncio", "uvloop"])
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
    # (by identity: a thread an earlier test left, trio's idle worker, may end meanwhile)
    threads = set(threading.enumerate())
    try:
        _warmup.warm_up(backend, rounds=3)
        assert served == ["hello", "signal_event", "signal_entry", "signal_event"] * 3
        assert set(threading.enumerate()) - threads == set()
        assert list(tmp_path.iterdir()) == []
        # Logging is left as an instance sets it up, so an instance's own call only
        # re-points it (and holds no file of the warm-up's).
        from harness.observe import _logging

        assert _logging._setup is not None
        ours = list(_logging._setup.handlers)
        files = [h.stream.name for h in ours if isinstance(h, logging.FileHandler)]
        assert files == [os.devnull]
        handlers = list(logging.getLogger().handlers)
        configure_logging(json_path=tmp_path / "o" / "log.jsonl", instance="single/1")
        assert logging.getLogger().handlers == handlers
    finally:
        configure_logging(json_path=None, console=False)


def test_a_forked_instances_environment_is_exactly_the_one_asked_for() -> None:
    """The host changes only what differs, yet the result is the asked-for environment:
    the host's own variables that are not in it are gone, changed ones changed (checked
    in a forked child, in os.environ and in what a program it starts sees)."""
    import os
    import subprocess
    import sys

    from harness.runners._forkserver import replace_environ

    os.environ.setdefault("PATH", "/usr/bin:/bin")
    asked = {k: v for k, v in os.environ.items() if k != "PATH"}
    asked.update(PATH=os.environ["PATH"] + ":/nowhere", HARNESS_NEW="1")
    asked.pop(next(k for k in asked if k not in ("PATH", "HARNESS_NEW")), None)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            replace_environ(asked)
            seen = subprocess.run([sys.executable, "-c", "import os, json; "
                                   "print(json.dumps(dict(os.environ)))"],
                                  capture_output=True, text=True, env=None).stdout
            os.write(write, (repr(dict(os.environ) == asked) + " " + seen).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        answer = f.read()
    assert os.waitpid(pid, 0)[1] == 0
    same, _, seen = answer.partition(" ")
    assert same == "True"
    child = json.loads(seen)
    assert child["PATH"] == asked["PATH"] and child["HARNESS_NEW"] == "1"
    assert set(asked) <= set(child)
    # Nothing os.environ held survives unasked (the C environment may hold more that
    # os.environ never knew of, e.g. what a terminal library set: neither way touches it).
    assert not (set(child) - set(asked)) & set(os.environ)
