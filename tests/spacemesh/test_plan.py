"""The spacemesh plan: its verdict logic, and whole runs through the harness CLI."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import scenarios.spacemesh as spacemesh
from harness.faults import parse_faults
from scenarios.spacemesh._mesh import MeshParams
from scenarios.spacemesh.faults import Setup, search_cuts, simulate, write_faults
from scenarios.spacemesh.plan import Report, Watch, compare_reports

from ..conftest import only_run_dir
from .logs import check_run_logs

DIVERGED = r"ha(s|ve) hash"  # a check naming a node (or nodes) whose layer hash differs

ROOT = Path(__file__).resolve().parents[2]


def report(seq: int, role: str = "miner", **kw: object) -> Report:
    base: dict[str, object] = {
        "seq": seq,
        "instance": f"single/{seq}",
        "role": role,
        "smesher": f"s{seq}",
        "is_smeshing": role == "miner",
        "verified_layer": 4,
        "hashes": ["a", "b", "c", "d", "e"],
        "atx_smeshers": ["s2", "s3"],
        "smeshing_error": "",
        "statuses": [2] * 5,
    }
    base.update(kw)
    return Report(**base)  # type: ignore[arg-type]


def test_agreeing_reports_pass() -> None:
    assert compare_reports([report(1, "gateway"), report(2), report(3)], 4) == []


def test_disagreements_are_named() -> None:
    problems = compare_reports(
        [
            report(1, "gateway"),
            report(2, hashes=["a", "b", "X", "d", "e"]),
            report(3, is_smeshing=False),
            report(4, verified_layer=2, atx_smeshers=["s2"]),
        ],
        4,
    )
    assert "layer 2: single/2 has hash X, single/1 has a" not in problems  # first differing layer
    assert any(p.startswith("layer 2: single/2 has hash X") for p in problems)
    assert "miner single/3 is not smeshing" in problems
    assert "single/4 verified layer 2, not 4" in problems
    assert any(
        p.startswith("ATX of miner single/4 unknown to single/1, single/2, single/3")
        for p in problems
    )


def test_a_node_whose_layers_are_not_verified_fails_though_its_status_says_so() -> None:
    # Status said layer 4 was verified, LayersQuery (whose hashes are compared) did not.
    tentative = report(3, statuses=[2, 2, 2, 1, 0])
    assert compare_reports([report(1, "gateway"), report(2), tentative], 4) == [
        "single/3 says it verified layer 4, but its layer 3 is not verified (LayersQuery)"]
    assert compare_reports([report(1, "gateway"), report(2, statuses=[2] * 4)], 4) == [
        "single/2 says it verified layer 4, but its layer 4 is not verified (LayersQuery)"]


def test_a_layer_reopened_after_the_status_is_read_again_not_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Status said layer 4 was verified; LayersQuery, read just after, showed layer 3
    reopened (votes of a healed partition came between). The hashes were not final yet: the
    node is read again while its watch has time, not failed on that moment's view."""
    from types import SimpleNamespace

    from scenarios.spacemesh import plan

    class Api:
        def __init__(self, *_: object, **__: object) -> None: ...

        async def status(self) -> SimpleNamespace:
            return SimpleNamespace(verified_layer=4, top_layer=5, connected_peers=3)

        def close(self) -> None: ...

    views = iter([[2, 2, 2, 1, 2], [2, 2, 2, 2, 2]])
    reads = []

    async def observe(*_: object) -> Report:
        reads.append(statuses := next(views))
        return report(2, statuses=statuses)

    async def said(*_: object) -> None: ...

    monkeypatch.setattr(plan, "NodeApi", Api)
    monkeypatch.setattr(plan, "observe", observe)
    env = SimpleNamespace(is_restart=False, sync=SimpleNamespace(signal_entry=said))
    watch = Watch.of("miner", target=4, genesis=time.time() - 10, layer_duration=1.0,
                          params=MeshParams(layers_per_epoch=3), check_slack=30.0)
    watch = dataclasses.replace(watch, poll=0.01, atx_checked=True)
    got = anyio.run(plan._watch_own_node, env, "10.0.0.1", watch, {}, False)
    assert len(reads) == 2 and got.statuses == [2] * 5
    assert compare_reports([report(1, "gateway"), got], 4) == []


