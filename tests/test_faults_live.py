"""Faults played by the supervisor on real runs: each action really happened, the record says
so, and outcomes stay honest (tests/plans/faulty is the plan whose files show it)."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness import _cgroup
from tests.conftest import IN_KERNEL_VM, alive, harness_cli, only_run_dir

PLANS = Path(__file__).parent / "plans"
root = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and cgroups need root")
SLOW = 4 if IN_KERNEL_VM else 1
"""How much longer the cgroup faults' timings are in the emulated kernel VM (which runs the
instances several times slower): `_s(1)` is "1s" here, "4s" there."""


def _s(seconds: float) -> str:
    return f"{seconds * SLOW:g}s"


def _run(tmp_path: Path, target: str, faults: str, *args: str) -> tuple[int, Path, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    file = tmp_path / "faults.toml"
    file.write_text(textwrap.dedent(faults))
    out = tmp_path / "out"
    r = harness_cli("run", target, "--plans", str(PLANS), "--outputs", str(out), "-q",
                    "--faults", str(file), *args, timeout=180 * SLOW)
    return r.returncode, only_run_dir(out), r.stdout + r.stderr


def _served_by(run_dir: Path, controller: str) -> int:
    """The cgroup version that served `controller` in the run (its supervisor's log says),
    checked against this machine's: v2 in the kernel VM, which mounts only cgroup2."""
    for line in (run_dir / "supervisor.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "per-instance cgroups":
            version = int(record["versions"][controller])
            assert version == (2 if IN_KERNEL_VM else
                               _cgroup.hierarchies()[controller].version), record
            return version
    raise AssertionError("the run made no per-instance cgroups")


def _faults(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]


def _began(step: dict[str, Any]) -> float:
    """When a step's action began: its record is written once the action is done."""
    return float(step["ts"]) - float(step["took_s"])


def _run_json(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "run.json").read_text()))


def _instance(run_dir: Path, iid: str) -> dict[str, Any]:
    return next(i for i in _run_json(run_dir)["instances"] if i["id"] == iid)


def _answers(run_dir: Path, iid: str) -> list[tuple[float, str, float]]:
    """(when, who answered, round trip in ms) of each answer `iid` heard (faulty:talk)."""
    lines = (run_dir / iid / "talk.log").read_text().splitlines()
    return [(float(t), who, float(rtt)) for t, who, rtt in (ln.split() for ln in lines)]


def _beats(run_dir: Path, iid: str) -> list[tuple[float, int, str]]:
    lines = (run_dir / iid / "beats.log").read_text().split("\n")
    return [(float(t), int(n), ip) for t, n, ip in (ln.split() for ln in lines if ln)]


