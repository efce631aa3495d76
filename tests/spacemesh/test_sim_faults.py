"""Process and time faults in the simulation: kill, restart, pause, resume and clock skew in
virtual time, the fault vocabulary searched over them, and one seed giving one result."""

from __future__ import annotations

import json
import math
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings

from harness.faults import Fault, FaultError, Member, load_faults, parse_faults
from scenarios.spacemesh import MeshParams, memory_cluster
from scenarios.spacemesh import faults as cli
from scenarios.spacemesh._cluster import MemoryCluster
from scenarios.spacemesh._memnet import MemoryLink, MemoryNetwork
from scenarios.spacemesh._node import Node
from scenarios.spacemesh._simfaults import Plan
from scenarios.spacemesh._transport import Connection
from scenarios.spacemesh.faults import Setup, fault_lists, search, simulate
from scenarios.spacemesh.plan import SETTLE_LAYERS

PARAMS = MeshParams(layers_per_epoch=3, pow_bits=4)
SMALL = Setup(miners=3, layers=6, layer_duration=1.0)


def layer_gauge(node: Node) -> int:
    """The layer its layer loop last got to (a loop that stopped leaves it where it was)."""
    return node.layers_done


def miner(c: MemoryCluster, i: int = -1) -> tuple[str, Node]:
    proc = [p for p in c.processes.values() if p.role == "miner"][i]
    assert isinstance(proc.part, Node)
    return proc.id, proc.part


def test_instance_ids_are_those_of_harness_run() -> None:
    assert SMALL.members() == [
        Member("single/0", "single", "poet"),
        Member("single/1", "single", "gateway"),
        Member("single/2", "single", "miner"),
        Member("single/3", "single", "miner"),
        Member("single/4", "single", "miner"),
    ]


@pytest.mark.anyio
async def test_a_paused_host_gets_its_frames_in_order_on_resume_and_sends_nothing() -> None:
    """TCP keeps receiving for a SIGSTOPped process: nothing is lost, it waits."""
    net = MemoryNetwork(0, MemoryLink(delay=0.01))
    accepted: list[Connection] = []

    async def handler(conn: Connection) -> None:
        accepted.append(conn)
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        await tg.start(net.run)
        listener = await net.transport("10.0.0.2").listen("10.0.0.2:1")
        tg.start_soon(listener.serve, handler)
        a = await net.transport("10.0.0.1").dial("10.0.0.2:1")
        await anyio.sleep(0.1)
        (b,) = accepted
        net.pause("10.0.0.2")
        for i in range(3):
            await a.send(b"%d" % i)
        with anyio.move_on_after(1.0) as nothing:
            await b.receive()
        assert nothing.cancelled_caught  # nothing is delivered while paused...
        with anyio.move_on_after(1.0) as frozen:
            await b.send(b"x")
        assert frozen.cancelled_caught  # ...and it sends nothing
        net.resume("10.0.0.2")
        with anyio.fail_after(0.1):  # due long ago: delivered at once
            assert [await b.receive() for _ in range(3)] == [b"0", b"1", b"2"]
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_killed_node_stops_and_peers_see_it_gone() -> None:
    async with memory_cluster(miners=3, seed=4, layer_duration=1.0, params=PARAMS) as c:
        gw = c.gateways[0]
        await c.clock.sleep_until(gw.layer_start(4) + 0.5)
        victim_id, victim = miner(c)
        before = layer_gauge(victim)
        messages = len(victim.mesh.atxs) + len(victim.mesh.layer_proposals(4))
        c.kill(victim_id)
        await c.clock.sleep_until(gw.layer_start(8) + 0.5)
        assert not c.processes[victim_id].alive
        assert layer_gauge(victim) == before  # its layer loop is gone
        assert len(victim.mesh.atxs) + len(victim.mesh.layer_proposals(4)) == messages
        assert layer_gauge(gw) >= before + 4  # the others go on
        assert victim.node_id not in gw.gossip.peer_ids  # its connections ended
        with pytest.raises(ConnectionRefusedError):  # nothing listens at its address
            await c.net.transport("10.9.9.9").dial(victim.config.listen)


