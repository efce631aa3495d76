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
