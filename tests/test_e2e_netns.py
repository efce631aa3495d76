"""End to end on the local:netns runner (live: root, namespaces, the shaping backend)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ROOT, alive, descendants, harness_cli, host_network_state, only_run_dir
from .spacemesh.logs import check_run_logs, run_logs

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.geteuid() != 0, reason="local:netns builds namespaces: needs root"),
]

HANG = """
name = "hang"
[[testcases]]
name = "py"
instances = { min = 1, max = 50, default = 3 }
entrypoint = "hang.plan:forever"
"""
HANG_CODE = """
import trio

async def forever(env):
    await env.network.configure({"latency_ms": 5})
    await env.sync.signal_entry("shaped")
    await trio.sleep(1000)
"""


def test_pingpong_50_instances_over_shaped_links(tmp_path: Path) -> None:
    before = host_network_state()
    r = harness_cli("run", "pingpong", "-i", "50", "-p", "latency=10ms", "-p", "fanout=3",
                    "--runner", "local:netns", "--outputs", str(tmp_path), "-q", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    # the plan itself fails any instance whose fastest ping beat its two ends' latency
    run_dir = only_run_dir(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["network"]["backend"] in ("kernel", "userspace")
    assert len(set(run["network"]["hosts"].values())) == 50
    assert all(ip.startswith("198.1") for ip in run["network"]["hosts"].values())
    assert not list(run_dir.glob("*.sock"))  # the sync and relay sockets went with the run
    assert host_network_state() == before
    assert not [n for n in _netns() if n.startswith(run["network"]["prefix"])]


def test_pingpong_groups_with_different_latencies_pass_and_unshaped_links_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A composition's groups at 0 and 30 ms hung at the 'shaped' barrier (only shaped
    instances signalled it); groups at 10 and 50 ms failed for a round trip of 60 ms, "less
    than twice 50 ms". The check is each round trip against its two ends' latencies: links
    asked for and not shaped (the 'none' backend) still fail."""
    comp = tmp_path / "mixed.toml"
    comp.write_text('[global]\nplan = "pingpong"\ncase = "ping"\ntotal_instances = 6\n'
                    'timeout = "60s"\n'
                    '[[groups]]\nid = "fast"\ninstances = { count = 2 }\n'
                    '[[groups]]\nid = "near"\ninstances = { count = 2 }\n'
                    '[groups.params]\nlatency = "10ms"\n'
                    '[[groups]]\nid = "far"\ninstances = { count = 2 }\n'
                    '[groups.params]\nlatency = "50ms"\n')
    r = harness_cli("run", "--composition", str(comp), "--runner", "local:netns",
                    "--outputs", str(tmp_path / "a"), "-q", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    monkeypatch.setenv("HARNESS_NETEM_BACKEND", "none")
    r = harness_cli("run", "pingpong", "-i", "2", "-p", "latency=20ms", "--runner",
                    "local:netns", "--outputs", str(tmp_path / "b"), "-q", timeout=120)
    assert r.returncode == 1 and "the links are not shaped" in r.stdout, r.stdout + r.stderr


def test_pingpong_200_instances(tmp_path: Path) -> None:
    """The example plan's top count on the default runner, every instance pinging 8 peers:
    more neighbours than the kernel's shared table learns (1024), and 200 processes on
    however few cores."""
    r = harness_cli("run", "pingpong", "-i", "200", "--runner", "local:netns",
                    "--outputs", str(tmp_path), "-q", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = json.loads((only_run_dir(tmp_path) / "run.json").read_text())
    assert sum(i["outcome"] == "passed" for i in run["instances"]) == 200


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_or_killed_run_leaves_the_host_as_it_was(
    make_plan: Callable[..., Path], tmp_path: Path, sig: signal.Signals
) -> None:
    root = make_plan("hang", HANG, HANG_CODE)
    before = host_network_state()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "hang:py", "--plans", str(root),
         "--runner", "local:netns", "--outputs", str(out), "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        shaped = 0
        while time.monotonic() < deadline and shaped < 3:
            time.sleep(0.2)
            for events in out.glob("*/events.jsonl"):
                shaped = sum('"state":"shaped"' in line for line in events.read_text().splitlines())
        assert shaped == 3, "instances did not come up"
        run_dir = only_run_dir(out)
        first = json.loads((run_dir / "network.jsonl").read_text().splitlines()[0])
        prefix = first["applied"]["prefix"]
        assert [n for n in _netns() if n.startswith(prefix)]
        ours = descendants(proc.pid)  # its process host and instances
        assert ours
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGKILL:
        # (what it removed is not asserted: another test's run, starting meanwhile, clears
        # a dead run's leftovers too; test_doctor checks what clean prints)
        r = harness_cli("clean", "--outputs", str(out))
        assert r.returncode == 0, r.stderr
        assert f"marked run {run_dir.name} aborted" in r.stdout, r.stdout
    else:
        assert code == 130
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [n for n in _netns() if n.startswith(prefix)]:
        time.sleep(0.2)
    assert not [n for n in _netns() if n.startswith(prefix)]
    assert host_network_state() == before
    assert not [pid for pid in ours if alive(pid)]


def test_spacemesh_start_on_its_defaults(tmp_path: Path) -> None:
    """The main job: PoET, a gateway and 4 miners in namespaces over 50 ms links, in at
    most a minute; its logs tell the story (nodes started, ATXs published, layers verified)."""
    wall = time.monotonic()
    r = harness_cli("run", "spacemesh:start", "--outputs", str(tmp_path), "-q", timeout=240)
    wall = time.monotonic() - wall
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout.splitlines()[0], f"({wall:.1f} s wall)")
    assert wall <= 60, f"spacemesh:start took {wall:.1f} s, over the 60 s limit"
    run_dir = only_run_dir(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["runner"] == "local:netns" and len(run["instances"]) == 6
    assert sorted(i["role"] for i in run["instances"]) == ["gateway"] + ["miner"] * 4 + ["poet"]
    logs = check_run_logs(run_dir, target=8)  # the plan's default `layers`
    # Readable: per layer and per epoch, not per message (8 layers, 3 epochs here).
    assert max(len(records) for records in logs.values()) < 100


def test_spacemesh_poet_unreachable_by_a_drop_rule_fails_and_says_why(tmp_path: Path) -> None:
    """On local:netns "unreachable" is a drop rule towards the PoETs (not a closed port)."""
    r = harness_cli("run", "spacemesh:start", "-i", "3", "-p", "layers=4",
                    "-p", "layer_duration=1s", "-p", "genesis_offset=3s",
                    "-p", "poet_unreachable=true", "--outputs", str(tmp_path), "-q")  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    run_dir = only_run_dir(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["runner"] == "local:netns" and summary["outcome"] == "failed"
    (miner,) = [f for f in summary["failures"] if f["instance"] == "single/2"]
    assert "miner published no ATX in epoch 0" in miner["reason"]
    assert "PoET 198.1" in miner["reason"] and "unreachable" in miner["reason"]
    assert "unreachable" in summary["reason"] and "unreachable" in r.stdout
    (warned,) = [x for x in run_logs(run_dir)["single/2"] if x["event"] == "poet unreachable"]
    assert warned["level"] == "warning" and warned["poet"].endswith(":7000")


def test_spacemesh_20_instances_over_jittery_lossy_links(tmp_path: Path) -> None:
    r = harness_cli("run", "spacemesh:start", "-i", "20", "-p", "latency=100ms",
                    "-p", "jitter=10ms", "-p", "loss=1", "--outputs", str(tmp_path), "-q",
                    timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout.splitlines()[0])


def test_a_long_outputs_path_leaves_no_socket_directory_behind(tmp_path: Path) -> None:
    """Unix socket paths are short: with a long outputs path the sockets go to a temporary
    directory, which must go with the run."""
    import tempfile

    outputs = tmp_path / ("x" * 100)
    r = harness_cli("run", "pingpong", "-i", "2", "--runner", "local:netns",
                    "--outputs", str(outputs), "-q")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    # its own, by name: other runs (pytest-xdist's other worker) make and remove theirs
    sock_dir = Path(json.loads((only_run_dir(outputs) / "run.json").read_text())["sock_dir"])
    assert sock_dir.parent == Path(tempfile.gettempdir()) and sock_dir.name.startswith("harness-")
    assert not sock_dir.exists()


SYNC_TCP_PLAN = """
import os
from harness import sdk

async def ok(env):
    got = os.environ.get("TEST_SYNC_TCP")
    if bool(got) != (env.runner == "local:exec"):
        raise sdk.TestFailure(f"TEST_SYNC_TCP={got!r} on {env.runner}")
"""


@pytest.mark.parametrize("runner", ["local:exec", "local:netns"])
def test_sync_tcp_is_given_only_to_instances_that_can_reach_it(
    make_plan: Callable[[str, str, str], Path], tmp_path: Path, runner: str,
) -> None:
    """A local:netns instance got the host's loopback address, which in its own namespace
    is its own: connecting was refused, and the run said only "exit code 1"."""
    manifest = ('name = "tcp"\n[[testcases]]\nname = "ok"\n'
                'instances = { min = 1, max = 2, default = 2 }\nentrypoint = "tcp.plan:ok"\n')
    plans = make_plan("tcp", manifest, SYNC_TCP_PLAN)
    r = harness_cli("run", "tcp", "--plans", str(plans), "--runner", runner, "-q",
                    "--sync-tcp", "127.0.0.1:0", "--outputs", str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_run_directory_holds_only_its_groups_and_the_files_group_ids_may_not_take(
    tmp_path: Path,
) -> None:
    """A group may not be named like a file of the run's own (plans._checks.RUN_DIR_FILES):
    this keeps that list whole as runs write new files."""
    from harness.plans._checks import RUN_DIR_FILES

    r = harness_cli("run", "pingpong", "-i", "2", "--runner", "local:netns", "-q",
                    "--outputs", str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = only_run_dir(tmp_path)
    names = {p.name for p in run_dir.iterdir()} - {"single"}
    assert names <= RUN_DIR_FILES, names - RUN_DIR_FILES
    assert {"run.json", "report.html", "network.jsonl"} <= names