def test_a_node_judged_after_its_deadline_would_pass_is_judged_then() -> None:
    # judge_after past the target's deadline: the node verified, and is judged at
    # judge_after, not failed at the deadline with "verified layer 8, not 8".
    params = MeshParams(layers_per_epoch=3)
    watch = Watch.of("gateway", target=8, genesis=0.0, layer_duration=2.0, params=params,
                     check_slack=20.0, judge_after=100.0)  # fmt: skip
    done = {"verified_layer": 8, "top_layer": 9, "connected_peers": 3}
    assert watch.step(60.0, done) is None and watch.step(100.0, done) == ""
    assert "not 8, by the deadline" in str(watch.step(121.0, {**done, "verified_layer": 7}))
    healed = Watch.of("gateway", target=8, genesis=0.0, layer_duration=2.0, params=params,
                      check_slack=20.0, healed_at=10.0, judge_after=50.0)  # fmt: skip
    assert healed.not_before == 50.0 and healed.step(49.0, done) is None


def test_a_failed_node_is_reported_with_its_reason() -> None:
    problems = compare_reports(
        [report(1, "gateway"), report(2, error="miner published no ATX in epoch 0: PoET down")], 4
    )
    assert problems == ["single/2: miner published no ATX in epoch 0: PoET down"]


def test_public_api_exports_exist() -> None:
    for name in spacemesh.__all__:
        assert getattr(spacemesh, name) is not None, name
    assert sorted(spacemesh.__all__) == sorted(set(spacemesh.__all__))


def _run(*args: str, outputs: Path, runner: str = "local:exec",
         target: str = "spacemesh:start") -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", target, "--runner", runner,
         "-q", "--outputs", str(outputs), *args],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.slow
def test_plan_passes_with_three_instances(tmp_path: Path) -> None:
    wall = time.perf_counter()
    out = _run("-i", "3", "-p", "layers=4", "-p", "layer_duration=1s", "-p", "genesis_offset=2s",
               outputs=tmp_path)  # fmt: skip
    print(f"harness run spacemesh:start -i 3: {time.perf_counter() - wall:.1f}s wall")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASSED" in out.stdout
    traces = list(tmp_path.glob("*/single/*/trace.jsonl.gz"))
    assert len(traces) == 2  # the gateway's and the miner's
    check_run_logs(only_run_dir(tmp_path), target=4)


