"""Per-instance cgroups: which hierarchy serves what, and live freeze, CPU and memory limits."""

from __future__ import annotations

import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from harness import _cgroup as cg
from netem._rootless import MARKER
from tests.conftest import IN_KERNEL_VM, alive

HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = "6:freezer:/\n4:memory:/box/1\n1:cpu:/\n0::/\n"
UNIFIED_MOUNTS = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_a_hybrid_machine_uses_each_v1_controller_where_it_is_mounted() -> None:
    found = cg.hierarchies(HYBRID_MOUNTS, HYBRID_CGROUP)
    assert found["memory"] == cg.Hierarchy(1, Path("/sys/fs/cgroup/memory"),
                                           Path("/sys/fs/cgroup/memory/box/1"))
    assert found["cpu"].version == 1 and found["freezer"].version == 1


def test_a_unified_machine_uses_v2_for_what_it_offers(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mounts = UNIFIED_MOUNTS.replace("/sys/fs/cgroup", str(tmp_path))
    found = cg.hierarchies(mounts, "0::/\n")
    assert {c: h.version for c, h in found.items()} == {"cpu": 2, "memory": 2, "freezer": 2}


def test_v2_freezes_without_a_controller_but_offers_nothing_else_unlisted(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")
    found = cg.hierarchies(UNIFIED_MOUNTS.replace("/sys/fs/cgroup", str(tmp_path)), "0::/\n")
    assert set(found) == {"freezer"}
    groups = cg.RunCgroups("x", found)
    assert groups.missing("memory") == ("no cgroup hierarchy on this machine offers the "
                                        "memory controller")


def test_v2_withholds_the_controllers_a_cgroup_holding_processes_cannot_give(
    tmp_path: Path,
) -> None:
    """A container's cgroup namespace: its root is a v2 cgroup that holds processes, so the
    run's groups below it can freeze but get no CPU or memory controller (and are told why)."""
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("\n")
    (tmp_path / "cgroup.procs").write_text("1\n7\n")
    (tmp_path / "cgroup.type").write_text("domain\n")  # not the hierarchy's root
    mounts = UNIFIED_MOUNTS.replace("/sys/fs/cgroup", str(tmp_path))
    assert set(cg.hierarchies(mounts, "0::/\n")) == {"freezer"}
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")  # given already: usable
    assert set(cg.hierarchies(mounts, "0::/\n")) == {"freezer", "memory"}
    (tmp_path / "cgroup.type").unlink()  # the hierarchy's root may hold processes
    assert set(cg.hierarchies(mounts, "0::/\n")) == {"freezer", "memory", "cpu"}


# -- live ------------------------------------------------------------------------------------

@pytest.mark.skipif(not IN_KERNEL_VM, reason="only the kernel VM is known to be cgroup v2 only")
def test_in_the_kernel_vm_cgroup_v2_serves_every_controller() -> None:
    """The VM mounts only cgroup2: the live tests below then test v2, nothing else."""
    assert {c: h.version for c, h in cg.hierarchies().items()} == {
        "cpu": 2, "memory": 2, "freezer": 2}
    assert Path("/proc/self/cgroup").read_text().startswith("0::/")
    assert len(Path("/proc/self/cgroup").read_text().splitlines()) == 1  # no v1 hierarchy

live = pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root")


@pytest.fixture
def groups() -> Iterator[cg.RunCgroups]:
    run = cg.RunCgroups("test-" + secrets.token_hex(3))
    yield run
    run.remove()
    assert not any((h.base() / run.name).exists() for h in run.serving.values()), (
        "remove() left groups")


def _spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _need(groups: cg.RunCgroups, controller: str) -> int:
    """Skip unless `controller` can be used; its hierarchy's version (2 in the kernel VM)."""
    if (why := groups.missing(controller)) is not None:
        assert not IN_KERNEL_VM, why
        pytest.skip(why)
    version = groups.serving[controller].version
    assert version == 2 or not IN_KERNEL_VM
    return version


COUNTER = """
import os, time
n = 0
while True:
    n += 1
    with open({path!r} + ".new", "w") as f:
        f.write(str(n))
    os.replace({path!r} + ".new", {path!r})  # frozen at any point, the count stays readable
    time.sleep(0.005)
"""


def _count(path: Path) -> int:
    deadline = time.monotonic() + 30  # an emulated VM starts Python in seconds
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} never written")


@live
def test_a_frozen_group_makes_no_progress_until_thawed(groups: cg.RunCgroups,
                                                       tmp_path: Path) -> None:
    _need(groups, "freezer")
    counter = tmp_path / "n"
    proc = _spawn(COUNTER.format(path=str(counter)))
    try:
        group = groups.group("single/1")
        group.add(proc.pid)
        assert proc.pid in group.pids()
        _count(counter)
        group.freeze()
        assert group.frozen()
        before = _count(counter)
        time.sleep(0.3)
        assert _count(counter) == before, "a frozen process went on counting"
        group.thaw()
        assert not group.frozen()
        deadline = time.monotonic() + 30
        while _count(counter) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _count(counter) > before, "a thawed process did not resume"
    finally:
        proc.kill()
        proc.wait()


@live
def test_a_memory_limit_kills_a_hog_inside_the_group(groups: cg.RunCgroups) -> None:
    _need(groups, "memory")
    group = groups.group("hog/1")
    group.set_memory(64 * 2**20)
    # The hog waits for its move into the group before it allocates (a pipe says when).
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c",
         f"import os; os.read({read}, 1); b = [bytearray(2**20) for _ in range(400)]"],
        pass_fds=(read,))
    group.add(proc.pid)
    os.write(write, b"x")
    assert proc.wait(timeout=60) == -9, "the hog was not OOM-killed inside its group"
    assert group.oom_kills() >= 1  # what tells an OOM kill from another SIGKILL
    os.close(read)
    os.close(write)