@pytest.mark.anyio
async def test_a_restarted_node_has_its_identity_but_no_memory_and_catches_up() -> None:
    async with memory_cluster(miners=3, seed=4, layer_duration=1.0, params=PARAMS) as c:
        gw = c.gateways[0]
        await c.clock.sleep_until(gw.layer_start(4) + 0.5)
        victim_id, old = miner(c)
        c.kill(victim_id)
        await c.clock.sleep_until(gw.layer_start(6) + 0.5)
        await c.start(victim_id)
        _, new = miner(c)
        assert new is not old and c.processes[victim_id].restarts == 1
        assert (new.smesher_id, new.config.listen) == (old.smesher_id, old.config.listen)
        assert not new.mesh.atxs  # nothing kept: it syncs like a late joiner
        await c.clock.sleep_until(gw.layer_start(13) + 0.5)
        assert new.status()["verified_layer"] >= gw.status()["verified_layer"] - 1 >= 10
        # From the epoch it came back in on, it decides what the network decided.
        theirs, mine = gw.layers(), new.layers()
        assert [s.hash for s in mine[6:11]] == [s.hash for s in theirs[6:11]]
        assert new.atxs_published >= 1  # and it smeshes again


@pytest.mark.anyio
async def test_a_paused_node_does_nothing_until_resumed_then_gets_what_was_sent() -> None:
    async with memory_cluster(miners=3, seed=4, layer_duration=1.0, params=PARAMS) as c:
        gw = c.gateways[0]
        await c.clock.sleep_until(gw.layer_start(4) + 0.5)
        victim_id, victim = miner(c)
        before = layer_gauge(victim)
        proposals = len(victim.mesh.layer_proposals(5))
        c.pause(victim_id)
        await c.clock.sleep_until(gw.layer_start(7) + 0.5)
        assert c.processes[victim_id].paused
        assert layer_gauge(victim) == before  # no timer fired
        assert len(victim.mesh.layer_proposals(5)) == proposals  # nothing was delivered...
        assert len(gw.mesh.layer_proposals(5)) > proposals
        host = victim.config.listen.rpartition(":")[0]
        assert c.net._held.get(host)  # ...it waits in its socket buffers
        assert victim.node_id in gw.gossip.peer_ids  # and its connections stay up
        c.resume(victim_id)
        await c.clock.sleep_until(gw.layer_start(7) + 0.6)
        assert layer_gauge(victim) >= before + 3  # overdue timers fired at once
        assert victim.mesh.layer_proposals(5).keys() == gw.mesh.layer_proposals(5).keys()
        await c.clock.sleep_until(gw.layer_start(11) + 0.5)
        assert [s.hash for s in victim.layers()[:9]] == [s.hash for s in gw.layers()[:9]]


@pytest.mark.anyio
async def test_a_skewed_node_reads_the_offset_and_drift_and_its_layers_follow() -> None:
    async with memory_cluster(miners=2, seed=4, layer_duration=1.0, params=PARAMS) as c:
        gw = c.gateways[0]
        await c.clock.sleep_until(gw.layer_start(3) + 0.2)
        victim_id, victim = miner(c)
        proc = c.processes[victim_id]
        c.skew(victim_id, offset=2.0, drift=0.01)
        t0 = c.clock.now()
        assert proc.clock.now() == pytest.approx(t0 + 2.0)
        assert victim.current_layer() == gw.current_layer() + 2
        await anyio.sleep(10.0)
        assert proc.clock.now() == pytest.approx(c.clock.now() + 2.0 + 0.01 * 10.0)
        # Its layer loop runs on its own clock: two layers (and a bit) ahead.
        assert victim.current_layer() == gw.current_layer() + 2
        assert layer_gauge(victim) == layer_gauge(gw) + 2
        deadline = proc.clock.now() + 1.0
        await proc.clock.sleep_until(deadline)
        assert proc.clock.now() == pytest.approx(deadline)
        c.skew(victim_id)  # undone: it reads true time again
        assert proc.clock.now() == pytest.approx(c.clock.now())


def test_a_fault_list_plays_the_same_way_every_time() -> None:
    """One seed, one result: trio's scheduler runs in its deterministic mode, seeded."""
    poet_down_in_epoch_0 = (Fault.from_data({"action": "kill", "at": 5, "duration": 3,
                                             "targets": {"instances": ["single/0"]}}),)  # fmt: skip
    first = simulate(SMALL, poet_down_in_epoch_0)
    assert any("published no ATX in epoch 0: PoET poet:80 unreachable" in p for p in first), first
    assert simulate(SMALL, poet_down_in_epoch_0) == first


