"""Each scenario case's check passes on agreeing reports and fails, naming the problem, when
its property is broken on purpose (the checks are pure functions over API reports)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from harness._errors import UsageError
from harness.plans._manifest import load_manifest
from scenarios.spacemesh import _checks as checks
from scenarios.spacemesh._checks import Report
from scenarios.spacemesh.plan import (
    case_problems,
    equivocators,
    expected_reports,
    judged_reports,
    transfers,
)

ROOT = Path(__file__).resolve().parents[2]
CASES = ["smeshing", "add_nodes", "failed_nodes", "partition_30_70", "partition_50_50",
         "poets_failures", "different_poets", "short_timeskew", "equivocation", "checkpoint"]  # fmt: skip


def node(seq: int, role: str = "miner", **kw: object) -> Report:
    smesher = f"{seq:02x}" * 32
    base: dict[str, object] = dict(
        seq=seq, instance=f"i{seq}", role=role, smesher=smesher, is_smeshing=role == "miner",
        verified_layer=6, hashes=["aa", "bb", "cc", "dd", "ee", "ff", "00"],
        atx_smeshers=[f"{s:02x}" * 32 for s in range(1, 5)], smeshing_error="",
        atxs=[[f"{s:02x}" * 32, e] for s in range(1, 5) for e in (1, 2)],
        state_roots=["r0", "r1", "r2", "r3", "r4", "r5", "r6"],
        accounts={f"{s:02x}" * 32: [100, 0] for s in range(1, 5)},
        coinbase=smesher, eligibilities={"1": {"a": 3, "b": 2}},
        tx_states={"t1": "applied"}, checkpoint="c0", statuses=[2] * 7,
    )  # fmt: skip
    base.update(kw)
    return Report(**base)  # type: ignore[arg-type]


def network(**changes: dict[str, object]) -> list[Report]:
    """A gateway (1) and three miners (2-4) that agree, but for `changes` by seq."""
    out = [node(1, "gateway")] + [node(s) for s in (2, 3, 4)]
    return [dataclasses.replace(r, **changes.get(f"n{r.seq}", {})) for r in out]


def test_every_case_is_in_the_manifest_with_a_composition() -> None:
    plan = load_manifest(ROOT / "scenarios/spacemesh/manifest.toml")
    for case in CASES:
        assert case in plan.cases and plan.cases[case].description
        assert (ROOT / f"scenarios/spacemesh/compositions/{case}.toml").exists()
    # shared params: declared once, a bare value changes a case's default
    assert plan.cases["smeshing"].params["layers"].default == 9
    assert plan.cases["start"].params["layers"].default == 8
    assert plan.cases["failed_nodes"].params["may_fail"].default == 60.0


def test_a_bare_value_for_an_undeclared_param_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "scenarios/spacemesh/manifest.toml").read_text()
    (tmp_path / "manifest.toml").write_text(text.replace("  layers = 9\n", "  layerz = 9\n"))
    with pytest.raises(UsageError, match="'layerz' is not in \\[params\\]"):
        load_manifest(tmp_path / "manifest.toml")


def test_agreeing_reports_pass_every_check() -> None:
    reports = network()
    assert checks.atx_every_epoch(reports, 1, 2) == []
    assert checks.same_state(reports) == []
    assert checks.rewards_reach_coinbases(reports) == []
    assert checks.same_eligibilities(reports) == []
    assert checks.transactions_applied(reports, ["t1"]) == []
    assert checks.same_checkpoint(reports) == []
    assert checks.same_hashes(reports, 6) == []


def test_smeshing_fails_on_a_missing_atx_diverging_state_eligibility_or_tx() -> None:
    no_epoch2 = network(n2={"atxs": [[f"{s:02x}" * 32, 1] for s in range(1, 5)]})
    assert checks.atx_every_epoch(no_epoch2, 1, 2)[0] == "i2 knows no ATX of i2 for epochs [2]"
    roots = network(n3={"state_roots": ["r0", "r1", "XX"]})
    assert "layer 2: i3 has state root" in checks.same_state(roots)[0]
    accounts = network(n4={"accounts": {"02" * 32: [99, 0]}})
    assert "disagree on accounts" in checks.same_state(accounts)[0]
    poor = network(n2={"accounts": {}})
    assert any("has no reward on i2" in p for p in checks.rewards_reach_coinbases(poor))
    elig = network(n3={"eligibilities": {"1": {"a": 3, "b": 1}}})
    assert "compute different eligibilities" in checks.same_eligibilities(elig)[0]
    pending = network(n4={"tx_states": {"t1": "mempool"}})
    assert checks.transactions_applied(pending, ["t1"]) == [
        "i4: 1 of 1 transactions not applied: t1"]
    many = [f"{n:012x}" for n in range(1000)]  # each reason held all 1,000 ids (21 kB)
    (short, *_) = checks.transactions_applied(network(), many)
    assert short.endswith("1000 of 1000 transactions not applied: 000000000000, "
                          "000000000001, 000000000002 and 997 more")
    assert checks.transactions_applied(network(), []) == ["no transaction was submitted"]


def test_smeshing_fails_when_applied_transfers_moved_no_funds() -> None:
    # A spend that ran but failed is "applied" (it paid its fee): the recipients' balances
    # tell whether the transfers happened.
    sent = dict(transfers(2))
    to = list(sent)
    received = {**node(1).accounts, to[0]: [10, 0], to[1]: [11, 0]}
    assert sent == {to[0]: 10, to[1]: 11}
    assert checks.transfers_received(network(**{f"n{s}": {"accounts": received}
                                                for s in (1, 2, 3, 4)}), sent) == []  # fmt: skip
    failed = network(**{f"n{s}": {"accounts": received} for s in (1, 2, 3)})
    assert checks.transfers_received(failed, sent) == [
        f"i4: transfers not received: {to[0][:12]} has 0, not 10, {to[1][:12]} has 0, not 11"]
    problems = case_problems(_params(transfers=2), failed, 6, [], ["t1"])
    assert any(p.startswith("i4: transfers not received") for p in problems)


def test_a_diverging_node_is_named_against_the_view_most_nodes_hold() -> None:
    """The first node's view was the reference: with it on the minority's side of a
    partition, every node of the majority was named as the one that diverged."""
    split = ["aa", "XX", "cc", "dd", "ee", "ff", "00"]
    minority_first = network(n1={"hashes": split})
    assert checks.same_hashes(minority_first, 6) == [
        "layer 1: i1 has hash XX, i2 and 2 others have bb"]
    halves = network(n1={"hashes": split}, n3={"hashes": split})  # 2 against 2: the first's
    assert checks.same_hashes(halves, 6) == ["layer 1: i2 and i4 have hash bb, i1 and 1 other "
                                             "have XX"]


def test_the_nodes_of_one_diverging_view_are_named_in_one_line() -> None:
    """A partition's minority side repeated the same line for each of its nodes, in every
    instance's reason."""
    side = ["aa", "bb", "cc", "XX", "YY", "ZZ", "WW"]
    reports = ([node(s) for s in range(1, 7)] + [node(s, hashes=side) for s in range(7, 12)]
               + [node(12, hashes=["aa", "bb", "QQ", "dd", "ee", "ff", "00"])])
    assert checks.same_hashes(reports, 6) == [
        "layer 3: i7, i8, i9 and 2 others have hash XX, i1 and 5 others have dd",
        "layer 2: i12 has hash QQ, i1 and 5 others have cc"]


