"""`harness run` as an unprivileged user: it re-executes itself into a user namespace and
runs on local:netns there, shaping included (issue: rootless)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import _cgroup as cg

from .conftest import ROOT, free_port, only_run_dir

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user, unlike a root-owned pyenv

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.geteuid() != 0, reason="switching to an unprivileged user needs root"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing"),
    pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason=f"{SYSTEM_PYTHON} missing"),
]


@pytest.fixture(scope="module")
def world_readable_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project installed where the user `nobody` can run it."""
    venv = tmp_path_factory.mktemp("rootless") / "venv"
    made = subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a venv with {SYSTEM_PYTHON} (python3-venv?): {made.stderr}")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], check=True,
                   capture_output=True, timeout=600)
    for path in [venv, *venv.parents]:
        if path == Path("/"):
            break
        path.chmod(path.stat().st_mode | 0o755)
    subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
    return venv


def test_run_as_nobody_reexecs_into_a_user_namespace(
    world_readable_venv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    tmp_path.chmod(0o755)
    # A root run goes on meanwhile: its cgroups are not the rootless run's to remove (it
    # tried, and died of it, when the two overlapped).
    live = cg.RunCgroups("live-" + secrets.token_hex(3))
    try:
        live_dirs = list(live.group("single/0").dirs.values())
    except cg.CgroupError:
        live_dirs = []
    seen: set[str] = set()  # the host's namespaces while it ran
    try:
        proc = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env",
             "HOME=/tmp", str(world_readable_venv / "bin" / "python"), "-m", "harness", "run",
             "pingpong", "-i", "3", "-p", "latency=10ms", "--outputs", str(out), "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/tmp",
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ended = proc.poll() is not None
            seen.update(os.listdir("/run/netns") if os.path.isdir("/run/netns") else [])
            if ended:  # (listed once more after it ended)
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]  # a few lines: -q
        assert proc.returncode == 0, output
        assert all(d.is_dir() for d in live_dirs)
    finally:
        live.remove()
    run_dir = only_run_dir(out)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["runner"] == "local:netns"  # not the local:exec fallback
    assert run["network"]["backend"] in ("userspace", "kernel")
    # pingpong itself fails an instance whose fastest ping beat 2 x 10 ms: shaping worked.
    # Everything lived in the private namespaces: none of its own was ever in the host's list.
    assert not [n for n in seen if n.startswith(run["network"]["prefix"])]


def test_rootless_endpoints_are_on_the_users_network(
    world_readable_venv: Path, tmp_path: Path, make_plan: Callable[..., Path]
) -> None:
    """The aggregated /metrics and the sync service's TCP port of a rootless run listen in
    the user's network namespace (sockets bound before the re-exec), not in the run's own."""
    from tests.test_run_observe import CODE, MANIFEST, work_done_during

    root = make_plan("metered", MANIFEST, CODE.replace("trio.sleep(3)", "trio.sleep(6)"))
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    tmp_path.chmod(0o755)
    metrics_port, sync_port = free_port(), free_port()
    proc = subprocess.Popen(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/tmp",
         str(world_readable_venv / "bin" / "python"), "-m", "harness", "run", "metered",
         "--plans", str(root), "--runner", "local:netns", "--outputs", str(out), "-q",
         "--metrics-listen", f"127.0.0.1:{metrics_port}", "--sync-tcp", f"127.0.0.1:{sync_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/tmp",
    )  # fmt: skip
    try:
        answer: list[bytes] = []

        def probe_sync() -> None:  # the run is up: its sync service answers a bad frame too
            with socket.create_connection(("127.0.0.1", sync_port), timeout=5) as s:
                s.sendall(b"not json\n")
                answer.append(s.makefile("rb").readline())

        seen = work_done_during(proc, metrics_port, once_up=probe_sync)
        assert answer and b"error" in answer[0], answer
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stdout + stderr
        assert seen == {"single/0": 1.0, "single/1": 2.0}
        run = json.loads((only_run_dir(out) / "run.json").read_text())
        assert run["runner"] == "local:netns"
        assert run["metrics_url"] == f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()



def test_the_reexec_runs_python_as_it_was_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m harness run` re-executed `python .../harness/__main__.py run`: a script,
    whose path holds harness/ and not the checkout (ModuleNotFoundError where the project
    is not installed, or the installed copy's code instead of the checkout's)."""
    import sys

    from netem import _rootless

    class Execed(Exception):
        pass

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        raise Execed(argv)

    monkeypatch.delenv(_rootless.MARKER, raising=False)
    monkeypatch.setattr(_rootless, "rootless_problem", lambda: None)
    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(sys, "orig_argv", ["python3.11", "-X", "dev", "-m", "harness", "run", "x"])
    with pytest.raises(Execed) as e:
        _rootless.reexec_in_userns()
    assert e.value.args[0][-7:] == [sys.executable, "-X", "dev", "-m", "harness", "run", "x"]