def test_a_search_with_one_seed_finds_the_same_schedule() -> None:
    a = search(SMALL, examples=10, actions=("kill",), heal=False, seed=3)
    b = search(SMALL, examples=10, actions=("kill",), heal=False, seed=3)
    assert a is not None and b is not None
    assert (a.schedule, a.problems) == (b.schedule, b.problems)


def _faults(*tables: dict[str, object]) -> tuple[Fault, ...]:
    return tuple(Fault.from_data(t) for t in tables)


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(fault_lists(SMALL, actions=("kill", "restart", "pause", "skew", "partition", "isolate"),
                   heal=True))  # fmt: skip
@example(_faults({"action": "kill", "at": 7, "duration": 2, "targets": {"instances": ["single/3"]}},
                 {"action": "pause", "at": 8, "duration": 2, "targets": {"instances": ["single/2"]}}))
@example(_faults({"action": "restart", "at": 8, "targets": {"instances": ["single/4"]}},
                 {"action": "skew", "at": 7, "duration": 3, "offset": "-800ms", "drift": 0.01,
                  "targets": {"role": "gateway"}}))  # fmt: skip
# Clocks that jump ahead: what they send comes too early for the others, who once dropped
# every later copy of it, synced ones too (the first), and with nobody relaying it, got it
# only when a sync happened to pick its sender, too late to be judged (the second).
@example(_faults({"action": "skew", "at": 7.25, "duration": 1, "offset": 1.751,
                  "targets": {"percentage": 21}}))  # fmt: skip
@example(_faults({"action": "kill", "at": 8, "duration": 1, "targets": {"count": 1}},
                 {"action": "skew", "at": 9, "duration": 1, "offset": 2.051,
                  "targets": {"count": 2}}))  # fmt: skip
# A majority cut while every clock runs 1 s ahead: once both heal, a layer start is lost to
# the clocks going back, and the one sync a layer each node made missed the other side.
# A node that knows it lacks messages (some wait for an ATX, or a voted block has no
# certificate here) now syncs a second time in the layer.
@example(_faults({"action": "partition", "at": 7, "duration": 3, "kind": "majority"},
                 {"action": "skew", "at": 7, "duration": 3, "offset": 1.001,
                  "targets": {"group": ["single"]}}))  # fmt: skip
# Every process restarted into a majority cut: each side backed off from the other for
# 5-15 s, so two 1 s layers after the heal layer 4's hash still differed. A dial backoff
# of two layers (`dial_backoff`) reconnects them in time.
@example(_faults({"action": "kill", "at": 6, "duration": 1, "targets": {"percentage": 100}},
                 {"action": "partition", "at": 7, "duration": 1, "kind": "majority"}))  # fmt: skip
def test_the_network_survives_healed_faults(faults: tuple[Fault, ...]) -> None:
    """The property the protocol meets: once every fault is undone (a kill restarts the
    process after its duration, a pause resumes, a skew and a cut end), every node agrees
    and every miner's ATX is known. Any fault may hit any instance, the PoET included, and
    a process fault may take down several at once. A restarted node resumes from its data
    directory and dials the peers it kept; a restarted PoET closes the round it had open."""
    assert simulate(SMALL, faults) == []


@pytest.mark.parametrize(("at", "down", "cut", "targets"), [
    (6, 1, 1, {"percentage": 100}),  # layer 4's hash differed
    (7, 1, 2, {"count": 3}),  # layer 5's
    (8, 1, 1, {"percentage": 100}),  # a restarted miner reached no PoET in two epochs
])  # fmt: skip
def test_processes_restarted_into_a_cut_reconnect_soon_after_it_heals(
    at: float, down: float, cut: float, targets: dict[str, object]
) -> None:
    """Killed, restarted as a majority cut begins, then healed: with a dial backoff of
    5-15 s whatever the layers (1 s here), each of these failed; two layers' worth heals."""
    faults = _faults({"action": "kill", "at": at, "duration": down, "targets": targets},
                     {"action": "partition", "at": at + down, "duration": cut, "kind": "majority"})
    assert simulate(SMALL, faults) == []


