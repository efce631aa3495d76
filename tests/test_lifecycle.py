"""A run's lifecycle at its edges: a signal during set-up, the shaping engine dying mid-run,
the supervisor itself killed (docs/harness.md, "The supervisor")."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import harness
from harness._errors import single_cause
from harness._latesignal import signal_name
from harness._liveness import mark_aborted_runs
from harness.plans import build_run_spec

from .conftest import ROOT, alive, descendants, harness_cli, only_run_dir
from .test_latesignal import SAMPLE

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="local:netns needs root")

HANG = """
name = "hang"
[[testcases]]
name = "py"
instances = { min = 1, max = 50, default = 3 }
entrypoint = "hang.plan:forever"
[[testcases]]
name = "shaped_for"
instances = { min = 1, max = 50, default = 2 }
entrypoint = "hang.plan:shaped_for"
params = { seconds = { type = "int", default = 6 } }
[[testcases]]
name = "sleep"
instances = { min = 1, max = 50, default = 3 }
entrypoint = "hang.plan:sleep"
[[testcases]]
name = "ok"
instances = { min = 1, max = 50, default = 1 }
entrypoint = "hang.plan:ok"
[[testcases]]
name = "stubborn"
instances = { min = 1, max = 50, default = 2 }
program = ["sh", "-c", "trap '' TERM INT HUP; while :; do sleep 0.1; done"]
"""
HANG_CODE = """
import trio

async def forever(env):
    await env.network.configure({"latency_ms": 5})
    await env.sync.signal_entry("shaped")
    await trio.sleep(1000)

async def shaped_for(env):
    await env.network.configure({"latency_ms": 5})
    await env.sync.signal_entry("shaped")
    await trio.sleep(int(env.params["seconds"]))

async def sleep(env):
    await trio.sleep(1000)

async def ok(env):
    pass
