"""The go-spacemesh system-test cases, live in network namespaces at small size: each case
passes with its fault, and a run that breaks the property on purpose fails with the check
naming it. CI (`-m "not long"`) runs the fast ones; the rest are `long` (`nox -s long`).
The 30-instance compositions are `nox -s systest`'s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT

pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="local:netns here needs root"),
]


def _run(case: str, *args: str, tmp_path: Path,
         faults: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`harness run spacemesh:<case>` in namespaces with `faults` (TOML [[faults]])."""
    extra: list[str] = []
    if faults is not None:
        path = tmp_path / "faults.toml"
        path.write_text(faults)
        extra = ["--faults", str(path)]
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", f"spacemesh:{case}", "--runner", "local:netns",
         "-q", "--outputs", str(tmp_path / "out"), *extra, *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


def _kill(at: str, targets: str, duration: str = "") -> str:
    until = f'duration = "{duration}"\n' if duration else ""
    return f'[[faults]]\nat = "{at}"\naction = "kill"\n{until}targets = {targets}\n'


def _faults_played(tmp_path: Path) -> set[str]:
    """The actions the run's faults applied (faults.jsonl)."""
    lines = next((tmp_path / "out").glob("*/faults.jsonl")).read_text().splitlines()
    return {json.loads(line)["action"] for line in lines
            if json.loads(line).get("step") == "applied"}


# --- CI: the fast ones ---------------------------------------------------------------


def test_smeshing_applies_transfers_and_agrees_on_state(tmp_path: Path) -> None:
    """ATXs every epoch, the same eligibilities, rewards, state roots and accounts; the
    transfers submitted through the API are applied on every node."""
    out = _run("smeshing", "-i", "6", tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_equivocation_fails_when_a_node_skips_the_malfeasance_rule(tmp_path: Path) -> None:
    """The gateway (node 0) builds and accepts no malfeasance proof: the check names it,
    while the honest miners do hold proofs against every shared identity."""
    out = _run("equivocation", "-p", "dishonest=1", tmp_path=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "single/1 has no malfeasance proof against" in out.stdout, out.stdout
    assert "single/2 has no malfeasance proof" not in out.stdout, out.stdout


# --- long: the rest, each with its fault -----------------------------------------------


@pytest.mark.long
def test_equivocation_passes_when_every_node_follows_the_rule(tmp_path: Path) -> None:
    out = _run("equivocation", tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.long
def test_add_nodes_late_miners_sync_from_genesis(tmp_path: Path) -> None:
    out = _run("add_nodes", tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.long
def test_failed_nodes_the_rest_agree_after_60_percent_are_killed(tmp_path: Path) -> None:
    out = _run("failed_nodes", tmp_path=tmp_path)  # the case's own kill
    assert out.returncode == 0, out.stdout + out.stderr
    assert _faults_played(tmp_path) == {"kill"}


@pytest.mark.long
@pytest.mark.parametrize("kind", ["sides", "halves"])
def test_partitions_heal(tmp_path: Path, kind: str) -> None:
    case = "partition_30_70" if kind == "sides" else "partition_50_50"
    out = _run(case, tmp_path=tmp_path)  # the case's own partition
    assert out.returncode == 0, out.stdout + out.stderr
    assert _faults_played(tmp_path) == {"partition"}


@pytest.mark.long
@pytest.mark.parametrize(("for_good", "passes"), [(False, True), (True, False)])
def test_poets_failures_survive_a_poet_down_and_fail_without_any(
    tmp_path: Path, for_good: bool, passes: bool
) -> None:
    """Two of three PoETs down in turn: miners use the survivor. Every PoET killed for good
    at the second epoch: the ATX-every-epoch check fails."""
    faults = _kill("13s", '{ role = "poet" }') if for_good else None  # else the case's own
    out = _run("poets_failures", tmp_path=tmp_path, faults=faults)
    assert (out.returncode == 0) is passes, out.stdout + out.stderr
    if not passes:
        assert "published no ATX" in out.stdout or "knows no ATX" in out.stdout, out.stdout


@pytest.mark.long
def test_different_poets_agree(tmp_path: Path) -> None:
    out = _run("different_poets", tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.long
def test_short_timeskew_skewed_miners_keep_participating(tmp_path: Path) -> None:
    out = _run("short_timeskew", tmp_path=tmp_path)  # the case's own skew
    assert out.returncode == 0, out.stdout + out.stderr
    assert _faults_played(tmp_path) == {"skew"}


@pytest.mark.long
def test_checkpoint_restarted_miners_recover_from_it(tmp_path: Path) -> None:
    out = _run("checkpoint", tmp_path=tmp_path)  # the case's own restart
    assert out.returncode == 0, out.stdout + out.stderr
    assert _faults_played(tmp_path) == {"restart"}
