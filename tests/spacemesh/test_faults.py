"""Fault schedules searched in simulation and judged by the plan's own check."""

from __future__ import annotations

import io
import re

import pytest

from harness.faults import Cut, FaultSchedule
from scenarios.spacemesh import faults
from scenarios.spacemesh.faults import Setup, search_cuts, simulate
from scenarios.spacemesh.plan import POLL_S, SETTLE_LAYERS, Watch

DIVERGED = r"ha(s|ve) hash"  # a check naming a node (or nodes) whose layer hash differs

QUICK = Setup(miners=2, layers=4, layer_duration=1.0)


def test_without_faults_the_simulated_network_passes_the_plans_check() -> None:
    assert simulate(QUICK, FaultSchedule()) == []


def test_a_gateway_cut_off_for_good_is_caught_by_the_plans_check() -> None:
    problems = simulate(QUICK, FaultSchedule((Cut(3.0, None, (0,), (1, 2)),)))
    assert any(re.search(DIVERGED, p) for p in problems), problems


def test_search_finds_and_shrinks_a_cut_that_never_heals() -> None:
    progress = io.StringIO()
    found = search_cuts(QUICK, examples=20, heal=False, seed=1, progress=progress)
    assert found is not None and found.problems
    # A line per schedule tried: those drawn until one failed, then the shrinking.
    lines = progress.getvalue().splitlines()
    drawn = [line for line in lines if " of 20: " in line]
    shrunk = [line for line in lines if ": shrinking, try " in line]
    assert drawn and shrunk and len(drawn) + len(shrunk) == len(lines)
    assert lines[: len(drawn)] == drawn and drawn[-1].split(": ")[-1].startswith("failed (")
    assert all(line.startswith("spacemesh-faults: schedule ") for line in drawn)
    assert shrunk[0].startswith("spacemesh-faults: shrinking, try 1: ")
    assert found.schedule.to_json() in progress.getvalue()
    (cut,) = found.schedule.cuts  # shrunk to a single cut...
    assert cut.end_s is None  # ...that never heals
    assert simulate(QUICK, found.schedule) == found.problems  # deterministic: replays exactly
    command = QUICK.replay_command(found.schedule)
    assert command.startswith("harness run spacemesh:faults -i 4 ")
    assert found.schedule.to_json() in command


def test_the_network_survives_cuts_that_heal() -> None:
    """The property itself: after any cuts of one to three layers heal, every node agrees
    again within `SETTLE_LAYERS` layers, because gossip's digest sync repairs what a cut-off
    node missed (flooding never resends). With that sync switched off it fails."""
    assert search_cuts(QUICK, examples=12, seed=2) is None


def test_nodes_are_judged_only_once_the_network_had_time_to_settle() -> None:
    """A node cut off while it verifies the target has verified layers on its own view; the
    plan judges it `SETTLE_LAYERS` layers after the last heal, when they agree again."""
    watch = Watch.of("gateway", target=4, genesis=100.0, layer_duration=1.0,
                     params=QUICK.params(), check_slack=20.0, healed_at=6.0)  # fmt: skip
    assert watch.not_before == 100.0 + 6.0 + SETTLE_LAYERS
    status = {"verified_layer": 4, "top_layer": 7, "connected_peers": 2}
    assert watch.step(107.9, status) is None and watch.step(108.0, status) == ""
    assert Watch.of("gateway", target=4, genesis=100.0, layer_duration=1.0,
                    params=QUICK.params(), check_slack=20.0).step(104.5, status) == ""  # fmt: skip
    assert simulate(QUICK, FaultSchedule((Cut(3.0, 6.0, (0,), (1, 2)),))) == []