"""


def _start(root: Path, out: Path, case: str, *args: str,
           runner: str = "local:netns", env: dict[str, str] | None = None,
           ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", f"hang:{case}", "--plans", str(root),
         "--runner", runner, "--outputs", str(out), "-q", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own process group, as a shell's job: see `to`
    )  # fmt: skip


@contextmanager
def _reaped(proc: subprocess.Popen[str]) -> Iterator[None]:
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_for(what: str, found: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"{what}: not seen within {timeout} s")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _owned_prefix(pid: int) -> str | None:
    """The prefix of the network whose manifest names `pid` as its owner, once it exists."""
    try:
        entries = os.listdir("/run/netem")
    except FileNotFoundError:
        return None
    for entry in entries:
        try:
            manifest = json.loads(Path("/run/netem", entry).read_text())
        except (OSError, ValueError):
            continue
        if manifest.get("pid") == pid:
            return str(manifest["prefix"])
    return None


def _netns(prefix: str) -> list[str]:
    try:
        return [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    except FileNotFoundError:
        return []


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


# -- 7: a signal during set-up ----------------------------------------------------------


def _moment(name: str, proc: subprocess.Popen[str], out: Path) -> Callable[[], Any]:
    """When to send the signal: as soon as the run directory exists, while the network is
    being built (its manifest names the supervisor), or while the process host starts."""
    if name == "run-dir":
        return lambda: list(out.glob("*/run.json"))
    if name == "network":
        return lambda: _owned_prefix(proc.pid)
    return lambda: [p for p in descendants(proc.pid) if "_forkserver" in _cmdline(p)]


@needs_root
@pytest.mark.live
@pytest.mark.parametrize("moment", ["run-dir", "network", "host"])
@pytest.mark.parametrize("sig", SAMPLE, ids=signal_name)
@pytest.mark.parametrize("to", ["pid", "group"])
def test_a_signal_during_set_up_starts_nothing_more_and_records_the_truth(
    make_plan: Callable[..., Path], tmp_path: Path, moment: str, sig: int, to: str
) -> None:
    """`to`: the supervisor alone, or its whole process group as Ctrl-C or a closed
    terminal signals it (then the tools building the network die of it too: an
    iptables-restore killed so was reported as a broken machine, exit 3)."""
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    proc = _start(root, out, "py", "-i", "20")
    seen: set[int] = set()
    with _reaped(proc):
        _wait_for(moment, _moment(moment, proc, out))
        prefix = _owned_prefix(proc.pid)
        seen |= descendants(proc.pid)
        if to == "group":
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= descendants(proc.pid)
            prefix = prefix or _owned_prefix(proc.pid)
            time.sleep(0.01)
        code = proc.wait(timeout=1)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 130, stderr
    assert "Traceback" not in stderr, stderr
    run_dir = only_run_dir(out)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["outcome"] == "interrupted" and run["exit_code"] == 130
    events = _events(run_dir)
    started = {e["instance"]: e["pid"] for e in events if e.get("status") == "started"}
    stopped = {e["instance"] for e in events if e.get("status") == "exited"}
    never = {e["instance"] for e in events if e.get("status") == "not started"}
    assert set(started) == stopped, "an instance started and was not seen to end"
    if moment != "host":  # before the process host exists, nothing may start at all
        assert not started, f"{len(started)} instances started after the signal"
    for inst in run["instances"]:
        if inst["id"] in started:  # the truth: started, with its pid, then stopped
            assert inst["pid"] == started[inst["id"]]
            assert inst["reason"] in ("interrupted", "interrupted; every thread's stack at "
                                      "the stop is in stderr.log"), inst
        else:
            assert inst["id"] in never and inst["pid"] is None, inst
            assert inst["reason"] == "not started (interrupted)", inst
    # nothing leaked: processes, namespaces, sockets
    time.sleep(0.2)
    assert not [p for p in seen if Path(f"/proc/{p}").exists() and _cmdline(p)], "processes left"
    if prefix is not None:
        assert not _netns(prefix), "namespaces left"
    assert not list(run_dir.glob("*.sock"))
    assert not Path(run["sock_dir"]).joinpath("sync.sock").exists()


def test_an_instance_that_ignores_sigterm_is_killed_and_its_end_recorded_when_interrupted(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """Its SIGKILL came as the run stopped waiting for it: run.json had no outcome for it
    and events.jsonl no exit."""
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    proc = _start(root, out, "stubborn", runner="local:exec")
    with _reaped(proc):
        _wait_for("both started", lambda: list(out.glob("*/events.jsonl")) and sum(
            e.get("status") == "started" for e in _events(only_run_dir(out))) == 2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    run_dir = only_run_dir(out)
    exits = {e["instance"]: e["exit_code"] for e in _events(run_dir)
             if e.get("status") == "exited"}
    assert exits == {"single/0": -9, "single/1": -9}
    run = json.loads((run_dir / "run.json").read_text())
    assert [(i["outcome"], i["reason"], i["exit_code"]) for i in run["instances"]] == [
        ("failed", "interrupted", -9)] * 2
    # The case's program, not null (which reads as the plan's entrypoint: the report said so)
    assert run["groups"][0]["program"][:2] == ["sh", "-c"]


def test_any_exception_ending_the_supervisor_ends_run_json_too(
    make_plan: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a HarnessError: a bug. run.json still records the end, never "running"."""
    root = make_plan("hang", HANG, HANG_CODE)
    spec = build_run_spec("hang:py", runner="local:exec", plan_roots=[root])

    class Broken:
        name = "local:exec"

        def deploy(self, *args: object) -> object:
            raise RuntimeError("a bug in the runner")

    monkeypatch.setattr("harness._supervisor.get_runner", lambda name: Broken())
    options = harness.RunOptions(outputs=tmp_path / "out", progress=False, metrics_listen=None)
    with pytest.raises(BaseException) as caught:
        harness.run(spec, options)
    assert str(single_cause(caught.value)) == "a bug in the runner"
    run = json.loads((only_run_dir(tmp_path / "out") / "run.json").read_text())
    assert run["outcome"] == "error"
    assert run["ended"] is not None
    assert run["reason"] == "the supervisor failed: RuntimeError: a bug in the runner"


@pytest.mark.parametrize("runner", [
    "local:exec", pytest.param("local:netns", marks=[needs_root, pytest.mark.live])])
