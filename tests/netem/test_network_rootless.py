"""Live: netem inside a user + network + mount namespace, as `reexec_in_userns` sets it up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import networkx
import pyroute2
import pytest

import netem
from netem import NetworkError

ROOT = Path(__file__).resolve().parents[2]

# Re-executes itself into a user namespace, then builds, pings, partitions and closes.
CHILD = """
import os, subprocess, sys
import netem
if netem.needs_userns() or os.environ.get("FORCE_USERNS") == "1" and netem._rootless.MARKER not in os.environ:
    netem.reexec_in_userns([sys.executable, "-c", sys.argv[1], sys.argv[1]])
uid_map = open("/proc/self/uid_map").read().split()
print("uid_map", " ".join(uid_map), flush=True)
with netem.Network(backend="none") as net:
    print("prefix", net.prefix, flush=True)
    h1, h2 = net.build(2)
    # Three tries: the first may wait for ARP on a loaded machine; 0 = a reply was heard.
    ping = ["nsenter", f"--net={h1.netns_path}", "ping", "-c3", "-i0.2", "-W1", str(h2.ip)]
    print("ping", subprocess.run(ping, capture_output=True).returncode, flush=True)
    net.partition([h1], [h2])
    print("cut", subprocess.run(ping, capture_output=True).returncode, flush=True)
print("left", sorted(os.listdir("/run/netns")), flush=True)
"""


def run_child(
    prefix_cmd: list[str], env: dict[str, str], python: str = sys.executable
) -> dict[str, str]:
    proc = subprocess.run(
        [*prefix_cmd, python, "-c", CHILD, CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


@pytest.mark.live
def test_build_inside_a_user_namespace() -> None:
    """As root, forced through the same re-exec a normal user gets: inside, root is mapped
    to root but holds privileges only over the new namespaces."""
    problem = netem.rootless_problem()
    if problem is not None:
        pytest.skip(problem)
    if os.geteuid() != 0:
        pytest.skip("the unprivileged case is the next test")
    out = run_child([], {"FORCE_USERNS": "1"})
    assert out["uid_map"] != "0 0 4294967295"  # a user namespace, not the initial one
    assert out["ping"] == "0" and out["cut"] != "0"
    assert out["left"] == "[]"  # its /run is a private tmpfs, and was emptied
    # Built behind a private /run: nothing of it was ever in the real /run/netns.
    assert not [n for n in os.listdir("/run/netns") if n.startswith(out["prefix"])]


def _python_for(drop: list[str], pythonpath: str) -> str | None:
    """An interpreter the dropped user can run netem with, or None."""
    for python in ("/usr/bin/python3", sys.executable):
        probe = subprocess.run(
            [
                *drop,
                python,
                "-c",
                "import sys, pyroute2, netem; assert sys.version_info >= (3, 11)",
            ],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": pythonpath},
            check=False,
        )
        if probe.returncode == 0:
            return python
    return None


@pytest.mark.live
def test_build_as_an_unprivileged_user() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become the user nobody")
    problem = netem.rootless_problem()
    if problem is not None:
        pytest.skip(problem)
    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    # The test's own packages may sit where nobody cannot read (e.g. under /root): give it
    # readable copies of pyroute2 and networkx (pure Python).
    shelf = tempfile.mkdtemp(prefix="netem-rootless-")
    try:
        os.chmod(shelf, 0o755)
        for package in (pyroute2, networkx):  # what `import netem` needs beyond stdlib
            source = Path(package.__file__ or "").parent
            shutil.copytree(source, Path(shelf) / source.name)
        pythonpath = f"{ROOT}:{shelf}"
        python = _python_for(drop, pythonpath)
        if python is None:
            pytest.skip("user nobody has no Python 3.11+ that can import pyroute2 and netem")
        out = run_child(drop, {"PYTHONPATH": pythonpath}, python)
    finally:
        shutil.rmtree(shelf)
    assert out["uid_map"].split()[:2] == ["0", "65534"]  # root inside is nobody outside
    assert out["ping"] == "0" and out["cut"] != "0"
    assert out["left"] == "[]"
    assert not [n for n in os.listdir("/run/netns") if n.startswith(out["prefix"])]


def test_reexec_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETEM_IN_USERNS", raising=False)
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n: None if n == "unshare" else real(n))
    with pytest.raises(NetworkError, match=r"cannot run without root: unshare not found"):
        netem.reexec_in_userns(["true"])


def test_reexec_refuses_a_second_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETEM_IN_USERNS", "1")
    with pytest.raises(NetworkError, match="already re-executed"):
        netem.reexec_in_userns(["true"])


def test_userns_command_shape() -> None:
    cmd = netem._rootless.userns_command(["prog", "arg"])
    assert cmd[1:8] == [
        "--user",
        "--map-root-user",
        "--net",
        "--mount",
        "--propagation",
        "private",
        "--",
    ]
    assert cmd[-3:] == ["netem-userns", "prog", "arg"]
    assert "mount -t tmpfs" in cmd[10]


def test_build_without_root_says_how(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    net = netem.Network(backend="none", record=tmp_path / "r.jsonl")
    with pytest.raises(NetworkError, match="building a network needs root; ") as info:
        net.build(2)
    assert "reexec_in_userns" in str(info.value) or "user namespaces cannot" in str(info.value)
    assert not os.path.exists(f"/run/netem/{net.prefix}.json")
    assert net.hosts == []