@root
def test_a_killed_instance_comes_back_after_the_duration_with_the_same_identity(
    tmp_path: Path,
) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:beat", """
        [[faults]]
        at = "1s"
        action = "kill"
        duration = "700ms"
        targets = {instances = ["single/1"]}
        """, "--runner", "local:netns", "-p", "seconds=5")
    assert code == 0, out
    applied, undone = _faults(run_dir)
    assert (applied["step"], applied["chosen"], undone["step"]) == ("applied", ["single/1"],
                                                                   "undone")
    beats = _beats(run_dir, "single/1")
    before = [b for b in beats if b[1] == 0]
    after = [b for b in beats if b[1] == 1]
    assert before and after, "it beat only before or only after its restart"
    assert after[0][0] - before[-1][0] >= 0.6, "no gap while it was down"
    assert {ip for _, _, ip in beats} == {_instance(run_dir, "single/1")["ip"]}, (
        "the restarted instance has another address")
    record = _instance(run_dir, "single/1")
    assert record["restarts"] == 1 and record["outcome"] == "passed"
    # Its time down (from its exit to its restart, inside the gap in its beats) is not
    # counted as running.
    assert 0.5 <= record["down_s"] <= after[0][0] - before[-1][0], record
    assert f"down {record['down_s']:.1f} s in all" in record["note"]
    assert _instance(run_dir, "single/0")["restarts"] == 0


def test_killed_for_good_passes_only_where_the_plan_allows_it(tmp_path: Path) -> None:
    fault = """
        [[faults]]
        at = "500ms"
        action = "kill"
        targets = {{instances = ["single/1"]}}
        {expect}
        """
    code, run_dir, out = _run(tmp_path / "a", "faulty:beat", fault.format(expect=""))
    assert code == 0, out  # kill without a duration: it may die
    assert "it may die: expected" in _instance(run_dir, "single/1")["note"]
    code, run_dir, out = _run(tmp_path / "b", "faulty:beat",
                              fault.format(expect='expect = "recover"'))
    assert code == 1, out
    assert "expected to recover but never did" in _instance(run_dir, "single/1")["reason"]
    # Every one killed for good: each "may die", yet nothing was checked. It passed.
    code, run_dir, out = _run(tmp_path / "c", "faulty:beat", fault.format(expect="").replace(
        'instances = ["single/1"]', 'group = ["single"]'))
    assert code == 1, out
    assert _run_json(run_dir)["reason"] == ("no instance recorded success: faults ended every "
                                            "one (nothing was checked)")


def test_a_restart_starts_it_again_at_once(tmp_path: Path) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:beat", """
        [[faults]]
        at = "800ms"
        action = "restart"
        grace = "1s"
        targets = {group = "single", count = 1, seed = 3}
        """)
    assert code == 0, out
    (chosen,) = _faults(run_dir)[0]["chosen"]
    assert _instance(run_dir, chosen)["restarts"] == 1
    assert {n for _, n, _ in _beats(run_dir, chosen)} == {0, 1}


def test_an_instance_restarted_after_it_signalled_does_not_arrive_twice(tmp_path: Path) -> None:
    """Its second life's signal counted as another instance's arrival: the barrier of 3
    was released while single/2 had not come, and the run, with single/2 killed, passed."""
    code, run_dir, out = _run(tmp_path, "faulty:meet", """
        [[faults]]
        at = "1s"
        action = "restart"
        targets = {instances = ["single/1"]}
        [[faults]]
        at = "3s"
        action = "kill"
        targets = {instances = ["single/2"]}
        """, "--timeout", "60")
    assert code == 1, out
    reason = _run_json(run_dir)["reason"]
    assert "barrier 'met' can no longer reach 3: 2 arrived" in reason, reason


@root
def test_a_paused_instance_makes_no_progress_until_resumed(tmp_path: Path) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:beat", f"""
        [[faults]]
        at = "{_s(1)}"
        action = "pause"
        duration = "{_s(0.8)}"
        targets = {{instances = ["single/0"]}}
        """, "-p", f"seconds={5 * SLOW}")
    assert code == 0, out
    _served_by(run_dir, "freezer")
    applied, undone = _faults(run_dir)
    times = [t for t, _, _ in _beats(run_dir, "single/0")]
    thaw = _began(undone)
    margin = 0.05 * SLOW
    during = [t for t in times if applied["ts"] + margin < t < thaw - margin]
    assert any(t < applied["ts"] for t in times), "it did not beat before the pause"
    assert not during, f"it beat {len(during)} times while paused"
    assert any(t > undone["ts"] for t in times), "it did not resume"


@root
def test_an_instance_paused_to_the_timeout_says_which_fault_froze_it(tmp_path: Path) -> None:
    """Its reason read only "still running at the run's timeout", like a plan that hangs,
    and `harness logs --level warning` did not show that failure (logged as info)."""
    code, run_dir, out = _run(tmp_path, "faulty:beat", f"""
        [[faults]]
        at = "{_s(1)}"
        action = "pause"
        targets = {{instances = ["single/0"]}}
        """, "-p", "seconds=30", "--timeout", f"{4 * SLOW:g}")
    assert code == 1, out
    reason = _instance(run_dir, "single/0")["reason"]
    assert reason.startswith(f"still running at the run's timeout ({4 * SLOW:g}s), frozen by "
                             "fault 0 (pause) since "), reason
    failed = [json.loads(line) for line in (run_dir / "supervisor.jsonl").read_text().splitlines()
              if '"instance failed"' in line]
    assert {(f["id"], f["level"]) for f in failed} == {
        ("single/0", "warning"), ("single/1", "warning")}, failed


@root
def test_a_partition_cuts_the_traffic_between_its_sides_until_healed(tmp_path: Path) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:talk", """
        [[faults]]
        at = "1s"
        action = "partition"
        duration = "1s"
        targets = {instances = ["single/0"]}
        """, "--runner", "local:netns", "-p", "seconds=6")
    assert code == 0, out
    applied, undone = _faults(run_dir)
    assert sorted(map(tuple, applied["directions"])) == sorted(
        [("single/0", "single/1"), ("single/0", "single/2"),
         ("single/1", "single/0"), ("single/2", "single/0")])

    cut = (applied["ts"] + 0.1, _began(undone) - 0.1)
    heard = [(t, who) for t, who, _ in _answers(run_dir, "single/1")]
    assert not [w for t, w in heard if cut[0] < t < cut[1] and w == "single/0"], (
        "single/1 heard single/0 through the partition")
    assert [w for t, w in heard if cut[0] < t < cut[1] and w == "single/2"], (
        "the partition cut the side that should still talk")
    assert [w for t, w in heard if t > undone["ts"] + 0.2 and w == "single/0"], "not healed"
    ops = [json.loads(line)["op"] for line in (run_dir / "network.jsonl").read_text().splitlines()
           if line]
    assert "cut" in ops and "uncut" in ops


@root
def test_a_memory_limit_kills_an_instance_that_eats_past_it(tmp_path: Path) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:eat", """
        [[faults]]
        at = "200ms"
        action = "limit"
        memory = "100MiB"
        targets = {instances = ["single/0"]}
        """, "-p", f"eat_at={SLOW}", "-p", "megabytes=400", "-p", f"seconds={3 * SLOW}")
    assert code == 1, out
    _served_by(run_dir, "memory")
    assert "ate" not in (run_dir / "single/0/cpu.log").read_text(), "it ate past the limit"
    assert _instance(run_dir, "single/0")["reason"] == ("killed by SIGKILL: out of memory (its "
                                                     "cgroup's memory limit)")


@root
def test_a_cpu_limit_caps_the_share_and_a_hog_takes_from_it(tmp_path: Path) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:eat", f"""
        [[faults]]
        at = "{_s(1)}"
        action = "limit"
        cpu = 0.3
        targets = {{instances = ["single/0"]}}

        [[faults]]
        at = "{_s(2.5)}"
        action = "hog"
        cpu = 1
        duration = "{_s(1.5)}"
        targets = {{instances = ["single/0"]}}
        """, "-p", f"seconds={4.5 * SLOW}")
    assert code == 0, out
    _served_by(run_dir, "cpu")
    log = [ln.split() for ln in (run_dir / "single/0/cpu.log").read_text().splitlines()]
    shares = [(float(t), float(s)) for t, s in log]
    faults = {f["fault"]: f for f in _faults(run_dir) if f["step"] == "applied"}
    t_limit, t_hog = faults["fault 0"]["ts"], faults["fault 1"]["ts"]
    free = [s for t, s in shares if t < t_limit]
    capped = [s for t, s in shares if t_limit + 0.5 * SLOW < t < t_hog]
    hogged = [s for t, s in shares if t_hog + 0.5 * SLOW < t < t_hog + 1.5 * SLOW]
    assert free and capped and hogged, shares
    # A 250 ms window can hold three of CFS's 100 ms periods' quotas (0.36), and a slow VM's
    # timers add to that: the cap shows in the median, and no window comes near a free one
    # (in the emulated VM, a few may: a preempted vCPU's time is charged to what ran on it).
    assert statistics.median(capped) < 0.36, f"capped at 0.3 CPU, it had {capped}"
    over = [s for s in capped if s >= 0.5]
    assert len(over) <= (len(capped) // 8 if IN_KERNEL_VM else 0), (
        f"capped at 0.3 CPU, it still had {over}")
    assert statistics.median(hogged) < 0.75 * statistics.median(capped), (
        "a hog in its cgroup took nothing from it")


@root
def test_a_hogs_loops_wait_while_its_instance_is_down_and_come_back_with_it(
    tmp_path: Path,
) -> None:
    """Two hogs overlap and a timed kill takes the instance down meanwhile: its busy loops
    ran on while it was down (only an instance's exit stopped them, not a kill that starts
    it again), and the later hog, ending while it was down, left the earlier one's loop out
    for good (a hog set back on an instance that is down started nothing)."""
    import threading
    import time

    samples: list[tuple[float, str, str]] = []  # (when, pid, state) of each busy loop seen
    done = threading.Event()

    def watch() -> None:
        bases = {h.base() for h in _cgroup.hierarchies().values()}
        while not done.is_set():
            pids: set[str] = set()  # (a process is in each hierarchy's group: once here)
            for run in tmp_path.glob("out/*"):
                for base in bases:
                    with contextlib.suppress(OSError):
                        procs = base / f"harness-{run.name}/single-0/cgroup.procs"
                        pids.update(procs.read_text().split())
            for pid in pids:
                with contextlib.suppress(OSError):
                    if b"while True" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        stat = Path(f"/proc/{pid}/stat").read_text()
                        samples.append((time.time(), pid, stat.split(") ", 1)[1][0]))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        code, run_dir, out = _run(tmp_path, "faulty:beat", f"""
            [[faults]]
            at = "{_s(0.5)}"
            action = "hog"
            duration = "{_s(4)}"
            targets = {{instances = ["single/0"]}}

            [[faults]]
            at = "{_s(1)}"
            action = "hog"
            cpu = 2
            duration = "{_s(1)}"
            targets = {{instances = ["single/0"]}}

            [[faults]]
            at = "{_s(1.5)}"
            action = "kill"
            duration = "{_s(1)}"
            targets = {{instances = ["single/0"]}}
            """, "-i", "1", "-p", f"seconds={5.5 * SLOW}")
    finally:
        done.set()
        watcher.join()
    assert code == 0, out
    steps = {(f["fault"], f["step"]): f["ts"] for f in _faults(run_dir)}
    # Back from the moment it is started again (its loops with it): the fault's "undone"
    # is recorded after that, by another task, late by 0.1 s and more on a loaded machine.
    restarting = [json.loads(line)["ts"] for line in (run_dir / "events.jsonl").open()
                  if '"restarting"' in line]
    killed = steps["fault 2", "applied"]
    back = min([steps["fault 2", "undone"], *restarting])
    # A loop's last sight may be its dying moments (the later hog's end SIGKILLs the stopped
    # loops, which then run to their exit): only one seen again later ran its loop.
    last = {pid: t for t, pid, _ in samples}
    down = [s for t, pid, s in samples if killed + 0.2 < t < back - 0.1 and t < last[pid]]
    after = [s for t, _, s in samples
             if back + 0.3 * SLOW < t < steps["fault 0", "undone"] - 0.2]
    assert down and "R" not in down, f"busy loops ran while it was down: {down}"
    assert "R" in after, f"the first hog's loop did not come back with it: {after}"


@root
def test_faults_on_processes_miss_or_pass_over_an_instance_that_has_exited(tmp_path: Path) -> None:
    """A skew, a limit or a hog on an instance that has ended does nothing there and says
    so (`missed`), as a process fault does: once, a hog ran busy loops for a dead instance.
    A count is drawn from the instances still running."""
    both = 'targets = {instances = ["single/0", "single/1"]}'
    code, run_dir, out = _run(tmp_path, "faulty:beat", f"""
        [[faults]]
        at = "500ms"
        action = "kill"
        targets = {{instances = ["single/1"]}}

        [[faults]]
        at = "{_s(1)}"
        action = "skew"
        offset = "2s"
        {both}

        [[faults]]
        at = "{_s(1)}"
        action = "limit"
        cpu = 0.5
        {both}

        [[faults]]
        at = "{_s(1)}"
        action = "hog"
        cpu = 1
        duration = "500ms"
        {both}

        [[faults]]
        at = "{_s(1)}"
        action = "pause"
        duration = "300ms"
        targets = {{group = "single", count = 1, seed = 0}}
        """, "-p", f"seconds={2.5 * SLOW}")
    assert code == 0, out
    applied = {f["action"]: f for f in _faults(run_dir) if f["step"] == "applied"}
    for action in ("skew", "limit", "hog"):
        assert applied[action]["chosen"] == ["single/0", "single/1"], applied[action]
        assert applied[action]["missed"] == ["single/1"], applied[action]
    # Seed 0 draws single/1 of the two; of those running, it can only draw single/0.
    assert applied["pause"]["chosen"] == ["single/0"] and "missed" not in applied["pause"]
    assert (run_dir / "single/0/hog.log").exists()
    assert not (run_dir / "single/1/hog.log").exists()


def test_a_composition_plays_its_faults_on_a_sync_condition(tmp_path: Path) -> None:
    comp = tmp_path / "c.toml"
    comp.write_text(textwrap.dedent("""
        [global]
        plan = "faulty"
        case = "beat"
        total_instances = 3

        [[faults]]
        at = {state = "network-initialized", count = 3}
        action = "restart"
        targets = {instances = ["single/2"]}
        """))
    out = tmp_path / "out"
    r = harness_cli("run", "--composition", str(comp), "--plans", str(PLANS), "--outputs",
                    str(out), "-q", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = only_run_dir(out)
    assert _faults(run_dir)[0]["chosen"] == ["single/2"]
    assert _instance(run_dir, "single/2")["restarts"] == 1


def test_a_fault_that_never_fires_fails_the_run(tmp_path: Path) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:beat", """
        [[faults]]
        at = {state = "never-signalled", count = 2}
        action = "kill"
        targets = {instances = ["single/0"]}
        """, "-p", "seconds=1")
    assert code == 1, out
    failed = [f for f in _faults(run_dir) if f["step"] == "failed"]
    assert failed and "never fired" in failed[0]["reason"]
    assert "fault 0 could not be played" in _run_json(run_dir)["reason"]


def test_a_fault_whose_time_never_comes_fails_the_run(tmp_path: Path) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:beat", """
        [[faults]]
        at = "60s"
        action = "kill"
        targets = {instances = ["single/0"]}
        """, "-p", "seconds=1")
    assert code == 1, out
    (failed,) = _faults(run_dir)
    assert failed["step"] == "failed" and "never played" in failed["reason"]
    assert "fault 0 could not be played: never played" in _run_json(run_dir)["reason"]


@pytest.mark.parametrize(("faults", "message"), [
    ('[[faults]]\nat = 1\naction = "kill"\ntargets = {group = "nobody"}\n', "no group 'nobody'"),
    ('[[faults]]\nat = 1\naction = "kil"\n', "action must be one of"),
    ('[[faults]]\nat = 1\naction = "kill"\ntargets = {count = 5}\n', "count 5 but only 2"),
    ('faults = 3\n', "must be a list"),
    ('[[faults]]\nat = "soon"\naction = "heal"\n', "is not a duration"),
])
def test_bad_faults_are_refused_before_anything_starts(
    tmp_path: Path, faults: str, message: str
) -> None:
    file = tmp_path / "f.toml"
    file.write_text(faults)
    r = harness_cli("run", "faulty:beat", "--plans", str(PLANS), "--outputs",
                    str(tmp_path / "out"), "--faults", str(file))
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_skew_reaches_python_instances_and_the_programs_it_may_select_and_is_undone(
    tmp_path: Path,
) -> None:
    comp = tmp_path / "clock.toml"
    comp.write_text(textwrap.dedent("""
        [global]
        plan = "faulty"
        case = "clock"
          [global.params]
          seconds = 7.0

        [[groups]]
        id = "py"
        instances = { count = 1 }

        [[groups]]
        id = "prog"  # exec'd, not forked: its clock is libfaketime's
        instances = { count = 1 }
        program = ["python", "-m", "harness.sdk", "faulty.plan:clock"]

        [[groups]]
        id = "bystander"  # a Python program no skew may select: not under libfaketime,
        instances = { count = 1 }  # whose time.sleep would fail (EINVAL, docs/contracts.md)
        program = ["python", "-m", "harness.sdk", "faulty.plan:sleeps"]

        [[faults]]
        at = "1s"
        action = "skew"
        offset = "-2s"
        duration = "2s"
        targets = {group = ["py", "prog"]}
        """))
    out = tmp_path / "out"
    # A relative --plans: programs run in their outputs directory, yet find the plan.
    r = harness_cli("run", "--composition", str(comp), "--plans", "tests/plans",
                    "--outputs", str(out), "-q", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = only_run_dir(out)
    applied, undone = _faults(run_dir)
    for iid, lag in (("py/0", 0.3), ("prog/0", 1.3)):  # libfaketime reads its file each second
        lines = (run_dir / iid / "skew.log").read_text().splitlines()
        samples = [(float(t), float(s)) for t, s in (ln.split() for ln in lines)]
        before = [s for t, s in samples if t < applied["ts"] - 0.1]
        during = [s for t, s in samples if applied["ts"] + lag < t < undone["ts"] - 0.1]
        after = [s for t, s in samples if t > undone["ts"] + lag]
        assert before and during and after, (iid, samples)
        assert all(abs(s) < 0.05 for s in before + after), (iid, "skewed outside the fault")
        assert all(abs(s + 2) < 0.05 for s in during), (iid, "not skewed by -2 s", during)


@root
def test_isolate_then_heal_and_a_shape_on_some_directions(tmp_path: Path) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:talk", """
        [[faults]]
        at = "1s"
        action = "isolate"
        targets = {instances = ["single/2"]}

        [[faults]]
        at = "2s"
        action = "heal"

        [[faults]]
        at = "3s"
        action = "shape"
        shape = {latency_ms = 80}
        duration = "1.5s"
        targets = {instances = ["single/0"]}
        to = {instances = ["single/1"]}
        """, "--runner", "local:netns", "-p", "seconds=6")
    assert code == 0, out
    steps = {(f["fault"], f["step"]): f for f in _faults(run_dir)}
    isolated, healed = steps[("fault 0", "applied")]["ts"], steps[("fault 1", "applied")]
    shaped, unshaped = steps[("fault 2", "applied")]["ts"], steps[("fault 2", "undone")]
    heard = _answers(run_dir, "single/0")
    isolation = (isolated + 0.1, _began(healed) - 0.1)
    assert not [w for t, w, _ in heard if isolation[0] < t < isolation[1] and w == "single/2"]
    assert [w for t, w, _ in heard if healed["ts"] + 0.2 < t < shaped and w == "single/2"], (
        "not healed")
    during = (shaped + 0.2, _began(unshaped) - 0.1)
    slow = [rtt for t, w, rtt in heard if during[0] < t < during[1] and w == "single/1"]
    other = [rtt for t, w, rtt in heard if during[0] < t < during[1] and w == "single/2"]
    after = [rtt for t, w, rtt in heard if t > unshaped["ts"] + 0.3 and w == "single/1"]
    assert slow and other and after
    assert min(slow) >= 78, f"0 -> 1 shaped to 80 ms, round trips {min(slow)} ms"
    assert max(other) < 60, "the shape reached a direction it does not name"
    assert min(after) < 60, "the shape was not undone"


def test_stop_ends_with_sigterm_and_resume_ends_a_pause(tmp_path: Path) -> None:
    code, run_dir, out = _run(tmp_path, "faulty:beat", """
        [[faults]]
        at = "500ms"
        action = "stop"
        grace = "2s"
        duration = "500ms"
        targets = {instances = ["single/0"]}

        [[faults]]
        at = "1s"
        action = "pause"
        targets = {instances = ["single/1"]}

        [[faults]]
        at = "1.8s"
        action = "resume"
        targets = {instances = ["single/1"]}
        """, "-p", "seconds=5")
    assert code == 0, out
    assert _instance(run_dir, "single/0")["restarts"] == 1
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    (stopped,) = [e for e in events if e.get("instance") == "single/0"
                  and e.get("status") == "exited"][:1]
    assert stopped["exit_code"] == -15, "stop did not end it with SIGTERM"
    steps = {f["fault"]: f for f in _faults(run_dir)}
    paused, resumed = steps["fault 1"]["ts"], steps["fault 2"]["ts"]
    times = [t for t, _, _ in _beats(run_dir, "single/1")]
    assert not [t for t in times if paused + 0.05 < t < resumed - 0.05]
    assert [t for t in times if t > resumed], "resume did not end the pause"


def test_a_stop_s_duration_counts_from_the_exit_of_a_program_that_takes_its_grace(
    tmp_path: Path,
) -> None:
    """Its duration counted from the SIGTERM: a program that ignored it was started again
    the moment its grace's SIGKILL ended it (down for no time), and faults.jsonl said
    "undone" while it still ran."""
    code, run_dir, out = _run(tmp_path, "faulty:beat", f"""
        [[faults]]
        at = "500ms"
        action = "stop"
        grace = "{_s(1.5)}"
        duration = "{_s(1)}"
        targets = {{instances = ["single/0"]}}
        """, "-p", f"seconds={5 * SLOW}", "-p", "deaf=true", "-i", "1")
    assert code == 0, out
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    exited = next(e for e in events if e.get("status") == "exited")
    assert exited["exit_code"] == -9, "the program was to ignore its SIGTERM"
    steps = {f["step"]: f for f in _faults(run_dir)}
    assert steps["applied"]["ts"] >= exited["ts"], "applied before the instance was down"
    assert steps["applied"]["took_s"] >= 1.5 * SLOW - 0.1  # its grace
    assert steps["undone"]["ts"] - exited["ts"] >= 1 * SLOW - 0.05
    beats = _beats(run_dir, "single/0")
    before = max(t for t, n, _ in beats if n == 0)
    after = min(t for t, n, _ in beats if n == 1)
    assert after - before >= 1 * SLOW, f"down for {after - before:.2f} s, not its 1 s"


def test_a_restart_ends_the_pause_that_holds_its_instance(tmp_path: Path) -> None:
    """The contract (docs/faults.md) the simulation keeps too: the frozen process is thawed to
    take its signal and what starts again runs, though the pause had no end of its own."""
    code, run_dir, out = _run(tmp_path, "faulty:beat", """
        [[faults]]
        at = "500ms"
        action = "pause"
        targets = {instances = ["single/0"]}

        [[faults]]
        at = "1s"
        action = "restart"
        targets = {instances = ["single/0"]}
        """, "-p", "seconds=4")
    assert code == 0, out
    assert _instance(run_dir, "single/0")["restarts"] == 1
    restarted = {f["fault"]: f for f in _faults(run_dir)}["fault 1"]["ts"]
    assert [t for t, _, _ in _beats(run_dir, "single/0") if t > restarted + 0.2], (
        "the restarted instance stayed paused")


@pytest.mark.parametrize("expect", [None, "may_die"])
def test_an_instance_down_for_a_restart_when_the_run_stops_is_judged_by_its_fault(
    tmp_path: Path, expect: str | None,
) -> None:
    """Expected to recover (a timed kill's default), it fails saying why it stopped; allowed
    to die, it passes (it failed as "still running at the run's timeout", its process long
    gone)."""
    code, run_dir, out = _run(tmp_path, "faulty:beat", f"""
        [[faults]]
        at = "300ms"
        action = "kill"
        duration = "60s"
        {f'expect = "{expect}"' if expect else ""}
        targets = {{instances = ["single/1"]}}
        """, "-p", "seconds=2", "--timeout", "4")
    single1 = _instance(run_dir, "single/1")
    if expect is None:
        assert code == 1, out
        assert single1["reason"].startswith("still running at the run's timeout"), single1
    else:
        assert code == 0, out
        assert single1["outcome"] == "passed" and single1["restarts"] == 0, single1
        assert "it may die: expected" in single1["note"], single1


def _of_run(run_id: str) -> list[int]:
    """The live processes (not zombies) started by the run's instances: those whose
    environment has its TEST_RUN."""
    mark = f"TEST_RUN={run_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and mark in Path(f"/proc/{entry}/environ").read_bytes().split(
                    b"\0") and alive(int(entry)):
                found.append(int(entry))
        except OSError:
            continue
    return found


@root
@pytest.mark.parametrize("runner", ["local:exec", "local:netns"])
def test_kill_and_restart_reach_what_the_instance_started_outside_its_process_group(
    tmp_path: Path, runner: str,
) -> None:
    """An instance's child in a session of its own, and its daemon (a double fork and
    setsid), are outside its process group: a kill or restart reached only the group, and
    they ran on beside the next incarnation (faulty:orphans fails an incarnation that finds
    an earlier one's). One killed for good is looked at while the run goes on, once its exit
    is recorded; the run's end leaves nothing of any incarnation."""
    import threading
    import time

    left: dict[str, list[int]] = {}  # what single/2 left once its exit was recorded
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not left:
            for run in tmp_path.glob("out/*/events.jsonl"):
                with contextlib.suppress(OSError, ValueError):
                    for line in run.read_text().splitlines():
                        event = json.loads(line)
                        if (event.get("instance"), event.get("status")) == ("single/2",
                                                                             "exited"):
                            pids = (run.parent / "single/2/orphans.log").read_text().split()
                            left["single/2"] = [int(p) for p in pids[1::2] if alive(int(p))]
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    # each instance must have started its orphans by then (in the emulated VM, a stall of
    # a second or two at the start must not make the kill come first)
    at = _s(1.0 if IN_KERNEL_VM else 0.5)
    try:
        code, run_dir, out = _run(tmp_path, "faulty:orphans", f"""
            [[faults]]
            at = "{at}"
            action = "restart"
            grace = "{_s(0.2)}"
            targets = {{instances = ["single/0"]}}

            [[faults]]
            at = "{at}"
            action = "kill"
            duration = "{_s(0.3)}"
            targets = {{instances = ["single/1"]}}

            [[faults]]
            at = "{at}"
            action = "kill"
            targets = {{instances = ["single/2"]}}
            """, "-i", "3", "-p", f"seconds={3 * SLOW}", "--runner", runner)
    finally:
        done.set()
        watcher.join()
    assert code == 0, out
    for iid in ("single/0", "single/1"):
        assert _instance(run_dir, iid)["restarts"] == 1
        assert len((run_dir / iid / "orphans.log").read_text().split()) == 8  # 2 each time
    assert left == {"single/2": []}, f"what a kill for good left ran on: {left}"
    assert not _of_run(run_dir.name), "the run's end left processes of its instances"


@root
def test_a_restart_of_an_instance_that_ended_by_itself_first_kills_what_it_left(
    tmp_path: Path,
) -> None:
    """No fault ended its process, so nothing was killed then: what it left (faulty:orphans)
    would meet the process a later restart starts."""
    comp = tmp_path / "c.toml"
    comp.write_text(textwrap.dedent("""
        [global]
        plan = "faulty"
        case = "orphans"
        total_instances = 2

        [[groups]]
        id = "short"
        instances = { count = 1 }
          [groups.params]
          seconds = 0.5

        [[groups]]
        id = "long"
        instances = { count = 1 }
          [groups.params]
          seconds = 3.5

        [[faults]]
        at = "2s"
        action = "restart"
        targets = {instances = ["short/0"]}
        """))
    out = tmp_path / "out"
    r = harness_cli("run", "--composition", str(comp), "--plans", str(PLANS), "--outputs",
                    str(out), "-q", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = only_run_dir(out)
    assert _instance(run_dir, "short/0")["restarts"] == 1
    assert len((run_dir / "short/0/orphans.log").read_text().split()) == 8
    assert not _of_run(run_dir.name), "the run's end left processes of its instances"


def test_without_cgroups_a_kill_reaches_the_process_group_and_the_log_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Where no cgroup can be made, what an instance started in a session of its own is
    out of a kill's reach until the run's end: the run's log says why, once for all its
    process faults."""
    import harness
    from harness import _supervisor
    from harness.plans import build_run_spec

    why = "cannot create cgroup /sys/fs/cgroup/cpu/harness-x: Permission denied"

    class Refused(_cgroup.RunCgroups):
        def group(self, name: str) -> _cgroup.InstanceCgroup:
            raise _cgroup.CgroupError(why)

    monkeypatch.setattr(_supervisor, "RunCgroups", Refused)
    caplog.set_level("INFO", logger="harness.supervisor")
    faults = tmp_path / "faults.toml"
    faults.write_text(textwrap.dedent("""
        [[faults]]
        at = "300ms"
        action = "kill"
        duration = "300ms"
        targets = {group = "single"}
        """))
    spec = build_run_spec("faulty:beat", instances=2, params={"seconds": "1.5"},
                          runner="local:exec", plan_roots=[PLANS], faults=faults)
    result = harness.run(spec, harness.RunOptions(outputs=tmp_path / "out", progress=False,
                                                  metrics_listen=None))
    assert result.exit_code == 0, result.reason
    said = [r.getMessage() for r in caplog.records
            if "reach only each instance's process group" in r.getMessage()]
    assert len(said) == 1, said
    assert repr(why if os.geteuid() == 0 else "they need root") in said[0]
