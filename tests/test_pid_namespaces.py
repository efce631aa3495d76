"""Owners of another PID namespace: a run.json supervisor, a netem manifest or a cgroup claim
written under `unshare --pid` (or in a container sharing /run and the outputs) names a pid of
its own namespace, so a reader of another one cannot tell whether it lives: it leaves it
alone, and says so (docs/harness.md, "A supervisor that is killed")."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from harness._liveness import cannot_tell, identity, mark_aborted, supervisor_alive
from harness.observe import load_run
from netem._cleanup._manifest import pid_namespace

from .conftest import ROOT
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`harness show` from the host marked a run under `unshare --pid` aborted and removed
    its sync socket while it ran."""
    run_dir = make_run(tmp_path / "out", FixtureSpec(ended=False))
    orphan(run_dir)
    _supervised_by(run_dir, pid_ns=OTHER_NS)
    monkeypatch.chdir(run_dir)  # a relative name: pytest's tmp_path can be longer than
    with socket.socket(socket.AF_UNIX) as sock:  # a socket's path may be (108 bytes)
        sock.bind("sync.sock")
        assert not mark_aborted(run_dir, "test")
    run = load_run(run_dir)
    assert run.outcome == "running" and (run_dir / "sync.sock").exists()
    assert cannot_tell(run) == ("running in another PID namespace (cannot tell from here: "
                                f"its supervisor's pid {run.supervisor.pid} is of that namespace)")  # type: ignore[union-attr]
    _supervised_by(run_dir, pid_ns=None)  # written by an older version: judged as before
    assert cannot_tell(load_run(run_dir)) is None
    assert mark_aborted(run_dir, "test")


