"""End to end through the CLI on the local:exec runner: outcomes, fail-fast, interrupts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ROOT, alive, descendants, harness_cli, only_run_dir

HANG = """
name = "hang"
[[testcases]]
name = "py"
instances = { min = 1, max = 50, default = 3 }
entrypoint = "hang.plan:forever"
[[testcases]]
name = "prog"
instances = { min = 1, max = 50, default = 3 }
program = ["sh", "-c", "sleep 1000 & sleep 1000"]
[[testcases]]
name = "late_failure"
instances = { min = 2, max = 2, default = 2 }
entrypoint = "hang.plan:late_failure"
"""
HANG_CODE = """
import trio
from harness import sdk

async def forever(env):
    await trio.sleep(1000)

async def late_failure(env):
    if env.global_seq == 1:
        await trio.sleep(0.3)
        raise sdk.TestFailure("the answer was 41")
    await env.sync.barrier("never", 3)
"""


def _run_json(outputs: Path) -> dict:
    return json.loads((only_run_dir(outputs) / "run.json").read_text())


def _events(outputs: Path) -> list[dict]:
    run_dir = only_run_dir(outputs)
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


def test_pingpong_50_instances_pass(tmp_path: Path) -> None:
    r = harness_cli("run", "pingpong", "-i", "50", "--runner", "local:exec",
                    "--outputs", str(tmp_path), "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    run = _run_json(tmp_path)
    assert run["outcome"] == "passed"
    assert len(run["instances"]) == 50
    assert all(i["outcome"] == "passed" for i in run["instances"])
    assert len({i["ip"] for i in run["instances"]}) == 50  # each its own loopback address
    released = [e for e in _events(tmp_path) if e["kind"] == "barrier" and e["status"] == "released"]
    pinged = [e for e in released if e["state"] == "pinged"]
    # one release for everyone waiting: the last to arrive never waited
    assert [(e["target"], e["waiters"]) for e in pinged] == [(50, 49)]


def test_crash_fails_the_run_within_2s_naming_the_instance(tmp_path: Path) -> None:
    r = harness_cli("run", "pingpong:crash", "-i", "6", "--runner", "local:exec",
                    "--outputs", str(tmp_path), "-q")
    assert r.returncode == 1
    assert "single/5: exit code 13" in r.stdout
    run = _run_json(tmp_path)
    crashed = next(i for i in run["instances"] if i["id"] == "single/5")
    assert crashed["outcome"] == "failed" and crashed["exit_code"] == 13
    last_exit = max(i["ended"] for i in run["instances"])
    assert last_exit - crashed["ended"] <= 2.0, "the run went on more than 2 s after the crash"
    assert "single/5" in run["reason"]


def test_peers_waiting_for_a_crashed_instances_address_fail_naming_it(tmp_path: Path) -> None:
    """Without fail-fast, nothing stops the others: their wait for every address must
    itself fail once the crashed instance can no longer publish (not at the timeout)."""
    r = harness_cli("run", "pingpong:crash", "-i", "10", "--no-fail-fast", "--timeout", "60",
                    "--runner", "local:exec", "--outputs", str(tmp_path), "-q", timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "still running at the run's timeout" not in r.stdout
    run = _run_json(tmp_path)
    waiting = [i for i in run["instances"] if i["id"] != "single/9"]
    assert len(waiting) == 9
    for inst in waiting:
        assert inst["reason"].startswith("failed: SubscriptionFailed: subscription to 'peers'")
        assert "single/9 (exit code 13)" in inst["reason"]


def test_exit_0_without_success_fails(tmp_path: Path) -> None:
    r = harness_cli("run", "pingpong:silent", "--runner", "local:exec",
                    "--outputs", str(tmp_path), "-q")
    assert r.returncode == 1
    assert "exited 0 without recording success" in r.stdout


def test_recorded_failure_and_unmeetable_barrier_name_the_cause(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("hang", HANG, HANG_CODE)
    r = harness_cli("run", "hang:late_failure", "--plans", str(root), "--runner", "local:exec",
                    "--outputs", str(tmp_path / "out"), "-q")
    assert r.returncode == 1
    run = _run_json(tmp_path / "out")
    by_id = {i["id"]: i for i in run["instances"]}
    assert by_id["single/1"]["reason"] == "failed: TestFailure: the answer was 41"
    # the barrier could never be met (target 3 of 2 instances): it fails at once, naming why
    assert by_id["single/0"]["reason"].startswith("failed: BarrierFailed: barrier 'never'")


def test_timeout_fails_the_instances_still_running(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("hang", HANG, HANG_CODE)
    t0 = time.monotonic()
    r = harness_cli("run", "hang:py", "-i", "2", "--plans", str(root), "--runner", "local:exec",
                    "--timeout", "1", "--outputs", str(tmp_path / "out"), "-q")
    assert r.returncode == 1
    assert time.monotonic() - t0 < 10
    assert "still running at the run's timeout (1s)" in r.stdout


@pytest.mark.parametrize(("case", "sig"), [("py", signal.SIGINT), ("prog", signal.SIGINT),
                                            ("py", signal.SIGTERM), ("prog", signal.SIGKILL)])
def test_interrupt_or_kill_leaves_no_process_behind(
    make_plan: Callable[..., Path], tmp_path: Path, case: str, sig: signal.Signals
) -> None:
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", f"hang:{case}", "--plans", str(root),
         "--runner", "local:exec", "--outputs", str(out), "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        pids: list[int] = []
        while time.monotonic() < deadline and len(pids) < 3:
            time.sleep(0.1)
            if any(out.glob("*/events.jsonl")):
                pids = [e["pid"] for e in _events(out) if e.get("status") == "started"]
        assert len(pids) == 3, "instances did not start"
        below = descendants(proc.pid)
        assert set(pids) <= below
        proc.send_signal(sig)
        code = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig != signal.SIGKILL:
        assert code == 130, proc.stderr.read() if proc.stderr else ""
        assert _run_json(out)["outcome"] == "interrupted"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in below):
        time.sleep(0.1)
    assert not [p for p in below if alive(p)], "processes outlived the run"
    if sig == signal.SIGKILL:  # what `harness clean` does for it: its sockets go
        from harness._liveness import mark_aborted_runs

        sock_dir = Path(_run_json(out)["sock_dir"])
        assert mark_aborted_runs(out, "test") == [only_run_dir(out)]
        assert not (sock_dir / "sync.sock").exists()


RAW_NODE = """#!/usr/bin/env python3
# An instance that knows nothing of the harness's Python code: the wire protocol alone.
import json, os, socket
def connect():
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["TEST_SYNC_SOCKET"])
    return s.makefile("rwb")