def test_at_one_moment_links_heal_before_a_process_restarts() -> None:
    """Two of three miners killed for 1 s during a 1 s majority cut: restarted at the
    moment the cut ended, they dialed before it did, failed, backed off 5-15 s from the
    others, and layer 5's hash differed. A restarted process boots before it dials."""
    faults = _faults({"action": "kill", "at": 7, "duration": 1, "targets": {"count": 2}},
                     {"action": "partition", "at": 7, "duration": 1, "kind": "majority"})
    plan = Plan.of(faults, SMALL.members())
    assert plan.steps == ((7.0, 0, True), (7.0, 1, True), (8.0, 1, False), (8.0, 0, False))
    assert simulate(SMALL, faults) == []


def test_a_count_on_processes_is_drawn_from_those_still_running_as_in_a_run() -> None:
    """As the run's conductor draws it: a miner killed for good is not drawn again by a
    later kill's count, and is drawn again once a restart brought it back."""
    members = SMALL.members()
    again = {"action": "kill", "at": 9, "targets": {"role": "miner", "count": 1, "seed": 0}}
    (first,) = Fault.from_data(again).resolve(members).instances  # seed 0's of them all
    plan = Plan.of(_faults({"action": "kill", "at": 8, "targets": {"instances": [first]}},
                           again), members)
    assert first not in plan.resolved[1].instances and len(plan.resolved[1].instances) == 1
    back = Plan.of(_faults({"action": "kill", "at": 8, "duration": 0.5,
                            "targets": {"instances": [first]}}, again), members)
    assert back.resolved[1].instances == (first,)