def test_show_and_clean_say_why_they_leave_a_run_of_another_pid_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import netem
    from harness import _cgroup
    from harness._cli import main
    from harness._commands import clean
    from netem import _names

    out = tmp_path / "out"
    run_dir = make_run(out, FixtureSpec(ended=False))
    orphan(run_dir)
    _supervised_by(run_dir, pid_ns=OTHER_NS)
    record = orjson.loads((run_dir / "run.json").read_bytes())
    (run_dir / "run.json").write_bytes(orjson.dumps({**record, "network": {"prefix": "tq1"}}))
    assert main(["show", str(run_dir)]) == 0
    shown = capsys.readouterr().out
    assert "RUNNING" in shown and "running in another PID namespace (cannot tell" in shown

    monkeypatch.setattr(_names, "MANIFEST_DIR", str(tmp_path / "netem"))
    monkeypatch.setattr(_names, "NETNS_DIR", str(tmp_path / "netns"))
    monkeypatch.setattr(_cgroup, "OWNERS", tmp_path / "owners")
    for owner, name in ((_cgroup, "cleanup"), (clean, "remove_stale_sockets")):
        monkeypatch.setattr(owner, name, lambda *_: [])
    (tmp_path / "netem").mkdir()
    (tmp_path / "owners").mkdir()
    for prefix in ("tq1", "tq2"):  # tq2: a network of a run whose outputs are elsewhere
        (tmp_path / "netem" / f"{prefix}.json").write_text(json.dumps(
            {"prefix": prefix, "pid": 1, "pid_start": "1", "created": 0.0,
             "subnet": "198.18.0.0/15", "pid_ns": OTHER_NS}))
    (tmp_path / "owners" / f"harness-{record['run_id']}").write_text(f"1 1\npid_ns {OTHER_NS}\n")
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # netem.cleanup() of the fake directories
    assert main(["clean", "--outputs", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"left run {record['run_id']} alone (its record, network tq1, cgroups): running in "
        f"another PID namespace (cannot tell from here: its supervisor's pid "
        f"{record['supervisor']['pid']} is of that namespace)",
        "left network tq2 alone: its owner (pid 1) runs in another PID namespace (cannot "
        "tell from here whether it lives)",
        "nothing to remove"]
    assert sorted(os.listdir(tmp_path / "netem")) == ["tq1.json", "tq2.json"]
    assert netem.cleanup() == []
    assert load_run(run_dir).outcome == "running"


# -- live: a real PID namespace on either side ---------------------------------------------

RECORDS = """
import socket, sys
from pathlib import Path
import orjson
from harness import _cgroup as cg
from harness._liveness import identity
from netem import _names as names
from netem._cleanup import _manifest as manifests
from tests.observe._fixture import FixtureSpec, make_run

where = Path(sys.argv[1])
names.MANIFEST_DIR, cg.OWNERS = str(where / "netem"), where / "owners"
run_dir = make_run(where / "out", FixtureSpec(ended=False))
record = orjson.loads((run_dir / "run.json").read_bytes())
record.update(outcome="running", ended=None, exit_code=None, network={"prefix": "tq1"},
              supervisor=identity().to_json())
(run_dir / "run.json").write_bytes(orjson.dumps(record))
manifests.write("tq1", "198.18.0.0/15")
cg._claim("harness-" + record["run_id"], [])
with socket.socket(socket.AF_UNIX) as sock:
    sock.bind(str(run_dir / "sync.sock"))
    sock.listen()
    print(record["run_id"], flush=True)
    sys.stdin.read()  # alive until the test is done with it
"""
"""The owner: writes a live run's records (run.json, a netem manifest, a cgroup claim, a
listening sync.sock) under the directory given, and lives until its stdin closes."""

JUDGE = """
import sys
from pathlib import Path
from harness import _cgroup as cg, _supervisor
from harness._cli import main
from netem import _names as names

where = Path(sys.argv[1])
names.MANIFEST_DIR, names.NETNS_DIR = str(where / "netem"), str(where / "netns")
cg.OWNERS = where / "owners"
cg.hierarchies = lambda *_, **__: {}  # only the claims under `where`: no cgroup of this machine


def sweep_only(self):
    # The run's start-up clean-up of cgroups, and no group of its own: one would be this
    # machine's, claimed under `where` alone, and another run's clean-up would remove it.
    _supervisor.cgroup_cleanup()


_supervisor.Supervisor._make_cgroups = sweep_only
for command in sys.argv[2:]:
    print(f"$ harness {command}", flush=True)
    if main(command.split()):
        sys.exit(f"harness {command} failed")
"""
"""Another run's start-up and `harness clean` (the same sweeps), then `harness show`, over
the records under the directory given only: the network namespaces and cgroups of this
machine are never looked at (with the code before the PID namespace was recorded, a judge in
a namespace of its own took every live network here for dead)."""

OK_PLAN = """
name = "ok"
[[testcases]]
name = "ok"
instances = { min = 1, max = 1, default = 1 }
entrypoint = "ok.plan:ok"
"""

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


@pytest.fixture
def where() -> Iterator[Path]:
    """A short directory (AF_UNIX paths are short) for the records, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="pidns", dir="/tmp"))
    for sub in ("netem", "netns", "owners"):
        (path / sub).mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _unshare_problem() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare"
    tried = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True)
    return None if tried.returncode == 0 else f"unshare --pid fails here: {tried.stderr.strip()}"


@pytest.mark.live
@pytest.mark.parametrize("owner_inside", [True, False], ids=["owner-in-unshare", "judge-in-unshare"])
def test_a_live_owner_of_another_pid_namespace_is_left_alone(
    where: Path, make_plan: Callable[..., Path], owner_inside: bool
) -> None:
    """Under `unshare --pid --fork --mount-proc`, and seen from outside (or the reverse): the
    run, its network and its cgroups were taken for a dead owner's and removed, the run
    marked aborted."""
    problem = _unshare_problem()
    if problem:
        pytest.skip(problem)
    plans = make_plan("ok", OK_PLAN, "async def ok(env):\n    pass\n")
    inside = UNSHARE if owner_inside else []
    owner = subprocess.Popen([*inside, sys.executable, "-c", RECORDS, str(where)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        run_id = owner.stdout.readline().strip()
        assert run_id, "the owner wrote no records"
        judged = subprocess.run(
            [*([] if owner_inside else UNSHARE), sys.executable, "-c", JUDGE, str(where),
             f"clean --outputs {where / 'out'}",
             f"run ok:ok --plans {plans} --runner local:exec --outputs {where / 'out'} -q",
             f"show {where / 'out' / run_id}"],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        said = judged.stdout + judged.stderr
        assert judged.returncode == 0, said
        run_dir = where / "out" / run_id
        assert json.loads((run_dir / "run.json").read_text())["outcome"] == "running", said
        assert (run_dir / "sync.sock").exists(), said
        assert (where / "netem" / "tq1.json").exists(), said
        assert (where / "owners" / f"harness-{run_id}").exists(), said
        assert (f"left run {run_id} alone (its record, network tq1, cgroups): running in "
                "another PID namespace") in said
        assert "running in another PID namespace (cannot tell" in said.split("$ harness show")[1]
    finally:
        owner.communicate(timeout=30)  # its stdin closed: it ends


NO_MOUNT_PROC = ["unshare", "--pid", "--fork", "--kill-child"]

PROC_CHECKS = """
import sys
from harness._cli import main
import netem
try:
    netem.cleanup()
except netem.NetemError as e:
    print(f"netem: {e}")
try:
    with netem.Network(prefix="tq9") as net:
        net.build(1)
except netem.NetemError as e:
    print(f"netem: {e}")
for argv in (["clean", "--outputs", sys.argv[1]],
             ["run", "ok:ok", "--plans", sys.argv[2], "--runner", "local:exec",
              "--outputs", sys.argv[1], "-q"]):
    print("exit", main(argv))
"""


@pytest.mark.live
def test_a_pid_namespace_without_its_own_proc_is_refused_in_one_line(
    where: Path, make_plan: Callable[..., Path]
) -> None:
    """Under `unshare --pid` without `--mount-proc`, /proc is the host's: a run recorded
    itself as pid 1 (the host's init there, never dead) with init's start time, so its
    leftovers were never cleaned, and a pid read in /proc names another process here."""
    problem = _unshare_problem()
    if problem:
        pytest.skip(problem)
    plans = make_plan("ok", OK_PLAN, "async def ok(env):\n    pass\n")
    done = subprocess.run([*NO_MOUNT_PROC, sys.executable, "-c", PROC_CHECKS,
                           str(where / "out"), str(plans)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    errors = [line for line in done.stderr.splitlines() if line.startswith("harness:")]
    why = ("/proc is another PID namespace's (it numbers this process {pid}, not 1): mount "
           "one for this namespace (unshare --pid --fork --mount-proc)")
    host_pid = lines[0].split("numbers this process ")[1].split(",")[0] if lines else "?"
    assert lines == [f"netem: cannot clean up networks here: {why.format(pid=host_pid)}",
                     f"netem: cannot own a network here: {why.format(pid=host_pid)}",
                     "exit 3", "exit 3"], done.stdout + done.stderr
    assert errors == [f"harness: error: {why.format(pid=host_pid)}"] * 2, done.stderr
    assert not (where / "out").exists()  # nothing written