def call(i, **req):
    f.write(json.dumps({"id": i, **req}).encode() + b"\\n"); f.flush()
    return json.loads(f.readline())
me = os.environ["TEST_INSTANCE_ID"]
f = connect()  # without the token, nothing is accepted
assert "no token" in call(1, op="hello", instance=me)["error"]
f = connect()
assert "wrong token" in call(1, op="hello", instance=me, token="0" * 64)["error"]
f = connect()
n = int(os.environ["TEST_INSTANCE_COUNT"])
assert call(1, op="hello", instance=me, token=os.environ["TEST_SYNC_TOKEN"])["ok"]
assert call(2, op="signal_and_wait", state="ready", target=n)["ok"]
assert call(3, op="signal_event", event={"type": "success"})["ok"]
"""


def test_any_program_speaking_the_wire_protocol_is_an_instance(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = """
name = "raw"
[[testcases]]
name = "main"
instances = { min = 1, max = 10, default = 3 }
program = ["./node.py"]
"""
    root = make_plan("raw", manifest)
    node = root / "raw" / "node.py"
    node.write_text(RAW_NODE)
    node.chmod(0o755)
    r = harness_cli("run", "raw", "--plans", str(root), "--runner", "local:exec",
                    "--outputs", str(tmp_path / "out"), "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    # a plan root named relatively: every instance failed to start ('plans/raw/node.py'
    # from its own working directory)
    r = harness_cli("run", "raw", "--plans", root.name, "--runner", "local:exec",
                    "--outputs", "rel", "-q", cwd=root.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    node.unlink()
    r = harness_cli("run", "raw", "--plans", str(root), "--runner", "local:exec",
                    "--outputs", str(tmp_path / "out2"), "-q")
    assert r.returncode == 2 and "program './node.py' cannot be run" in r.stderr


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
@pytest.mark.parametrize("runner", ["local:exec", "local:netns"])
def test_a_real_third_party_server_under_test(tmp_path: Path, runner: str) -> None:
    if runner == "local:netns" and os.geteuid() != 0:
        pytest.skip("local:netns needs root here")
    r = harness_cli("run", "redis", "-i", "5", "--runner", runner, "--outputs", str(tmp_path),
                    "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    run = _run_json(tmp_path)
    assert [i["role"] for i in run["instances"]] == ["server"] + ["client"] * 4


def test_a_server_under_test_that_exits_at_once_fails_naming_its_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-server exiting at start (a bad config, a port taken) is said as such at once,
    not as a TooSlowError 10 s later."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").write_text("#!/bin/sh\nexit 3\n")
    (bin_dir / "redis-server").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    r = harness_cli("run", "redis", "-i", "2", "--runner", "local:exec",
                    "--outputs", str(tmp_path / "out"), "-q")
    assert r.returncode == 1, r.stdout + r.stderr
    server = _run_json(tmp_path / "out")["instances"][0]
    assert "redis-server exited with code 3 before it accepted connections" in \
        server["reason"], server["reason"]


def test_the_example_composition_runs_two_groups(tmp_path: Path) -> None:
    comp = ROOT / "scenarios" / "pingpong" / "compositions" / "two-groups.toml"
    r = harness_cli("run", "--composition", str(comp), "--runner", "local:exec",
                    "--outputs", str(tmp_path), "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    run = _run_json(tmp_path)
    groups = {g["id"]: (g["count"], g["params"]["rounds"], g["params"]["fanout"])
              for g in run["groups"]}
    assert groups == {"light": (6, 2, 4), "heavy": (4, 20, 4)}
    assert run["params"]["fanout"] == 4 and "rounds" not in run["params"]  # shared ones only
    assert [i["id"] for i in run["instances"]][5:7] == ["light/5", "heavy/0"]


@pytest.mark.parametrize("option", ["--metrics-listen", "--sync-tcp"])
def test_a_port_that_cannot_be_had_is_a_one_line_error_before_anything_runs(
    option: str, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        where = f"127.0.0.1:{taken.getsockname()[1]}"
        r = harness_cli("run", "pingpong", "-i", "2", "--runner", "local:exec", "-q",
                        "--outputs", str(tmp_path / "out"), option, where)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"harness: error: {option} {where}: Address already in use\n"
    assert not (tmp_path / "out").exists()  # nothing was started
    r = harness_cli("run", "pingpong", "--outputs", str(tmp_path / "out"), option, "here")
    expected = f"harness: error: {option} 'here': expected HOST:PORT or off\n"
    assert (r.returncode, r.stderr) == (2, expected)


@pytest.mark.parametrize(("text", "message"), [
    ("[::1", "'[::1': expected [IPv6]:PORT"),  # was "[:]:1: Name or service not known"
    ("[::1]9090", "'[::1]9090': expected [IPv6]:PORT"),
    ("::1:9090", "'::1:9090': an IPv6 address goes in brackets, e.g. [::1]:9090"),
    ("[::1]:http", "'[::1]:http': expected HOST:PORT or off"),
    ("127.0.0.1:65536", "'127.0.0.1:65536': port 65536 is past 65535"),
])  # fmt: skip
def test_listen_addresses_are_read_as_written(text: str, message: str) -> None:
    from harness._errors import UsageError
    from harness._listen import bind

    with pytest.raises(UsageError) as error:
        bind(text, "--metrics-listen")
    assert str(error.value) == f"--metrics-listen {message}"
    for good, family in [("127.0.0.1:0", "AF_INET"), (":0", "AF_INET")]:
        sock = bind(good, "--metrics-listen")
        assert sock is not None and sock.family.name == family
        sock.close()