def test_search_finds_and_shrinks_a_process_fault_and_the_file_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Healed kills are survived (the property above), so this search lets them last: it
    finds lists that take the network down, and shrinks one to a single kill for good of
    one instance (the PoET, whose end leaves nothing to judge)."""
    argv = ["--miners", "3", "--layers", "6", "--actions", "kill", "--no-heal",
            "--examples", "40", "--out", str(tmp_path)]  # fmt: skip
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    (path,) = tmp_path.glob("found-*.json")
    (fault,) = load_faults(path)  # shrunk to one fault...
    assert parse_faults(json.loads(path.read_text())["faults"]) == (fault,)  # round trip
    assert fault.action == "kill" and fault.duration is None  # ...a kill for good
    assert fault.targets.instances == ("single/0",), fault  # ...of one instance
    assert f"harness run spacemesh:faults -i 5 --faults {path} " in out
    assert " -p schedule= " in out  # the case's default cuts are off
    said = out.split("the check said: ")[1].splitlines()[0]
    assert said.startswith("single/0 (the PoET) was dead at the end")
    # The file replays in simulation with the same verdict.
    assert cli.main(["--miners", "3", "--layers", "6", "--faults", str(path)]) == 1
    assert capsys.readouterr().out.startswith("failed: " + said)


def test_a_found_list_loses_the_faults_its_failure_does_not_need() -> None:
    """After hypothesis, the list is tried without each fault: a healed pause before the
    PoET's kill for good goes, the kill stays."""
    pause, kill = _faults(
        {"action": "pause", "at": 2, "duration": 1, "targets": {"instances": ["single/3"]}},
        {"action": "kill", "at": 3, "targets": {"instances": ["single/0"]}})
    problems = simulate(SMALL, (pause, kill))
    assert problems
    found = cli.without_each(cli.Found((pause, kill), problems), SMALL)
    assert found.schedule == (kill,) and found.problems == simulate(SMALL, (kill,))
    alone = cli.without_each(cli.Found((kill,), problems), SMALL)
    assert alone.schedule == (kill,)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_search_exits_at_once_and_leaves_no_data_directory(sig: int) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm: the simulated nodes' data directories are in the temp dir")
    search_ = subprocess.Popen(
        [sys.executable, "-m", "scenarios.spacemesh.faults", "--examples", "1000"],
        cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ours = f"spacemesh-sim-{search_.pid}-*"  # not another test's (they run side by side)
    try:
        deadline = time.monotonic() + 60
        while not list(shm.glob(ours)):  # a simulated run is on
            assert time.monotonic() < deadline and search_.poll() is None
            time.sleep(0.05)
        search_.send_signal(sig)
        _, err = search_.communicate(timeout=10)
    finally:
        search_.kill()
    assert search_.returncode == 128 + sig
    assert err == "spacemesh-faults: interrupted\n"
    assert not list(shm.glob(ours))


def test_cli_refuses_what_the_simulation_cannot_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hog = tmp_path / "hog.json"
    hog.write_text('{"faults": [{"action": "hog", "at": 5, "targets": {"count": 1}}]}')
    for argv, message in (
        (["--faults", str(hog)], "the simulation cannot model hog"),
        (["--actions", "kill,limit"], "--actions: the simulation models"),
        (["--actions", ""], "--actions: name one or more of shape, "),  # was "not 'none'"
        (["--faults", str(tmp_path / "nope.json")], "No such file or directory"),
        (["--layers", "99999999"], "at most 10000 nodes"),  # it ran without end
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(("content", "suffix", "message"), [
    (b"\xff\xfe{}", ".json", "not UTF-8 text"),
    (b"[" * 100_000, ".json", "nested too deeply to read"),
    (b"x = " + b"[" * 100_000, ".toml", "nested too deeply to read"),
    (b'{"faults": 5', ".json", "not JSON"),
    # What `harness run --faults` refuses, the search's --faults refused too (it read its
    # own way and simulated these).
    (b'{"faults": [], "extra": 1}', ".json", "must hold exactly one key, faults"),
    (b'[global]\ntotal_instances = 5\n[[faults]]\nat = 5\naction = "heal"\n', ".toml",
     "must hold exactly one key, faults"),
])  # fmt: skip
def test_a_faults_file_that_cannot_be_read_is_a_fault_error(
    tmp_path: Path, content: bytes, suffix: str, message: str
) -> None:
    """The first three were tracebacks (UnicodeDecodeError, RecursionError)."""
    path = tmp_path / f"f{suffix}"
    path.write_bytes(content)
    with pytest.raises(FaultError, match=message):
        load_faults(path)


def test_overlapping_pauses_and_skews_stack_as_on_real_processes() -> None:
    """The first pause's end resumed an instance a later pause still held, and a skew's end
    gave the true clock back while a later one was in force: a search's verdict on such a
    schedule was not what its replay on real processes gives (tests/test_conductor.py)."""
    from types import SimpleNamespace

    from scenarios.spacemesh._simfaults import Player

    now = [0.0]
    calls: list[tuple[float, str, tuple[float, ...]]] = []
    cluster = SimpleNamespace(
        clock=SimpleNamespace(now=lambda: now[0]),
        pause=lambda i: calls.append((now[0], "pause", ())),
        resume=lambda i: calls.append((now[0], "resume", ())),
        skew=lambda i, o, d: calls.append((now[0], "skew", (o, d))))
    target = {"instances": ["single/2"]}
    faults = _faults({"action": "pause", "at": 1, "duration": 3, "targets": target},
                     {"action": "pause", "at": 2, "duration": 4, "targets": target},
                     {"action": "skew", "at": 1, "duration": 5, "offset": 10, "drift": 0.1,
                      "targets": target},
                     {"action": "skew", "at": 2, "duration": 1, "offset": -3, "targets": target})
    plan = Plan.of(faults, SMALL.members())
    player = Player(cluster, plan, 0.0)  # type: ignore[arg-type]
    for t, i, apply in plan.steps:
        now[0] = t
        anyio.run(player.step, plan.resolved[i], i, apply)
    assert sorted(calls) == [
        (1, "pause", ()), (1, "skew", (10, 0.1)), (2, "pause", ()), (2, "skew", (-3, 0.0)),
        (3, "skew", (pytest.approx(10.2), 0.1)),  # the earlier skew, its drift run on
        # 4: the first pause ended; the second holds the instance until 6
        (6, "resume", ()), (6, "skew", (0.0, 0.0))]


@pytest.mark.parametrize("end", ["kill", "restart"])
def test_an_end_of_a_paused_instance_ends_its_pauses_as_on_real_processes(end: str) -> None:
    """A pause for good, then a kill (or restart) of its instance, then a pause of 1 s: the
    first pause still held the instance, so the last one's end did not resume it."""
    from types import SimpleNamespace

    from scenarios.spacemesh._simfaults import Player

    now = [0.0]
    calls: list[tuple[float, str]] = []
    alive = {"single/2": True}

    def kill(i: str) -> None:
        calls.append((now[0], "kill"))
        alive[i] = False

    async def start(i: str) -> None:
        calls.append((now[0], "start"))
        alive[i] = True

    class Process:
        @property
        def alive(self) -> bool:
            return alive["single/2"]

    cluster = SimpleNamespace(
        clock=SimpleNamespace(now=lambda: now[0]), kill=kill, start=start,
        processes={"single/2": Process()},
        pause=lambda i: calls.append((now[0], "pause")),
        resume=lambda i: calls.append((now[0], "resume")))
    target = {"instances": ["single/2"]}
    faults = _faults({"action": "pause", "at": 1, "targets": target},
                     {"action": end, "at": 2, "targets": target,
                      **({"duration": 1} if end == "kill" else {})},
                     {"action": "pause", "at": 4, "duration": 1, "targets": target})
    plan = Plan.of(faults, SMALL.members())
    player = Player(cluster, plan, 0.0)  # type: ignore[arg-type]
    for t, i, apply in plan.steps:
        now[0] = t
        anyio.run(player.step, plan.resolved[i], i, apply)
    ended = [(2, "resume"), (2, "kill"), (3, "start")] if end == "kill" else [
        (2, "resume"), (2, "start")]
    assert calls == [(1, "pause"), *ended, (4, "pause"), (5, "resume")]


def test_a_node_paused_for_good_fails_as_the_real_run_fails_it() -> None:
    """A pause never undone: the judge skipped the paused node and waited for it for ever,
    which hung `--no-heal` searches (the README's own command); the real run fails it at
    its timeout."""
    problems = simulate(SMALL, _faults({"action": "pause", "at": 8,
                                        "targets": {"instances": ["single/2"]}}))
    assert any(p.startswith("single/2") and "paused at the end and never resumed" in p
               for p in problems), problems
    resumed = _faults({"action": "pause", "at": 8, "duration": 1,
                       "targets": {"instances": ["single/2"]}})
    assert simulate(SMALL, resumed) == []


def test_a_kill_for_good_is_judged_as_the_real_plan_judges_it() -> None:
    """The simulation said "survived" of any kill for good ('may_die'), while the real run
    failed: the PoET checks every report, the plan waits for every gateway's, and for every
    miner's unless the replay's `may_fail` spares it, which the replay command lacked."""
    def kill(instance: str) -> tuple[Fault, ...]:
        return _faults({"action": "kill", "at": 8, "targets": {"instances": [instance]}})

    members = {m.id: m.role for m in SMALL.members()}
    poet = next(i for i, r in members.items() if r == "poet")
    gateway = next(i for i, r in members.items() if r == "gateway")
    miner = next(i for i, r in members.items() if r == "miner")
    assert any("(the PoET) was dead at the end" in p for p in simulate(SMALL, kill(poet)))
    assert any(p.startswith(gateway) and "the plan waits for its report" in p
               for p in simulate(SMALL, kill(gateway)))
    assert simulate(SMALL, kill(miner)) == []
    command = SMALL.replay_command(kill(miner), Path("f.json"))
    assert f"-p may_fail={math.ceil(100 / SMALL.miners)}" in command
    assert "may_fail" not in SMALL.replay_command(
        _faults({"action": "kill", "at": 8, "duration": 2,
                 "targets": {"instances": [miner]}}), Path("f.json"))


def test_the_replay_judges_the_nodes_when_the_simulation_did() -> None:
    """The simulation judges the nodes `SETTLE_LAYERS` after the last fault settled; the
    replayed run judged them at the plan's usual time. A kill of every miner at 200 s (the
    run's layers long over) "survived" in simulation, where the nodes were judged after it,
    and failed for real ("never played: the run's instances ended first")."""
    late = _faults({"action": "kill", "at": 200, "targets": {"role": "miner"}})
    command = shlex.split(SMALL.replay_command(late, Path("f.json")))
    settled = 200 - SMALL.genesis_offset + SETTLE_LAYERS * SMALL.layer_duration
    assert command[command.index(f"judge_after={settled:g}s") - 1] == "-p"
    timed = _faults({"action": "kill", "at": 8, "duration": 2, "targets": {"role": "miner"}})
    assert f"judge_after={10 - SMALL.genesis_offset + SETTLE_LAYERS * SMALL.layer_duration:g}s" \
        in SMALL.replay_command(timed, Path("f.json"))