def test_a_restarted_node_is_judged_only_once_it_had_a_peer_to_sync_from() -> None:
    """Started again after every other node had ended, a node verified the layers past its
    vote window at once, empty, from what it held: it failed naming a hash split."""
    late = Watch.of("miner", target=4, genesis=100.0, layer_duration=1.0,
                    params=QUICK.params(), check_slack=5.0, restarted_at=130.0)  # fmt: skip
    assert late.deadline == 130.0 + QUICK.params().hdist + 1 + 5.0  # time to sync from then
    alone = {"verified_layer": 30, "top_layer": 30, "connected_peers": 0}
    assert late.step(130.5, alone) is None and late.step(late.deadline - 0.1, alone) is None
    assert late.step(late.deadline + 0.1, alone) == (
        "started again, but found no peer to sync from by its deadline (top layer 30): had "
        "every other node ended?")
    back = Watch.of("miner", target=4, genesis=100.0, layer_duration=1.0,
                    params=QUICK.params(), check_slack=5.0, restarted_at=130.0)  # fmt: skip
    peered = {**alone, "connected_peers": 3}
    assert back.step(130.5, peered) is None  # one look to sync first
    assert back.step(131.5, peered) == ""
    no_atx = Watch.of("miner", target=40, genesis=100.0, layer_duration=1.0,
                      params=QUICK.params(), check_slack=5.0, restarted_at=130.0)  # fmt: skip
    assert no_atx.step(no_atx.atx_after + 1, peered, (0, "")) == (  # late joiners' too
        "miner published no ATX in the two epochs after its (re)start: no PoET proof arrived")
    never_stopped = Watch.of("miner", target=4, genesis=100.0, layer_duration=1.0,
                             params=QUICK.params(), check_slack=5.0)  # fmt: skip
    assert never_stopped.step(130.5, alone) == ""  # its own view counts (a partition's)


def test_a_node_is_watched_twice_a_layer_and_no_more_often_than_every_half_second() -> None:
    """Each look is a gRPC call into the node's process: at 4 s layers, every 2 s."""
    def poll(layer_duration: float) -> float:
        return Watch.of("miner", target=4, genesis=100.0, layer_duration=layer_duration,
                        params=QUICK.params(), check_slack=20.0).poll  # fmt: skip

    assert poll(4.0) == 2.0 and poll(2.0) == 1.0
    assert poll(0.5) == POLL_S == 0.5


def test_before_its_target_layer_a_node_is_looked_at_once_a_layer_and_for_an_atx_check(
) -> None:
    """No look before the target layer starts could pass the watch: until then the
    instance looks once a layer (the run's progress line: "layer 5 verified 63/100"; it did
    not look at all, and the line showed no layer until the end), and wakes for a miner's
    ATX check one epoch after genesis; from the target layer on, `POLLS_PER_LAYER` a layer."""
    params = QUICK.params()
    epoch = params.layers_per_epoch * 4.0
    gateway = Watch.of("gateway", target=8, genesis=100.0, layer_duration=4.0,
                       params=params, check_slack=20.0)  # fmt: skip
    assert gateway.wait(90.0) == 4.0 and gateway.wait(130.0) == 2.0
    assert gateway.wait(131.0) == gateway.poll == 2.0 and gateway.wait(133.0) == 2.0
    miner = Watch.of("miner", target=8, genesis=100.0, layer_duration=4.0,
                     params=params, check_slack=20.0)  # fmt: skip
    assert miner.wait(100.0 + epoch - 3.0) == 3.0  # woken for the ATX check
    assert miner.wants_atx_status(100.0 + epoch + 0.01)
    miner.step(100.0 + epoch + 0.01, {"verified_layer": 0, "top_layer": 3,
                                      "connected_peers": 4}, (1, ""))  # fmt: skip
    assert miner.wait(100.0 + epoch + 0.01) == 4.0
    judged_late = Watch.of("gateway", target=8, genesis=100.0, layer_duration=4.0,
                           params=params, check_slack=20.0, judge_after=200.0)  # fmt: skip
    assert judged_late.wait(180.0) == 4.0 and judged_late.wait(199.0) == 2.0


def test_cli_prints_the_replay_command(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--miners", "2", "--layers", "4", "--no-heal", "--examples", "10", "--cuts"]
    assert faults.main(argv) == 1
    out = capsys.readouterr().out
    assert "failing schedule" in out and "harness run spacemesh:faults -i 4 " in out
    assert faults.main(["--schedule", '{"cuts": []}', "--miners", "2", "--layers", "4"]) == 0
    with pytest.raises(SystemExit) as exit_:
        faults.main(["--schedule", '{"cuts": [{"start_s": 1, "a": [0], "b": [9]}]}'])
    assert exit_.value.code == 2
    assert "no instance 9 (there are 4)" in capsys.readouterr().err