def test_a_run_whose_directory_is_removed_stops_says_so_and_leaves_nothing(
    make_plan: Callable[..., Path], tmp_path: Path, runner: str
) -> None:
    """`rm -rf` of the run's directory mid-run: the writes that failed at once came out as
    a 160-line exception group, exit code 1."""
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    proc = _start(root, out, "sleep", runner=runner)
    with _reaped(proc):
        _wait_for("every instance running", lambda: len(
            [e for e in _events(only_run_dir(out)) if e.get("status") == "started"]) == 3
            if list(out.glob("*/events.jsonl")) else None)
        run_dir = only_run_dir(out)
        ours = descendants(proc.pid)
        prefix = _owned_prefix(proc.pid)
        shutil.rmtree(run_dir)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err  # (once, loaded, 1: what it said is the clue)
    assert err == (f"harness: error: the run's directory {run_dir} was removed during the run: "
                   "the run stopped and removed what it had created\n")
    assert not [pid for pid in ours if alive(pid)]
    assert prefix is None if runner == "local:exec" else not _netns(prefix)


# -- 8: the userspace shaping engine dies mid-run ----------------------------------------


def _engine_pid(run_dir: Path) -> int | None:
    """The process in the run's hub namespace: the userspace engine, once it runs."""
    from netem import _names as names
    from netem._build._ns import netns_inode, pids_in

    record = run_dir / "network.jsonl"
    if not record.exists() or not record.read_text():
        return None
    prefix = json.loads(record.read_text().splitlines()[0])["applied"]["prefix"]
    inode = netns_inode(names.hub_netns(prefix))
    pids = list(pids_in([inode])) if inode is not None else []
    return pids[0] if len(pids) == 1 else None