@live
def test_a_memory_limit_may_fall_rise_and_be_lifted_in_any_order(groups: cg.RunCgroups) -> None:
    """On v1 the memory+swap limit must stay at or above the memory limit: a limit set
    back to a looser one (overlapping limit faults) was refused (EINVAL)."""
    _need(groups, "memory")
    group = groups.group("limits/0")
    for limit in (64 * 2**20, 16 * 2**20, 64 * 2**20, None, 32 * 2**20, None):
        group.set_memory(limit)
        path = group.dirs["memory"]
        name = "memory.limit_in_bytes" if group.versions["memory"] == 1 else "memory.max"
        text = (path / name).read_text().strip()
        assert (text in ("max", str(2**63 - 4096)) or int(text) > 2**60 if limit is None
                else int(text) == limit), (limit, text)


@live
def test_a_memory_limit_below_what_the_group_holds_is_said_so(groups: cg.RunCgroups,
                                                               tmp_path: Path) -> None:
    """cgroup v1 refuses such a limit when it cannot reclaim: the fault failed with the raw
    "Device or resource busy" of memory.limit_in_bytes. (v2 takes it and OOM-kills.)"""
    if _need(groups, "memory") != 1:
        pytest.skip("cgroup v2 takes a limit below the usage (and OOM-kills)")
    group = groups.group("held/1")
    ready = tmp_path / "ready"
    read, write = os.pipe()  # it allocates once in the group: charged to it
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import os, time; os.read({read}, 1); b = b'x' * (64 << 20);"
         f"open({str(ready)!r}, 'w').close(); time.sleep(600)"], pass_fds=(read,))
    try:
        group.add(proc.pid)
        os.write(write, b"x")
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        try:
            group.set_memory(2**20)
        except cg.CgroupError as e:
            assert "memory limit 1048576 bytes is below what held/1 uses now" in str(e), e
        else:
            pytest.skip("the kernel reclaimed it (swap): no refusal to word")
    finally:
        proc.kill()
        proc.wait()
        os.close(read)
        os.close(write)


