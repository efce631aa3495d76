"""Manifests: written before anything exists, naming an owner whose death marks leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netem import _names as names
from netem._cleanup import _manifest as manifests


@pytest.fixture
def manifest_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "netem"
    monkeypatch.setattr(names, "MANIFEST_DIR", str(where))
    return where


def test_write_read_remove(manifest_dir: Path) -> None:
    written = manifests.write("tq1", "198.18.0.0/15")
    data = json.loads((manifest_dir / "tq1.json").read_text())
    assert data["pid"] == os.getpid() and data["subnet"] == "198.18.0.0/15"
    assert list(manifests.read_all()) == [written]
    assert written.owner_alive()
    assert manifests.remove("tq1")
    assert not manifest_dir.exists()  # the empty directory goes too
    assert not manifests.remove("tq1")


def test_directory_stays_while_others_live(manifest_dir: Path) -> None:
    manifests.write("tq1", "198.18.0.0/15")
    manifests.write("tq2", "198.18.0.0/15")
    manifests.remove("tq1")
    assert sorted(os.listdir(manifest_dir)) == ["tq2.json"]


def test_dead_owner(manifest_dir: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = manifests.Manifest("tq3", int(child.stdout), "123", 0.0, "198.18.0.0/15")
    assert not dead.owner_alive()
    reused = manifests.Manifest("tq3", os.getpid(), "1", 0.0, "198.18.0.0/15")
    assert not reused.owner_alive()  # same pid, other start time: not the owner


def test_unreadable_manifest_is_reported_by_prefix(manifest_dir: Path) -> None:
    manifest_dir.mkdir()
    (manifest_dir / "tq4.json").write_text("{not json")
    (manifest_dir / "notes.txt").write_text("ignored")
    assert list(manifests.read_all()) == ["tq4"]


def test_process_start_handles_odd_command_names(tmp_path: Path) -> None:
    odd = tmp_path / "a b) (c"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import time; time.sleep(5)"])
    try:
        start = manifests.process_start(child.pid)
        assert start is not None and start.isdigit()
    finally:
        child.kill()
        child.wait()
    assert manifests.process_start(child.pid) is None


def test_a_killed_process_not_yet_waited_for_is_not_running() -> None:
    """A SIGKILLed supervisor stays a zombie until its parent waits for it: `harness clean`
    then took it for alive and left its namespaces (a second clean removed them)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert manifests.process_start(child.pid) is not None
        child.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.01)
        assert manifests.process_start(child.pid) is None  # not waited for: still a zombie
    finally:
        child.kill()
        child.wait()


def test_an_owner_in_another_pid_namespace_cannot_be_told_alive_or_dead() -> None:
    """Its pid is of its own namespace: here it names another process, or none. A run under
    `unshare --pid` took the host's runs for dead, and they took it for dead."""
    mine = manifests.pid_namespace()
    assert mine is not None
    start = manifests.process_start(os.getpid())
    assert start is not None
    assert manifests.owner_alive(os.getpid(), start, mine) is True
    assert manifests.owner_alive(os.getpid(), "1", mine) is False
    assert manifests.owner_alive(os.getpid(), start, mine + 1) is None
    assert manifests.owner_alive(999999999, "1", mine + 1) is None  # no such pid here
    assert manifests.owner_alive(os.getpid(), start, None) is True  # an older record: ours
    assert manifests.owner_alive(999999999, "1", None) is False


def test_a_manifest_names_its_owners_pid_namespace_and_older_ones_still_read(
    manifest_dir: Path,
) -> None:
    written = manifests.write("tq5", "198.18.0.0/15")
    data = json.loads((manifest_dir / "tq5.json").read_text())
    assert data["pid_ns"] == os.stat("/proc/self/ns/pid").st_ino == written.pid_ns
    del data["pid_ns"]  # as versions before it wrote them: judged as today
    (manifest_dir / "tq6.json").write_text(json.dumps({**data, "prefix": "tq6"}))
    # a key this version does not know (a newer one's) is no reason to take it for dead
    (manifest_dir / "tq7.json").write_text(json.dumps({**data, "prefix": "tq7", "new": 1}))
    (manifest_dir / "tq8.json").write_text(json.dumps({**data, "prefix": "tq8", "pid_ns": "x"}))
    found = list(manifests.read_all())
    assert [m if isinstance(m, str) else m.prefix for m in found] == ["tq5", "tq6", "tq7", "tq8"]
    assert all(not isinstance(m, str) and m.owner_alive() is True for m in found[:3])
    assert found[3] == "tq8"  # damaged: unreadable (removed as a dead owner's), not "cannot tell"


def test_cleanup_leaves_a_network_whose_owner_is_in_another_pid_namespace(
    manifest_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netem import _cleanup

    monkeypatch.setattr(names, "NETNS_DIR", str(tmp_path / "netns"))  # no real namespace
    other = (manifests.pid_namespace() or 0) + 1
    manifest_dir.mkdir()
    for prefix, pid_ns in (("tq8", other), ("tq9", None)):
        record = {"prefix": prefix, "pid": 999999999, "pid_start": "1", "created": 0.0,
                  "subnet": "198.18.0.0/15", "pid_ns": pid_ns}
        (manifest_dir / f"{prefix}.json").write_text(json.dumps(record))
    assert [m.prefix for m in _cleanup.left_alone()] == ["tq8"]
    assert _cleanup.cleanup() == [str(manifest_dir / "tq9.json")]  # dead, and ours to judge
    assert sorted(os.listdir(manifest_dir)) == ["tq8.json"]
    assert manifests.holder("tq8") is not None  # its prefix stays taken