def test_add_nodes_fails_when_a_late_node_did_not_sync_from_genesis() -> None:
    # A sync that starts late: the joiner lacks (or differs on) the early layers.
    late = network(n4={"hashes": ["??", "bb", "cc", "dd", "ee", "ff", "00"]})
    assert "layer 0: i4 has hash" in checks.same_hashes(late, 6)[0]
    assert "layer 0: i4" in case_problems(_params(), late, 6, [], [])[0]


def test_failed_nodes_needs_the_survivors_to_report() -> None:
    """What `REPORTS.collect` waits for (a check of the count after it, made from the
    reports' own count, could never fail: it is gone)."""
    p = _params(may_fail=60.0)
    # 1 gateway + 9 miners: 6 may die, 4 must report.
    assert expected_reports(p, 10) == 4
    assert expected_reports(_params(), 10) == 10
    # 1 gateway + 2 miners: 60 % rounded up is both, but a miner must be left to report
    # (failed_nodes -i 4 passed with every miner dead); 100 % lets them all go
    assert expected_reports(p, 3) == 2
    assert expected_reports(_params(may_fail=100.0), 3) == 1
    assert expected_reports(p, 1) == 1  # no miner at all: the gateway, not 2 of 1


def test_a_node_whose_report_came_after_those_that_must_report_checks_itself() -> None:
    # failed_nodes with nobody killed: every node reports, the first 3 are collected, and
    # the fourth diverged.
    reports = network()
    late = dataclasses.replace(reports[3], hashes=["aa", "XX", "cc", "dd", "ee", "ff", "00"])
    judged = judged_reports(reports[:3], late)
    assert judged == [*reports[:3], late]
    assert "layer 1: i4 has hash XX" in case_problems(_params(may_fail=60.0), judged, 6, [], [])[0]
    assert judged_reports(reports[:3], reports[1]) == reports[:3]