@live
def test_a_cpu_quota_caps_a_busy_loop(groups: cg.RunCgroups) -> None:
    _need(groups, "cpu")
    group = groups.group("busy/1")
    group.set_cpu(0.2)
    proc = _spawn("while True: pass")
    try:
        group.add(proc.pid)
        # In the emulated VM a preempted vCPU's time is charged to what ran on it: one late
        # stall can push a window over, so there the median of five windows counts.
        shares = []
        for _ in range(5 if IN_KERNEL_VM else 1):
            start_cpu, start = _cpu_s(proc.pid), time.monotonic()
            time.sleep(1.5)
            shares.append((_cpu_s(proc.pid) - start_cpu) / (time.monotonic() - start))
        share = statistics.median(shares)
        assert share < 0.35, f"a loop capped at 0.2 CPU used {shares}"
        assert _throttled(group) > 0, "the quota never throttled the loop"
        # Lifted: the kernel throttles it no more, however busy the machine is.
        group.set_cpu(None)
        time.sleep(0.2)
        before = _throttled(group)
        time.sleep(1.0)
        assert _throttled(group) == before, "the lifted quota still throttled the loop"
    finally:
        proc.kill()
        proc.wait()


def _throttled(group: cg.InstanceCgroup) -> int:
    """How many CFS periods the group was throttled in (cpu.stat, v1 and v2 alike)."""
    stat = (group.dirs["cpu"] / "cpu.stat").read_text().split()
    return int(stat[stat.index("nr_throttled") + 1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@live
def test_remove_kills_what_is_left_even_frozen_and_leaves_nothing(groups: cg.RunCgroups) -> None:
    _need(groups, "freezer")
    group = groups.group("left/1")
    proc = _spawn("import time; time.sleep(600)")
    group.add(proc.pid)
    group.freeze()
    dirs = list(group.dirs.values())
    groups.remove()
    assert proc.wait(timeout=10) == -9
    assert not any(d.exists() for d in dirs)


@live
def test_kill_reaches_every_process_of_the_group_but_those_spared(groups: cg.RunCgroups) -> None:
    """A child in a session of its own and a daemon (its shell gone) are outside the process
    group a signal reaches: the group's kill takes them too, and spares what it is told to
    (a hog's busy loop, stopped while its instance is down), which stays stopped."""
    group = groups.group("kill/1")
    spared = subprocess.Popen(["sleep", "600"])
    tree = subprocess.Popen(["sh", "-c", "read go; setsid sleep 600 & "
                                         "sh -c 'setsid sleep 600 &'; exec sleep 600"],
                            stdin=subprocess.PIPE, start_new_session=True)
    try:
        os.kill(spared.pid, signal.SIGSTOP)
        group.add(spared.pid)
        group.add(tree.pid)  # before it forks: its children follow it
        assert tree.stdin is not None
        tree.stdin.write(b"go\n")
        tree.stdin.close()
        # settled: the inner shell has forked the daemon and exited (then the tree execs
        # sleep), leaving the tree, its child and the daemon
        deadline = time.monotonic() + 30
        while not (_comm(tree.pid) == "sleep" and len(group.pids()) == 4) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.01)
        started = set(group.pids()) - {spared.pid}
        assert len(started) == 3 and tree.pid in started, started
        group.kill(spare=[spared.pid])
        assert group.pids() == [spared.pid]
        assert tree.wait(timeout=10) == -signal.SIGKILL
        assert not any(alive(pid) for pid in started)
        assert Path(f"/proc/{spared.pid}/stat").read_text().rsplit(") ", 1)[1][0] == "T"
        group.kill()
        assert spared.wait(timeout=10) == -signal.SIGKILL and not group.pids()
    finally:
        for proc in (spared, tree):
            proc.kill()
            proc.wait()


@live
def test_a_dead_runs_groups_are_removed_by_its_run_id() -> None:
    run = cg.RunCgroups("dead-" + secrets.token_hex(3))
    proc = _spawn("import time; time.sleep(600)")
    run.group("single/0").add(proc.pid)
    removed = cg.remove_run(run.name.removeprefix("harness-"))
    assert removed and not any(p.exists() for p in removed)
    assert proc.wait(timeout=10) == -9, "its process outlived its group"


def _v2_group(groups: cg.RunCgroups) -> Path:
    """Skip unless v2 serves the memory controller; the unified hierarchy's mount."""
    if _need(groups, "memory") != 2:
        pytest.skip("the memory controller is not on cgroup v2 here")
    return groups.serving["memory"].mount


@live
def test_v2_below_a_cgroup_holding_processes_freezes_and_says_why_it_cannot_limit(
    groups: cg.RunCgroups, tmp_path: Path,
) -> None:
    """As in a container whose cgroup namespace's root holds its processes."""
    mount = _v2_group(groups)
    busy = mount / f"test-busy-{secrets.token_hex(3)}"
    busy.mkdir()
    sleeper = _spawn("import time; time.sleep(600)")
    run: cg.RunCgroups | None = None
    try:
        (busy / "cgroup.procs").write_text(str(sleeper.pid))
        found = cg.hierarchies(f"30 23 0:26 / {busy} rw - cgroup2 cgroup2 rw\n", "0::/\n")
        assert set(found) == {"freezer"} and found["freezer"].base() == busy
        run = cg.RunCgroups("test-" + secrets.token_hex(3))
        run.serving, run.withheld = cg._find(  # this machine, seen from inside `busy`
            f"30 23 0:26 / {busy} rw - cgroup2 cgroup2 rw\n", "0::/\n")
        assert "holds processes" in (run.missing("memory") or "")
        group = run.group("single/0")
        with pytest.raises(cg.CgroupError, match="holds processes"):
            group.set_memory(2**26)
        counter = tmp_path / "n"
        proc = _spawn(COUNTER.format(path=str(counter)))
        group.add(proc.pid)
        _count(counter)
        group.freeze()
        before = _count(counter)
        time.sleep(0.3)
        assert _count(counter) == before, "a frozen process went on counting"
        run.remove()
        assert proc.wait(timeout=10) == -9
    finally:
        if run is not None:
            run.remove()
        sleeper.kill()
        sleeper.wait()
        busy.rmdir()



@live
def test_cleanup_removes_the_groups_of_dead_owners_only(groups: cg.RunCgroups) -> None:
    mine = groups.group("single/0")  # this process owns it: alive
    dead = cg.RunCgroups("dead-" + secrets.token_hex(3))
    proc = _spawn("import time; time.sleep(600)")
    dead.group("single/0").add(proc.pid)  # while still ours: nobody's clean-up takes it yet
    orphan = cg.RunCgroups("orphan-" + secrets.token_hex(3))
    orphan.group("single/0")
    (cg.OWNERS / dead.name).write_text("999999999 1")  # a supervisor that is gone
    (cg.OWNERS / orphan.name).unlink()  # never said who owned it
    removed = {p.name for p in cg.cleanup()}
    # What is gone, not what this call returned: another test's run, starting meanwhile,
    # cleans up too (tests run side by side).
    assert groups.name not in removed
    for gone in (dead, orphan):
        assert not [d for d in gone.groups["single/0"].dirs.values() if d.exists()], gone.name
    assert proc.wait(timeout=10) == -9, "a process outlived its dead run's group"
    assert all(d.exists() for d in mine.dirs.values())
    assert not (cg.OWNERS / dead.name).exists()


@live
def test_remove_waits_for_all_groups_at_once_not_one_group_after_another(
    groups: cg.RunCgroups, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 1,000 instances a wait per group that still held a process added up to seconds."""
    procs = []
    for i in range(6):
        group = groups.group(f"many/{i}")
        procs.append(_spawn("import time; time.sleep(600)"))
        group.add(procs[-1].pid)
    waits: list[float] = []
    real_sleep = cg.time.sleep

    def sleep(s: float) -> None:
        waits.append(s)
        real_sleep(s)

    monkeypatch.setattr(cg.time, "sleep", sleep)
    groups.remove()
    assert all(p.wait(timeout=10) == -9 for p in procs)
    # one pass: the kills of all six groups share their waits (in the emulated VM, six
    # Pythons' exits can take long enough for any count of short waits)
    assert IN_KERNEL_VM or len(waits) < 6, waits


def test_cleanup_leaves_alone_what_it_may_not_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rootless run is "root" only in its user namespace: a dead run's group whose
    processes belong to the real root cannot be emptied, and must not end this run."""
    (tmp_path / (cg._PREFIX + "20261129-000000-dead00")).mkdir()

    def refused(path: Path) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(cg, "remove_tree", refused)
    h = cg.Hierarchy(version=1, mount=tmp_path, own=tmp_path)
    assert cg.cleanup({"cpu": h}) == []


def test_a_rootless_run_cleans_up_no_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rootless run does not see OWNERS (a tmpfs on /run), so every root run's groups
    looked dead to it: it tried to remove a live run's groups, and failed on them."""
    (tmp_path / (cg._PREFIX + "20261203-000000-other0") / "single-0").mkdir(parents=True)
    tried: list[Path] = []
    monkeypatch.setattr(cg, "remove_tree", tried.append)
    h = cg.Hierarchy(version=1, mount=tmp_path, own=tmp_path)
    monkeypatch.setenv(MARKER, "1")
    assert cg.cleanup({"cpu": h}) == [] and tried == []
    monkeypatch.delenv(MARKER)  # the same, outside: its owner is unknown, removed
    assert [p.name for p in cg.cleanup({"cpu": h})] == [cg._PREFIX + "20261203-000000-other0"]


@live
def test_remove_takes_empty_groups_at_once_and_kills_only_in_busy_ones(
    groups: cg.RunCgroups, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a run's end nearly every group is empty: those are removed without thawing,
    killing or reading their processes; a busy one still has its process killed."""
    busy = groups.group("ends/busy")
    for i in range(3):
        groups.group(f"ends/{i}")
    proc = _spawn("import time; time.sleep(600)")
    busy.add(proc.pid)
    read: list[Path] = []
    real_procs = cg._procs

    def procs(paths: Iterable[Path]) -> set[int]:
        paths = list(paths)
        read.extend(paths)
        return real_procs(paths)

    monkeypatch.setattr(cg, "_procs", procs)
    dirs = [d for g in groups.groups.values() for d in g.dirs.values()]
    groups.remove()
    assert proc.wait(timeout=10) == -9
    assert not any(d.exists() for d in dirs)
    assert read and set(read) == set(busy.dirs.values())


@live
def test_a_clean_up_that_fails_leaves_the_run_its_own_groups(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An earlier run's group that cannot be removed (still busy) is the clean-up's
    problem: the run still gets its groups (it crashed once the clean-up moved out of the
    `try` that made them)."""
    import harness
    from harness import _supervisor
    from harness.plans import build_run_spec

    def busy() -> list[Path]:
        raise cg.CgroupError("cannot remove cgroup /sys/fs/cgroup/x: still busy")

    monkeypatch.setattr(_supervisor, "cgroup_cleanup", busy)
    caplog.set_level("INFO", logger="harness.supervisor")
    spec = build_run_spec("tiny", runner="local:exec", plan_roots=[tiny])
    result = harness.run(spec, harness.RunOptions(outputs=tmp_path / "out", progress=False,
                                                  metrics_listen=None))
    assert result.exit_code == 0, result.reason
    assert "'event': 'could not remove the cgroups of earlier runs'" in caplog.text
    assert "'event': 'per-instance cgroups'" in caplog.text


@live
@pytest.mark.parametrize("how", ["remove_run", "cleanup"])
def test_a_dead_runs_frozen_groups_are_thawed_killed_and_removed(how: str) -> None:
    """A run SIGKILLed while an instance was paused: its clean-up went hierarchy by
    hierarchy, tried to kill the frozen task from the cpu group's side for 10 s, failed
    "still busy", and never reached the freezer's group that would have thawed it."""
    run = cg.RunCgroups("frozen-" + secrets.token_hex(3))
    _need(run, "freezer")
    group = run.group("single/0")
    proc = _spawn("import time; time.sleep(600)")
    group.add(proc.pid)
    group.freeze()
    owner = (cg.OWNERS / run.name).read_text().splitlines()
    (cg.OWNERS / run.name).write_text("\n".join(["999999999 1", *owner[1:]]))  # it died
    if how == "remove_run":
        cg.remove_run(run.name.removeprefix(cg._PREFIX))
    else:
        cg.cleanup()
    assert proc.wait(timeout=10) == -9
    assert not [d for d in group.dirs.values() if d.exists()]
    assert not (cg.OWNERS / run.name).exists()


@live
def test_cleanup_finds_a_dead_runs_groups_made_from_another_cgroup() -> None:
    """A run made its groups below its own cgroup (a v1 hierarchy's), and a clean-up from
    another cgroup looked only below its own: the claim now lists where they are."""
    here = cg.hierarchies()
    if "cpu" not in here or here["cpu"].version != 1:
        pytest.skip("needs the cpu controller on a v1 hierarchy (a hybrid machine)")
    h = here["cpu"]
    other = h.base() / f"test-elsewhere-{secrets.token_hex(3)}"
    other.mkdir()
    try:
        run = cg.RunCgroups("elsewhere-" + secrets.token_hex(3),
                            {"cpu": cg.Hierarchy(1, h.mount, other)})
        proc = _spawn("import time; time.sleep(600)")
        run.group("single/0").add(proc.pid)
        owner = (cg.OWNERS / run.name).read_text().splitlines()
        assert owner[2:] == [str(other / run.name)]  # after the owner and its PID namespace
        (cg.OWNERS / run.name).write_text("\n".join(["999999999 1", *owner[1:]]))
        assert not (h.base() / run.name).exists()  # not where this process would look
        cg.cleanup({"cpu": h})
        assert proc.wait(timeout=10) == -9
        assert not (other / run.name).exists()
    finally:
        other.rmdir()


def test_a_claim_being_written_is_never_taken_for_a_dead_owners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs starting together: one's clean-up reads the other's claim while it is
    written. Read half written (empty), the live owner was taken for dead, its claim
    removed, and its groups killed by the next clean-up."""
    monkeypatch.setattr(cg, "OWNERS", tmp_path)
    name = "harness-20261204-000000-abcdef"
    cg._claim(name, [])
    stop = threading.Event()
    errors: list[BaseException] = []

    def rewrite() -> None:
        try:
            while not stop.is_set():
                cg._claim(name, [])
        except BaseException as e:  # the claim's temporary file removed by the clean-up
            errors.append(e)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        seen_dead = 0
        for _ in range(500):
            cg.cleanup({})
            seen_dead += not cg._claim_of(name, {})[0]
    finally:
        stop.set()
        writer.join()
    assert (seen_dead, errors) == (0, [])
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_a_claims_temporary_file_goes_only_once_its_writer_is_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean-up that removed a live writer's temporary file (caught empty, between its
    creation and its rename) failed the writer's claim: under load, five times in a row."""
    monkeypatch.setattr(cg, "OWNERS", tmp_path)
    name = "harness-20261204-000000-abcdef"
    dead = subprocess.Popen(["true"])
    dead.wait()
    live_tmp = tmp_path / f"{name}.{os.getpid()}.tmp"
    dead_tmp = tmp_path / f"{name}.{dead.pid}.tmp"
    live_tmp.write_text("")  # being written
    dead_tmp.write_text("")  # its writer crashed
    cg.cleanup({})
    assert sorted(p.name for p in tmp_path.iterdir()) == [live_tmp.name]
    assert cg.left_alone() == []


def test_a_claim_of_another_pid_namespace_is_left_and_older_claims_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run under `unshare --pid` claimed its groups with a pid of its namespace: from the
    host its supervisor looked dead, and the next run's clean-up killed its instances."""
    from netem._cleanup._manifest import process_start

    monkeypatch.setattr(cg, "OWNERS", tmp_path)
    name = "harness-20261204-000000-abcdef"
    mine = os.stat("/proc/self/ns/pid").st_ino
    cg._claim(name, [Path("/sys/fs/cgroup") / name])
    owner, pid_ns, listed = (tmp_path / name).read_text().splitlines()
    # the first line as versions before the namespace read it; theirs skip the second, as
    # no directory of the run
    assert (owner, pid_ns, listed) == (f"{os.getpid()} {process_start(os.getpid())}",
                                       f"pid_ns {mine}", f"/sys/fs/cgroup/{name}")
    assert cg._claim_of(name, {})[0] is True
    (tmp_path / name).write_text(f"{owner}\n")  # an older version's
    assert cg._claim_of(name, {})[0] is True
    assert cg.left_alone() == []
    for pid in (os.getpid(), 999999999):  # alive or not here, it cannot be told
        (tmp_path / name).write_text(f"{pid} 1\npid_ns {mine + 1}\n")
        assert cg._claim_of(name, {})[0] is None
        assert cg.left_alone() == ["20261204-000000-abcdef"]
        assert cg.cleanup({}) == [] and (tmp_path / name).exists()
    (tmp_path / name).write_text(f"999999999 1\npid_ns {mine}\n")  # dead, and of ours
    cg.cleanup({})
    assert not (tmp_path / name).exists()