@pytest.mark.slow
def test_plan_passes_with_two_poets_and_two_gateways(tmp_path: Path) -> None:
    out = _run("-i", "8", "-p", "poets=2", "-p", "gateways=2", "-p", "layers=4",
               "-p", "layer_duration=1s", "-p", "genesis_offset=3s", outputs=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = only_run_dir(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    roles = {i["id"]: i["role"] for i in run["instances"]}
    assert sorted(roles.values()) == ["gateway"] * 2 + ["miner"] * 4 + ["poet"] * 2
    logs = check_run_logs(run_dir, target=4)
    gateways = {f"{i['ip']}:9092" for i in run["instances"] if i["role"] == "gateway"}
    keys = set()
    for instance, records in logs.items():
        if roles[instance] == "poet":
            (started,) = [r for r in records if r["event"] == "poet started"]
            assert set(started["gateways"]) == gateways
            keys.add(started["pubkey"])
            broadcasts = [r for r in records if r["event"] == "poet proof broadcast"]
            assert broadcasts and all(set(r["acked"]) == gateways for r in broadcasts)
        elif roles[instance] == "miner":
            submitted = [r for r in records if r["event"] == "poet challenge submitted"]
            assert all(len(r["rounds"]) == 2 for r in submitted)  # to both PoETs
    for instance, role in roles.items():
        if role == "gateway":  # each gateway was handed proofs by both PoETs
            handed = {r["poet"] for r in logs[instance] if r.get("source") == "poet"}
            assert handed == keys, instance


@pytest.mark.slow
def test_plan_fails_and_says_why_when_the_poet_is_unreachable(tmp_path: Path) -> None:
    out = _run("-i", "3", "-p", "layers=4", "-p", "layer_duration=1s", "-p", "genesis_offset=2s",
               "-p", "poet_unreachable=true", outputs=tmp_path)  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "miner published no ATX in epoch 0" in out.stdout
    assert "unreachable" in out.stdout


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns here needs root")
def test_plan_passes_in_network_namespaces_with_latency(tmp_path: Path) -> None:
    out = _run("-i", "4", "-p", "layers=4", "-p", "layer_duration=1s", "-p", "genesis_offset=3s",
               outputs=tmp_path, runner="local:netns")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (network,) = tmp_path.glob("*/network.jsonl")
    assert '"latency_ms":50.0' in network.read_text()  # the default shape was asked for


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns here needs root")
def test_a_schedule_found_in_simulation_fails_the_same_way_in_namespaces(tmp_path: Path) -> None:
    """Search in simulation, shrink, replay the printed command in network namespaces: the
    real network breaks the way the simulated one did (a node's layer hashes diverge)."""
    setup = Setup(miners=2, layers=4, layer_duration=1.0)
    found = search_cuts(setup, examples=20, heal=False, seed=1)
    assert found is not None and any(re.search(DIVERGED, p) for p in found.problems)
    command = shlex.split(setup.replay_command(found.schedule))
    assert command[:3] == ["harness", "run", "spacemesh:faults"]
    out = _run(*command[3:], "-p", "genesis_offset=3s", outputs=tmp_path, runner="local:netns",
               target="spacemesh:faults")  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(DIVERGED, out.stdout), out.stdout
    (network,) = tmp_path.glob("*/network.jsonl")
    assert '"drop":true' in network.read_text()  # the nodes asked for their cuts


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns here needs root")
def test_the_faults_case_passes_with_a_cut_that_heals(tmp_path: Path) -> None:
    schedule = '{"cuts": [{"start_s": 3, "end_s": 5, "a": [0], "b": [1, 2]}]}'
    out = _run("-i", "4", "-p", "layers=4", "-p", "layer_duration=1s", "-p", "genesis_offset=3s",
               "-p", f"schedule={schedule}", outputs=tmp_path, runner="local:netns",
               target="spacemesh:faults")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    changes = [json.loads(line) for line in (only_run_dir(tmp_path) / "network.jsonl").open()]
    asks = [c for c in changes if c.get("op") == "request"]
    cuts = [c for c in asks if '"drop": true' in json.dumps(c["asked"])]
    assert sorted(c["asked_by"] for c in cuts) == ["single/1", "single/2", "single/3"]
    heals = [c for c in asks if c["mono"] > cuts[-1]["mono"]]
    assert sorted(c["asked_by"] for c in heals) == ["single/1", "single/2", "single/3"]
    cut_for = heals[0]["mono"] - cuts[0]["mono"]
    assert 1.5 < cut_for < 2.5, cut_for  # the schedule's 2 s, give or take a poll


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns here needs root")
def test_a_process_fault_found_in_simulation_fails_in_namespaces_too(tmp_path: Path) -> None:
    """A process fault the network does not survive (its only PoET killed for good before
    the first round: no miner can publish an ATX; a killed node now syncs back from
    genesis, so killing nodes is survived), judged in simulation, then replayed by the
    printed command in network namespaces, where the supervisor plays it: the real network
    fails the same way."""
    setup = Setup(miners=3, layers=6)
    # at 5 s: after the set-up (the PoET published its address), before its round closes
    faults = parse_faults([{"at": "5s", "action": "kill", "targets": {"instances": ["single/0"]}}])
    problems = simulate(setup, faults)
    assert problems[0].startswith("single/0 (the PoET) was dead at the end"), problems
    assert problems[1:] and all("published no ATX in epoch 0" in p for p in problems[1:])
    path = write_faults(faults, tmp_path / "found")
    command = shlex.split(setup.replay_command(faults, path))
    assert command[:3] == ["harness", "run", "spacemesh:faults"] and "--faults" in command
    out = _run(*command[3:], outputs=tmp_path / "out", runner="local:netns",
               target="spacemesh:faults")  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "published no ATX in epoch 0" in out.stdout, out.stdout
    run_dir = only_run_dir(tmp_path / "out")
    steps = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]
    assert steps[0]["step"] == "applied" and steps[0]["action"] == "kill"


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns here needs root")
def test_the_network_survives_miners_killed_and_started_again_and_a_skewed_clock(
    tmp_path: Path,
) -> None:
    composition = ROOT / "scenarios/spacemesh/compositions/process-faults.toml"
    out = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--composition", str(composition), "-q",
         "--outputs", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    run = json.loads((only_run_dir(tmp_path) / "run.json").read_text())
    restarted = [i["id"] for i in run["instances"] if i["restarts"] == 1]
    assert len(restarted) == 2 and all(
        i["role"] == "miner" for i in run["instances"] if i["id"] in restarted)
    steps = (only_run_dir(tmp_path) / "faults.jsonl").read_text()
    assert '"action":"skew"' in steps and '"step":"undone"' in steps


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns here needs root")
def test_miners_started_again_after_the_network_ended_fail_saying_so(tmp_path: Path) -> None:
    """With `may_fail`, the others end once those that must report have checked. Two miners
    killed at 14 s and started again at 33 s came back to nothing, verified the layers
    past their vote window at once, empty, and failed naming a hash split at layer 4."""
    faults = tmp_path / "faults.toml"
    faults.write_text('[[faults]]\nat = "14s"\naction = "kill"\nduration = "19s"\n'
                      'targets = { instances = ["single/2", "single/3"] }\n')
    out = subprocess.run(
        [sys.executable, "-m", "harness", "run", "spacemesh:failed_nodes", "-q", "--faults",
         str(faults), "--outputs", str(tmp_path / "out"), "--timeout", "150"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    run = json.loads((only_run_dir(tmp_path / "out") / "run.json").read_text())
    failed = {i["id"]: i["reason"] for i in run["instances"] if i["outcome"] != "passed"}
    assert set(failed) == {"single/2", "single/3"}, failed
    assert all("started again after every node that must report had made its checks" in r
               for r in failed.values()), failed


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns here needs root")
def test_more_nodes_dead_than_may_fail_fails_at_once_naming_them(tmp_path: Path) -> None:
    """The PoET and the nodes waited for reports that could no longer come, to the run's
    timeout, which named none of the dead: the PoET, which publishes no report, counted as
    one that still might."""
    faults = tmp_path / "faults.toml"
    faults.write_text('[[faults]]\nat = "8s"\naction = "kill"\n'
                      'targets = { instances = ["single/5", "single/6", "single/7"] }\n')
    out = subprocess.run(
        [sys.executable, "-m", "harness", "run", "spacemesh:failed_nodes", "-i", "8", "-q",
         "-p", "may_fail=20", "--faults", str(faults), "--outputs", str(tmp_path / "out"),
         "--timeout", "120"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    run = json.loads((only_run_dir(tmp_path / "out") / "run.json").read_text())
    assert "timeout" not in run["reason"], run["reason"]
    # 7 nodes, 20 % of the 6 miners may fail: 5 reports expected, at most 4 can come
    assert ("first: single/0: failed: TestFailure: too few nodes reported: subscription to "
            "'reports' can no longer reach 5: 0 published, at most 4 more can; ended without "
            "publishing: single/5 (killed by fault 0 (kill)); single/6 (killed by fault 0 "
            "(kill)); single/7 (killed by fault 0 (kill))") in run["reason"], run["reason"]


def _faults(tmp_path: Path, partition_s: float | None) -> Path:
    """A halves partition at 8 s, for `partition_s` (None: never healed)."""
    until = f'duration = "{partition_s}s"\n' if partition_s else ""
    path = tmp_path / "faults.toml"
    path.write_text('[[faults]]\nat = "8s"\naction = "partition"\nkind = "halves"\n' + until
                    + 'targets = { role = ["gateway", "miner"] }\n')  # fmt: skip
    return path


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns here needs root")
@pytest.mark.parametrize(("partition_s", "passes"), [(8.0, True), (None, False)])
def test_partition_50_50_agrees_after_the_heal_and_fails_when_it_never_heals(
    tmp_path: Path, partition_s: float | None, passes: bool
) -> None:
    out = _run("-i", "8", "-p", "layers=12", "-p", "judge_after=18s", "-p", "check_slack=8s",
               "--faults", str(_faults(tmp_path, partition_s)), outputs=tmp_path / "out",
               runner="local:netns", target="spacemesh:partition_50_50")  # fmt: skip
    assert (out.returncode == 0) is passes, out.stdout + out.stderr
    if not passes:
        assert re.search(DIVERGED, out.stdout)  # the check names the diverging layer


class _Sync:
    def __init__(self) -> None:
        self.signalled: list[str] = []

    async def signal_entry(self, state: str) -> int:
        self.signalled.append(state)
        return len(self.signalled)


class _Seen(tuple[int, str]):
    """What `_observe_as_is` gives: what the watch found, its every layer verified."""

    statuses = [2] * 100  # CONFIRMED


async def _observe_as_is(env: object, api: object, watch: object, verified: int,
                         error: str, p: object = None) -> tuple[int, str]:  # fmt: skip
    """`plan.observe` without a node: what the watch found, as it found it."""
    return _Seen((verified, error))


class _Env:
    """What `_watch_own_node` reads of its instance's RunEnv."""

    def __init__(self, is_restart: bool = False) -> None:
        self.is_restart = is_restart
        self.sync = _Sync()


@pytest.mark.parametrize("restart", [False, True])
def test_the_watch_signals_each_new_layer_its_node_verified(
    monkeypatch: pytest.MonkeyPatch, restart: bool
) -> None:
    """The run's progress line shows how far the nodes got: each instance signals a layer
    its node verified for the first time, once (skipped layers are not made up); a
    restarted instance signals nothing (it would count its layers again). Not layer 0: a
    node reports 0 until it verified something, and "layer 0 verified" came before
    genesis."""
    import types

    import anyio

    from scenarios.spacemesh import plan

    layers = iter([0, 0, 1, 1, 2, 5, 5, 6])

    class Api:
        def __init__(self, ip: str, port: int, until: float | None = None) -> None:
            pass

        async def status(self) -> types.SimpleNamespace:
            return types.SimpleNamespace(verified_layer=next(layers), top_layer=7,
                                         connected_peers=2)

        def close(self) -> None:
            pass

    monkeypatch.setattr(plan, "NodeApi", Api)
    monkeypatch.setattr(plan, "observe", _observe_as_is)
    now = time.time()
    watch = plan.Watch("gateway", target=6, genesis=now - 10, epoch_duration=6.0,
                       deadline=now + 60, poll=0.0)  # fmt: skip
    env = _Env(is_restart=restart)
    assert anyio.run(plan._watch_own_node, env, "127.0.0.1", watch, {}, False) == (6, "")
    assert env.sync.signalled == ([] if restart else [
        "layer 1 verified", "layer 2 verified", "layer 5 verified", "layer 6 verified"])


def test_a_late_answer_from_the_node_is_asked_again_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hundred instances on two cores: a node's own API can miss a call's deadline. The
    watch asks again; only its own deadline fails the node."""
    import types

    import anyio

    from scenarios.spacemesh import plan

    calls: list[str] = []
    waits_until: list[float | None] = []

    class SlowApi:
        def __init__(self, ip: str, port: int, until: float | None = None) -> None:
            waits_until.append(until)

        async def status(self) -> types.SimpleNamespace:
            calls.append("status")
            if len(calls) == 1:
                raise TimeoutError("Deadline exceeded")
            return types.SimpleNamespace(verified_layer=3, top_layer=4, connected_peers=2)

        def close(self) -> None:
            pass

    monkeypatch.setattr(plan, "NodeApi", SlowApi)
    monkeypatch.setattr(plan, "observe", _observe_as_is)
    now = time.time()
    watch = plan.Watch("gateway", target=3, genesis=now - 10, epoch_duration=6.0,
                       deadline=now + 60, poll=0.0)  # fmt: skip
    result = anyio.run(plan._watch_own_node, _Env(), "127.0.0.1", watch, {}, False)
    assert result == (3, "") and calls == ["status", "status"]
    assert waits_until == [watch.deadline]  # each call may wait for its answer until then


def test_a_node_api_call_waits_until_the_given_time_and_at_least_the_fixed_timeout() -> None:
    import anyio

    from scenarios.spacemesh._api import TIMEOUT_S, NodeApi

    async def timeouts() -> list[float]:
        now = time.time()
        apis = [NodeApi("127.0.0.1", 1), NodeApi("127.0.0.1", 1, until=now + 40),
                NodeApi("127.0.0.1", 1, until=now - 5)]  # fmt: skip
        try:
            return [api.timeout() for api in apis]
        finally:
            for api in apis:
                api.close()

    fixed, later, past = anyio.run(timeouts)
    assert fixed == TIMEOUT_S and past == TIMEOUT_S and 39 < later <= 40


def _late_final_checks(monkeypatch: pytest.MonkeyPatch, verified: int, deadline_in: float,
                       late: int) -> tuple[Callable[[], tuple[int, str]], list[str]]:
    """A gateway's watch (target 3, its deadline `deadline_in` s from now) over a node that
    has verified layer `verified` and whose final checks miss their deadline `late` times:
    the watch to run, and what each final check was given."""
    import types

    import anyio

    from scenarios.spacemesh import plan

    class Api:
        def __init__(self, ip: str, port: int, until: float | None = None) -> None:
            pass

        async def status(self) -> types.SimpleNamespace:
            return types.SimpleNamespace(verified_layer=verified, top_layer=9,
                                         connected_peers=2)

        def close(self) -> None:
            pass

    observed: list[str] = []

    async def observe(env: object, api: object, watch: object, verified: int,
                      error: str, p: object = None) -> tuple[int, str]:  # fmt: skip
        observed.append(error)
        if len(observed) <= late:
            raise TimeoutError("Deadline exceeded")
        return _Seen((verified, error))

    monkeypatch.setattr(plan, "NodeApi", Api)
    monkeypatch.setattr(plan, "observe", observe)
    now = time.time()
    watch = plan.Watch("gateway", target=3, genesis=now - 10, epoch_duration=6.0,
                       deadline=now + deadline_in)  # fmt: skip
    run = functools.partial(plan._watch_own_node, _Env(), "127.0.0.1", watch, {}, False)
    return functools.partial(anyio.run, run), observed


def test_final_checks_are_asked_again_until_the_watch_s_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node that verified its target early has until the watch's deadline to answer the
    final checks, not only `OBSERVE_TRIES` calls: on a starved machine (100 nodes on 2
    cores) one node answering late failed the whole run."""
    from scenarios.spacemesh import plan

    late = 2 * plan.OBSERVE_TRIES
    run, observed = _late_final_checks(monkeypatch, 3, 60, late)  # verified: stops at once
    assert run() == (3, "")
    assert len(observed) == late + 1


@pytest.mark.parametrize("late", [1, 2, 3])
def test_final_checks_that_miss_their_deadline_are_asked_again_then_fail_not_crash(
    monkeypatch: pytest.MonkeyPatch, late: int
) -> None:
    """The final checks read the node's API too: on a starved machine a call misses its
    deadline. They are asked again (`OBSERVE_TRIES` in all); past that the instance fails
    naming what the watch found and the API's silence (it crashed on the first miss)."""
    from harness.sdk import TestFailure
    from scenarios.spacemesh import plan

    run, observed = _late_final_checks(monkeypatch, 2, -1, late)  # past: stops at once
    if late < plan.OBSERVE_TRIES:
        verified, error = run()
        assert verified == 2 and "not 3, by the deadline" in error
        assert len(observed) == late + 1
    else:
        with pytest.raises(TestFailure, match=r"not 3, by the deadline .*; the node's API "
                           r"did not answer the final checks \(3 tries\)"):  # fmt: skip
            run()
        assert len(observed) == plan.OBSERVE_TRIES


class _Gate:
    """A node API whose base calls all wait until every one of them was asked: asked one
    after another (as the final checks were), they would wait for good."""

    CALLS = ("layers", "atxs", "smesher_id", "is_smeshing", "smeshing_status")

    def __init__(self, failing: str = "") -> None:
        import anyio

        self.asked: list[str] = []
        self._all = anyio.Event()
        self._failing = failing

    async def _ask(self, name: str, value: object) -> object:
        self.asked.append(name)
        if len(self.asked) == len(self.CALLS):
            self._all.set()
        await self._all.wait()
        if name == self._failing:
            raise TimeoutError("Deadline exceeded")
        return value

    async def layers(self, start: int, end: int) -> object:
        import types

        view = types.SimpleNamespace(hash="h", state_root="r", block="", status=2)
        return await self._ask("layers", [view] * (end - start + 1))

    async def atxs(self) -> object:
        import types

        atxs = [types.SimpleNamespace(smesher=s, target_epoch=e) for s in "ab" for e in (1, 2)]
        return await self._ask("atxs", atxs)

    async def smesher_id(self) -> object:
        return await self._ask("smesher_id", "a")

    async def is_smeshing(self) -> object:
        return await self._ask("is_smeshing", True)

    async def smeshing_status(self) -> object:
        return await self._ask("smeshing_status", (2, ""))


@pytest.mark.parametrize("atx_epochs", [False, True])
def test_the_final_checks_ask_the_node_everything_at_once(atx_epochs: bool) -> None:
    """A starved node answers each call when its loop comes round: asked one after another
    at 100 nodes, the final checks took up to 28 s a node. The ATX list goes into the
    report only for the check that reads it (every instance reads every report)."""
    import types

    import anyio

    from scenarios.spacemesh import plan

    api = _Gate()
    env = types.SimpleNamespace(global_seq=3, instance_id="single/3")
    watch = plan.Watch("miner", target=2, genesis=0.0, epoch_duration=6.0, deadline=0.0)

    async def run() -> Report:
        with anyio.fail_after(5):
            return await plan.observe(env, api, watch, 2, "",  # type: ignore[arg-type]
                                      {"check_atx_epochs": atx_epochs})

    r = anyio.run(run)
    assert sorted(api.asked) == sorted(_Gate.CALLS)
    assert r.smesher == "a" and r.is_smeshing and r.hashes == ["h"] * 3
    assert r.atx_smeshers == ["a", "b"] and r.verified_layer == 2
    assert r.atxs == ([["a", 1], ["a", 2], ["b", 1], ["b", 2]] if atx_epochs else [])


def test_a_final_check_that_misses_its_deadline_raises_its_own_error() -> None:
    """The watch asks the final checks again on a `TimeoutError` (above): made at once,
    the calls still raise it as such, not wrapped in a group."""
    import types

    import anyio

    from scenarios.spacemesh import plan

    api = _Gate(failing="is_smeshing")
    env = types.SimpleNamespace(global_seq=3, instance_id="single/3")
    watch = plan.Watch("miner", target=2, genesis=0.0, epoch_duration=6.0, deadline=0.0)
    with pytest.raises(TimeoutError, match="Deadline exceeded"):
        anyio.run(plan.observe, env, api, watch, 2, "")