def test_partition_fails_when_it_never_healed() -> None:
    # Two sides that kept deciding on their own: different hashes from the cut on.
    split = network(n3={"hashes": ["aa", "bb", "cc", "XX", "YY", "ZZ", "WW"]},
                    n4={"hashes": ["aa", "bb", "cc", "XX", "YY", "ZZ", "WW"]})  # fmt: skip
    assert checks.same_hashes(split, 6) == ["layer 3: i3 and i4 have hash XX, i1 and 1 other "
                                            "have dd"]
    stuck = network(n4={"verified_layer": 2})
    assert checks.verified(stuck, 6) == ["i4 verified layer 2, not 6"]


def test_equivocation_fails_for_a_node_that_skips_the_malfeasance_rule() -> None:
    bad = ["03" * 32]
    honest = network(**{f"n{s}": {"malicious": bad} for s in (1, 2, 4)})
    assert checks.malfeasance_detected(honest, bad) == []
    lax = network(**{f"n{s}": {"malicious": bad} for s in (1, 2)})  # i4 skips the rule
    assert checks.malfeasance_detected(lax, bad) == [
        f"i4 has no malfeasance proof against {bad[0][:12]}"]
    wrong = network(**{f"n{s}": {"malicious": [*bad, "02" * 32]} for s in (1, 2, 4)})
    assert "accuses honest" in checks.malfeasance_detected(wrong, bad)[0]
    assert checks.malfeasance_detected(network(), []) != []


def test_equivocators_pair_up_the_shared_keys() -> None:
    # 1 gateway, 10 miners (indices 1..10): 40% share keys, pairwise: 2 pairs.
    assert equivocators(_params(shared_keys=40.0), 11) == {2: 1, 4: 3}
    assert equivocators(_params(), 11) == {}


def test_checkpoint_fails_when_nodes_serve_different_ones() -> None:
    differ = network(n3={"checkpoint": "c1"})
    assert checks.same_checkpoint(differ) == ["nodes serve 2 different checkpoints"]
    assert checks.same_checkpoint(network(n2={"checkpoint": ""})) == ["i2 served no checkpoint"]


def _manifest_default(param: str) -> object:
    manifest = tomllib.loads((ROOT / "scenarios/spacemesh/manifest.toml").read_text())
    return manifest["params"][param]["default"]


def _params(**kw: object) -> dict[str, object]:
    p: dict[str, object] = {"gateways": 1, "layers_per_epoch": 3}
    p.update(kw)
    return p


def test_the_blocks_made_are_counted_by_a_node_that_reported_without_an_error() -> None:
    failed = dataclasses.replace(node(1, "gateway"), error="late", blocks=["b"] * 7)
    fine = node(2, blocks=["", "", "", "b3", "", "b5", ""])
    assert checks.blocks_made([failed, fine], 3, 6) == "layers 3-6 with a block: 2 of 4"
    assert checks.blocks_made([failed], 3, 6) == "no layer to count blocks in"


def test_min_blocks_fails_a_run_whose_layers_are_empty_by_default() -> None:
    """A run whose layers all came out empty passed: the blocks were only noted (the
    simulation already failed such a run, "the nodes agree only on empty layers")."""
    empty = [dataclasses.replace(r, blocks=[""] * 7) for r in network()]
    default = _manifest_default("min_blocks")
    assert default == 1
    assert case_problems(_params(min_blocks=default), empty, 6, [], []) == [
        "only 0 of layers 3-6 have a block, fewer than min_blocks=1"]
    assert case_problems(_params(min_blocks=0), empty, 6, [], []) == []  # only noted
    # no layer past epoch 0 judged (layers=2): nothing to count, nothing failed
    assert case_problems(_params(min_blocks=default), empty, 2, [], []) == []
    some = [dataclasses.replace(r, blocks=["", "", "", "b3", "", "b5", ""]) for r in network()]
    assert case_problems(_params(min_blocks=2), some, 6, [], []) == []
    assert case_problems(_params(min_blocks=3), some, 6, [], []) == [
        "only 2 of layers 3-6 have a block, fewer than min_blocks=3"]
