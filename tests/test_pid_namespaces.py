"""Owners of another PID namespace: a run.json supervisor, a netem manifest or a cgroup claim
written under `unshare --pid` (or in a container sharing /run and the outputs) names a pid of
its own namespace, so a reader of another one cannot tell whether it lives: it leaves it
alone, and says so (docs/harness.md, "A supervisor that is killed")."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import orjson

from harness._liveness import cannot_tell, identity, mark_aborted, supervisor_alive
from harness.observe import load_run
from netem._cleanup._manifest import pid_namespace

from .observe._fixture import FixtureSpec, make_run, orphan

OTHER_NS = (pid_namespace() or 0) + 1
"""A PID namespace that is not this process's."""


def _supervised_by(run_dir: Path, **supervisor: object) -> None:
    """Make run.json's supervisor the one orphan() left (gone), with `supervisor`'s fields."""
    record = orjson.loads((run_dir / "run.json").read_bytes())
    record["supervisor"].update(supervisor)
    (run_dir / "run.json").write_bytes(orjson.dumps(record))


def test_a_supervisor_of_another_pid_namespace_cannot_be_judged() -> None:
    me = identity()
    assert me.pid_ns == os.stat("/proc/self/ns/pid").st_ino
    assert supervisor_alive(me) is True
    gone = dataclasses.replace(me, pid=999999999)
    assert supervisor_alive(gone) is False
    assert supervisor_alive(dataclasses.replace(gone, pid_ns=OTHER_NS)) is None
    assert supervisor_alive(dataclasses.replace(me, pid_ns=OTHER_NS)) is None
    assert supervisor_alive(dataclasses.replace(gone, pid_ns=None)) is False  # older record
    assert supervisor_alive(dataclasses.replace(me, pid_ns=None)) is True
    rebooted = dataclasses.replace(gone, pid_ns=OTHER_NS, boot_id="another boot")
    assert supervisor_alive(rebooted) is False  # a reboot ended every namespace's processes


def test_a_run_of_another_pid_namespace_is_not_marked_aborted_nor_its_socket_removed(
    tmp_path: Path,
) -> None:
    """`harness show` from the host marked a run under `unshare --pid` aborted and removed
    its sync socket while it ran."""
    run_dir = make_run(tmp_path / "out", FixtureSpec(ended=False))
    orphan(run_dir)
    _supervised_by(run_dir, pid_ns=OTHER_NS)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(run_dir / "sync.sock"))
        assert not mark_aborted(run_dir, "test")
    run = load_run(run_dir)
    assert run.outcome == "running" and (run_dir / "sync.sock").exists()
    assert cannot_tell(run) == ("running in another PID namespace (cannot tell from here: "
                                f"its supervisor's pid {run.supervisor.pid} is of that namespace)")  # type: ignore[union-attr]
    _supervised_by(run_dir, pid_ns=None)  # written by an older version: judged as before
    assert cannot_tell(load_run(run_dir)) is None
    assert mark_aborted(run_dir, "test")