@needs_root
@pytest.mark.live
@pytest.mark.parametrize("allowed", [False, True])
def test_the_death_of_the_shaping_engine_is_recorded_and_fails_the_run_unless_allowed(
    make_plan: Callable[..., Path], tmp_path: Path, allowed: bool
) -> None:
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    args = ["-p", "seconds=6"] + (["--allow-unshaped"] if allowed else [])
    proc = _start(root, out, "shaped_for", *args, env={"HARNESS_NETEM_BACKEND": "userspace"})
    with _reaped(proc):
        run_dir = _wait_for("the run directory", lambda: list(out.glob("*/run.json")))[0].parent
        _wait_for("both instances shaped", lambda: sum(
            '"state":"shaped"' in line
            for line in (run_dir / "events.jsonl").read_text().splitlines()) == 2)
        engine = _wait_for("the engine", lambda: _engine_pid(run_dir))
        os.kill(engine, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    run = json.loads((run_dir / "run.json").read_text())
    died = "the userspace shaping engine died (SIGKILL) at "
    if allowed:
        assert proc.returncode == 0, stdout + stderr
        assert run["outcome"] == "passed"
        assert f"note: {died}" in stdout
    else:
        assert proc.returncode == 1, stdout + stderr
        assert run["outcome"] == "failed"
        assert run["reason"].startswith(died), run["reason"]
        assert run["reason"].endswith(": links passed unshaped from then on"), run["reason"]
        assert died in stdout
    # recorded either way: in the network's record, the events and run.json
    (line,) = [json.loads(ln) for ln in (run_dir / "network.jsonl").read_text().splitlines()
               if '"backend-failed"' in ln]
    assert line["op"] == "backend-failed"
    assert line["applied"]["pid"] == engine and line["applied"]["signal"] == "SIGKILL"
    (event,) = [e for e in _events(run_dir) if e.get("kind") == "network"]
    assert event["event"] == "backend-failed" and event["pid"] == engine
    assert event["allowed"] is allowed and event["message"].startswith(died)
    assert [e["message"] for e in run["network_events"]] == [event["message"]]
    shown = harness_cli("show", str(run_dir))
    assert shown.returncode == 0, shown.stderr
    assert died in shown.stdout


@needs_root
@pytest.mark.live
def test_a_fallback_to_the_python_shaping_engine_is_said_at_the_end_and_in_the_records(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    # an empty engine cache and no compiler: the C engine cannot be built
    env = {"HARNESS_NETEM_BACKEND": "userspace", "CC": "no-such-cc",
           "NETEM_USERSPACE_CACHE": str(tmp_path / "cache")}
    proc = _start(root, out, "shaped_for", "-p", "seconds=1", env=env)
    with _reaped(proc):
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr  # a note, not a failure
    (run_dir,) = [p.parent for p in out.glob("*/run.json")]
    run = json.loads((run_dir / "run.json").read_text())
    fallback = "shaping ran on the userspace engine's Python fallback"
    (event,) = run["network_events"]
    assert event["event"] == "backend-note" and event["message"].startswith(fallback)
    assert "no C compiler ('no-such-cc') found" in event["message"]
    assert f"note: {fallback}" in stdout
    (line,) = [json.loads(ln) for ln in (run_dir / "network.jsonl").read_text().splitlines()
               if '"backend-note"' in ln]
    assert line["applied"]["message"] == event["message"]
    shown = harness_cli("show", str(run_dir))
    assert shown.returncode == 0 and fallback in shown.stdout, shown.stdout + shown.stderr
    report = (run_dir / "report.html").read_text()
    assert f'<p class="alert"><b>{fallback}' in report.replace("&#x27;", "'")
    assert "this failed the run" not in report


# -- 9: the supervisor itself is killed ----------------------------------------------------


def _kill_supervisor_mid_run(root: Path, out: Path, runner: str) -> tuple[Path, dict[str, Any]]:
    proc = _start(root, out, "sleep", runner=runner)
    with _reaped(proc):
        run_dir = _wait_for("the run directory", lambda: list(out.glob("*/run.json")))[0].parent
        _wait_for("three instances", lambda: sum(
            e.get("status") == "started" for e in _events(run_dir)) == 3)
        run = json.loads((run_dir / "run.json").read_text())
        assert run["supervisor"]["pid"] == proc.pid
        assert (Path(run["sock_dir"]) / "sync.sock").exists()
        assert (run_dir / ".run.json.reserve").stat().st_size >= 1 << 20
        proc.kill()
        proc.wait()
    return run_dir, run


def _assert_aborted(run_dir: Path, before: dict[str, Any]) -> None:
    run = json.loads((run_dir / "run.json").read_text())
    assert run["outcome"] == "aborted"
    # It ended, as far as anyone knows, at its last sign of life: the last line of
    # events.jsonl (flushed every half second), telemetry.jsonl (a sample a second) or
    # faults.jsonl, else run.json's last_seen (refreshed every 5 s).
    last = [json.loads(f.read_text().splitlines()[-1])["ts"] for f in
            (run_dir / name for name in ("events.jsonl", "telemetry.jsonl", "faults.jsonl"))
            if f.exists() and f.read_text().strip()]
    assert run["ended"] == max(before["last_seen"], *last)
    assert "last seen" in run["reason"]
    assert not (Path(before["sock_dir"]) / "sync.sock").exists()
    assert not (Path(before["sock_dir"]) / "relay.sock").exists()
    assert not Path(before["sock_dir"]).exists() or Path(before["sock_dir"]) == run_dir
    assert not (run_dir / ".run.json.reserve").exists()
    shown = harness_cli("show", str(run_dir))
    assert shown.returncode == 0, shown.stderr
    assert "still running" not in shown.stdout
    assert "ABORTED" in shown.stdout and "last seen" in shown.stdout
    # Nothing of it is left outside its directory: its clocks, its instances' cgroups.
    assert not list(Path("/dev/shm").glob(f"*{run_dir.name}*"))
    if os.geteuid() == 0:
        from harness import _cgroup

        assert not [h.base() / f"harness-{run_dir.name}" for h in _cgroup.hierarchies().values()
                    if (h.base() / f"harness-{run_dir.name}").exists()]


TICKS = """
name = "ticks"
[defaults]
runner = "local:exec"
[[testcases]]
name = "tick"
instances = { min = 1, max = 4, default = 2 }
program = ["sh", "-c", "while :; do date +%s; sleep 0.2; done"]
"""


@pytest.mark.alone  # the next run removes every dead run's clocks: no other test's may be
def test_a_killed_supervisors_clocks_go_even_once_its_outputs_are_deleted(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """Its programs' libfaketime objects in /dev/shm were found through its run record
    only: with the outputs deleted before `harness clean`, they stayed for good."""
    root = make_plan("ticks", TICKS, "")
    faults = tmp_path / "faults.toml"
    faults.write_text('[[faults]]\nat = "200s"\naction = "skew"\noffset = "5s"\n'
                      'targets = { group = "single" }\n')
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "ticks:tick", "--plans", str(root),
         "--faults", str(faults), "--outputs", str(out), "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _reaped(proc):
        run_dir = _wait_for("the run directory", lambda: list(out.glob("*/run.json")))[0].parent
        _wait_for("two instances", lambda: sum(
            e.get("status") == "started" for e in _events(run_dir)) == 2)
        shm = Path("/dev/shm")
        made = {p.name for p in shm.glob(f"*harness-ft-{run_dir.name}*")}
        assert made == {f"{s}harness-ft-{run_dir.name}-{i}" for s in ("", "sem.")
                        for i in range(2)} | {f"harness-ft-{run_dir.name}.lock"}, made
        r = harness_cli("clean", "--outputs", str(tmp_path / "elsewhere"))
        assert r.returncode == 0, r.stderr
        assert {p.name for p in shm.glob(f"*harness-ft-{run_dir.name}*")} == made  # alive
        proc.kill()
        proc.wait()
    shutil.rmtree(out)
    r = harness_cli("clean", "--outputs", str(tmp_path / "elsewhere"))
    assert r.returncode == 0, r.stderr
    assert not list(Path("/dev/shm").glob(f"*harness-ft-{run_dir.name}*"))
    assert f"removed /dev/shm/harness-ft-{run_dir.name}-0" in r.stdout.splitlines()


@needs_root
@pytest.mark.live
@pytest.mark.parametrize("long_path", [False, True])
def test_a_killed_supervisors_run_is_marked_aborted_by_harness_clean(
    make_plan: Callable[..., Path], tmp_path: Path, long_path: bool
) -> None:
    root = make_plan("hang", HANG, HANG_CODE)
    # A long outputs path puts the sockets in a temporary directory (AF_UNIX paths are
    # short). The short one is made short: tmp_path may be long already (pytest-xdist).
    out = tmp_path / ("o" * 90) if long_path else Path(tempfile.mkdtemp(prefix="o", dir="/tmp"))
    try:
        run_dir, before = _kill_supervisor_mid_run(root, out, "local:netns")
        assert (Path(before["sock_dir"]) == run_dir) is not long_path
        after_kill = json.loads((run_dir / "run.json").read_text())
        assert after_kill["outcome"] == "running"  # nobody has looked yet
        r = harness_cli("clean", "--prefix", before["network"]["prefix"], "--outputs", str(out))
        assert r.returncode == 0, r.stderr
        assert f"marked run {run_dir.name} aborted" in r.stdout
        _assert_aborted(run_dir, before)
    finally:
        if not long_path:
            shutil.rmtree(out, ignore_errors=True)


def test_a_killed_supervisors_run_is_marked_aborted_by_the_next_run(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    run_dir, before = _kill_supervisor_mid_run(root, out, "local:exec")
    assert json.loads((run_dir / "run.json").read_text())["outcome"] == "running"
    r = harness_cli("run", "hang:ok", "--plans", str(root), "--runner", "local:exec",
                    "--outputs", str(out), "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    _assert_aborted(run_dir, before)


def test_a_live_run_is_not_marked_aborted(make_plan: Callable[..., Path], tmp_path: Path) -> None:
    """The check is of the supervisor's process, not of how old `last_seen` is."""
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    proc = _start(root, out, "sleep", runner="local:exec")
    with _reaped(proc):
        run_dir = _wait_for("the run directory", lambda: list(out.glob("*/run.json")))[0].parent
        _wait_for("three instances", lambda: sum(
            e.get("status") == "started" for e in _events(run_dir)) == 3)
        r = harness_cli("show", str(run_dir))
        assert "still running" in r.stdout, r.stdout + r.stderr
        assert json.loads((run_dir / "run.json").read_text())["outcome"] == "running"
    mark_aborted_runs(out, "test")  # its sockets: the supervisor was SIGKILLed


@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns needs root")
def test_a_live_run_json_names_its_instances_pids_and_addresses_once_they_started(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """They came with the first `last_seen` refresh, up to 5 s after the start: `harness show`
    of a live run had neither."""
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    proc = _start(root, out, "sleep")
    with _reaped(proc):
        run_dir = _wait_for("the run directory", lambda: list(out.glob("*/run.json")))[0].parent
        _wait_for("three instances", lambda: sum(
            e.get("status") == "started" for e in _events(run_dir)) == 3)
        started = time.monotonic()

        def recorded() -> list[dict[str, Any]]:
            found = json.loads((run_dir / "run.json").read_text())["instances"]
            return found if all(i.get("pid") and i.get("ip") for i in found) else []

        instances = _wait_for("pids and addresses in run.json", recorded, timeout=10)
        assert time.monotonic() - started < 2, "recorded only by the 5 s refresh"
        assert all(i["ip"].startswith("198.18.") for i in instances), instances
    mark_aborted_runs(out, "test")


def test_a_damaged_records_socket_directory_is_not_removed(tmp_path: Path) -> None:
    """Only a directory the supervisor made for its sockets goes with them."""
    from harness._liveness import remove_sockets

    victim = tmp_path / "victim_empty"
    victim.mkdir()
    remove_sockets(tmp_path / "run", str(victim))
    assert victim.is_dir()
    made = Path(tempfile.mkdtemp(prefix="harness-"))
    remove_sockets(tmp_path / "run", str(made))
    assert not made.exists()


def test_clean_marks_dead_runs_aborted_even_when_a_removal_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cgroup that would not go ended `harness clean` before it marked anything: the
    dead run stayed "running" in the history, however often clean was run."""
    from harness import _cgroup
    from harness._cli import main
    from tests.observe._fixture import FixtureSpec, make_run, orphan

    run_dir = make_run(tmp_path / "out", FixtureSpec(ended=False))
    orphan(run_dir)

    def busy(*_: object) -> list[Path]:
        raise _cgroup.CgroupError("cannot remove cgroup /sys/fs/cgroup/cpu/harness-x: still busy")

    monkeypatch.setattr(_cgroup, "cleanup", busy)
    code = main(["clean", "--outputs", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == (3 if os.geteuid() == 0 else 0)
    assert f"marked run {run_dir.name} aborted" in out
    assert json.loads((run_dir / "run.json").read_text())["outcome"] == "aborted"
    if os.geteuid() == 0:
        assert err == ("harness: error: clean-up failed: cannot remove cgroup "
                       "/sys/fs/cgroup/cpu/harness-x: still busy\n")


def test_clean_that_only_marked_a_run_does_not_say_nothing_was_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "marked run ... aborted", then "nothing to remove"."""
    import netem
    from harness import _cgroup
    from harness._cli import main
    from harness._commands import clean
    from tests.observe._fixture import FixtureSpec, make_run, orphan

    run_dir = make_run(tmp_path / "out", FixtureSpec(ended=False))
    orphan(run_dir)
    for owner, name in ((netem, "cleanup"), (_cgroup, "cleanup"), (clean, "remove_stale_sockets")):
        monkeypatch.setattr(owner, name, lambda *_: [])
    assert main(["clean", "--outputs", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"marked run {run_dir.name} aborted"), out
    assert "nothing to remove" not in out


def test_instances_that_passed_before_the_supervisor_died_stay_passed(tmp_path: Path) -> None:
    """Killed in the run's tear-down, the supervisor had not written their outcomes:
    `harness clean` marked every one "failed: aborted with the supervisor", though
    events.jsonl held each one's success and clean exit."""
    from harness._liveness import mark_aborted
    from tests.observe._fixture import FixtureSpec, make_run, orphan

    run_dir = make_run(tmp_path / "out", FixtureSpec(ended=False, failed=(1,)))
    events = run_dir / "events.jsonl"
    kept = [line for line in events.read_text().splitlines()
            if not ('"single/3"' in line and '"exited"' in line)]  # single/3 still ran
    events.write_text("\n".join(kept) + "\n")
    orphan(run_dir)
    assert mark_aborted(run_dir, "test")
    run = json.loads((run_dir / "run.json").read_text())
    assert run["outcome"] == "aborted"
    assert [(i["id"], i["outcome"], i["reason"], i["exit_code"]) for i in run["instances"]] == [
        ("single/0", "passed", None, 0),
        ("single/1", "failed", "aborted with the supervisor", None),
        ("single/2", "passed", None, 0),
        ("single/3", "failed", "aborted with the supervisor", None)]
    assert all(i["ended"] for i in run["instances"][::2])


@pytest.mark.parametrize("killed", [True, False], ids=["killed", "alive"])
def test_the_reserve_of_an_ended_run_whose_supervisor_was_killed_is_removed(
    tmp_path: Path, killed: bool
) -> None:
    """A supervisor killed between recording the run's end and letting go of the space it
    kept for it left that MiB for good: the run had ended, so nothing read it again."""
    from harness._liveness import identity, mark_aborted
    from harness.observe._runrecord import RESERVE_FILE
    from tests.observe._fixture import FixtureSpec, make_run

    run_dir = make_run(tmp_path / "out", FixtureSpec(ended=True))
    record = json.loads((run_dir / "run.json").read_text())
    who = identity().to_json()
    if killed:
        proc = subprocess.Popen(["true"])
        proc.wait()
        who.update(pid=proc.pid, start_ticks=1)
    record["supervisor"] = who
    (run_dir / "run.json").write_text(json.dumps(record))
    (run_dir / RESERVE_FILE).write_bytes(bytes(1 << 20))
    assert not mark_aborted(run_dir, "test")  # an ended run is not marked
    assert (run_dir / RESERVE_FILE).exists() is not killed
    assert json.loads((run_dir / "run.json").read_text()) == record


def test_a_clean_killed_midway_leaves_the_run_to_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marked "aborted" first, a run whose clean was killed before it removed the rest
    kept its sockets and control token for good: every later clean saw an ended run."""
    from harness import _liveness
    from harness._control import CONTROL_FILE
    from tests.observe._fixture import FixtureSpec, make_run, orphan

    run_dir = make_run(tmp_path / "out", FixtureSpec(ended=False))
    orphan(run_dir)
    (run_dir / CONTROL_FILE).write_text("token")

    def killed(*_: object) -> None:
        raise KeyboardInterrupt  # the clean dies here

    monkeypatch.setattr(_liveness, "remove_token", killed)
    with pytest.raises(KeyboardInterrupt):
        _liveness.mark_aborted(run_dir, "test")
    assert json.loads((run_dir / "run.json").read_text())["outcome"] == "running"
    monkeypatch.undo()
    assert _liveness.mark_aborted(run_dir, "test")  # the next clean
    assert not (run_dir / CONTROL_FILE).exists()
    assert json.loads((run_dir / "run.json").read_text())["outcome"] == "aborted"


def test_an_instance_s_end_is_on_disk_once_recorded(tiny: Path, tmp_path: Path) -> None:
    """events.jsonl was flushed only with the progress line (every 2 s): a supervisor
    killed meanwhile left an instance that had passed "failed: aborted with the
    supervisor" once `harness clean` had read it."""
    from harness._liveness import _read_events
    from harness._supervisor import RunOptions, Supervisor
    from harness.observe import JsonlWriter

    sup = Supervisor(build_run_spec("tiny", instances=2, plan_roots=[tiny]), RunOptions())
    sup._events = JsonlWriter(tmp_path / "events.jsonl", flush_each=False)
    sup.record({"kind": "event", "instance": "single/0", "type": "success"})
    sup.record({"kind": "event", "instance": "single/1", "type": "success"})
    sup.record({"kind": "instance", "instance": "single/0", "status": "exited", "exit_code": 0})
    passed, _ = _read_events(tmp_path)  # as another process reads it: from the file
    assert set(passed) == {"single/0"}  # single/1 has not exited yet


@needs_root
@pytest.mark.live
@pytest.mark.alone  # the next run removes every dead run's network: no other test's may be
def test_the_next_netns_run_removes_a_killed_runs_network_and_says_so(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    """It removed them without a word (only supervisor.jsonl knew)."""
    root = make_plan("hang", HANG, HANG_CODE)
    out = tmp_path / "out"
    run_dir, before = _kill_supervisor_mid_run(root, out, "local:netns")
    prefix = before["network"]["prefix"]
    assert _netns(prefix)
    r = harness_cli("run", "hang:ok", "--plans", str(root), "--outputs", str(out), "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "harness: removed what earlier, killed runs left: " in r.stderr
    assert f"{prefix}-" in r.stderr
    assert not _netns(prefix)
    _assert_aborted(run_dir, before)


def test_clean_removes_killed_runs_socket_directories_and_nothing_else(tmp_path: Path) -> None:
    """A run SIGKILLed with its sockets in the temporary directory (its own path too long
    for AF_UNIX) left them there for ever: `harness clean` and the next run only looked at
    the runs of their own outputs."""
    from harness._liveness import STALE_AFTER_S, remove_stale_sockets

    old = time.time() - STALE_AFTER_S - 1
    listening: list[socket.socket] = []

    def made(name: str, *, listen: bool = False, age: float = old, extra: str | None = None) -> Path:
        where = tmp_path / f"harness-{name}"
        where.mkdir()
        for sock_name in ("sync.sock", "relay.sock"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(where / sock_name))
            if listen:
                sock.listen()
                listening.append(sock)
            else:
                sock.close()  # the file stays, nobody listens: a killed run's
            os.utime(where / sock_name, (age, age), follow_symlinks=False)
        if extra:
            (where / extra).write_text("")
        return where

    dead = made("dead")
    live = made("live", listen=True)
    young = made("young", age=time.time())
    other = made("other", extra="notes.txt")
    empty = tmp_path / "harness-empty"  # a run between mkdtemp and bind
    empty.mkdir()
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    try:
        assert remove_stale_sockets(tmp_path) == [dead]
    finally:
        for sock in listening:
            sock.close()
    assert not dead.exists()
    assert all(p.is_dir() for p in (live, young, other, empty, elsewhere))
    assert (other / "sync.sock").exists() and (live / "sync.sock").exists()


@pytest.mark.parametrize("file", ["telemetry.jsonl", "faults.jsonl"])
def test_a_killed_runs_end_is_its_last_sign_of_life_in_any_of_its_records(
    tmp_path: Path, file: str
) -> None:
    """A quiet run writes no event for long, and `last_seen` is refreshed every 5 s: one
    killed 4.5 s in read "last seen 0.7 s into the run", though its telemetry and a fault
    it played at 3.7 s showed it alive later."""
    from harness._liveness import mark_aborted
    from tests.observe._fixture import FixtureSpec, make_run, orphan

    run_dir = make_run(tmp_path / "out", FixtureSpec(ended=False))
    orphan(run_dir)
    before = json.loads((run_dir / "run.json").read_text())
    last_event = max(json.loads(line)["ts"] for line in
                     (run_dir / "events.jsonl").read_text().splitlines())
    later = max(last_event, before.get("last_seen") or 0, before["started"]) + 30.0
    with (run_dir / file).open("a") as f:
        f.write(json.dumps({"ts": later - 1, "mono": 1.0, "kind": "cpu"}) + "\n")
        f.write(json.dumps({"ts": later, "mono": 2.0, "kind": "cpu"}) + "\n")
        f.write('{"ts": 9999999999.0, "kind": "cp')  # killed mid-line: not a whole record
    assert mark_aborted(run_dir, "test")
    run = json.loads((run_dir / "run.json").read_text())
    assert run["ended"] == later
    assert f"{later - before['started']:.1f} s into the run" in run["reason"]
