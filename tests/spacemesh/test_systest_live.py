"""The go-spacemesh system-test cases, live in network namespaces at small size: each case
passes with its fault, and a run that breaks the property on purpose fails with the check
naming it. CI (`-m "not long"`) runs the fast ones; the rest are `long` (`nox -s long`).
The 30-instance compositions are `nox -s systest`'s."""

from __future__ import annotations

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
    faults = _kill("12s", '{ role = "miner", percentage = 60, seed = 1 }')
    out = _run("failed_nodes", tmp_path=tmp_path, faults=faults)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.long
@pytest.mark.parametrize("kind", ["sides", "halves"])
def test_partitions_heal(tmp_path: Path, kind: str) -> None:
    case = "partition_30_70" if kind == "sides" else "partition_50_50"
    share = "percentage = 30, seed = 2, " if kind == "sides" else ""
    faults = (f'[[faults]]\nat = "8s"\naction = "partition"\nkind = "{kind}"\nduration = "8s"\n'
              f'targets = {{ {share}role = ["gateway", "miner"] }}\n')  # fmt: skip
    out = _run(case, tmp_path=tmp_path, faults=faults)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.long
@pytest.mark.parametrize(("for_good", "passes"), [(False, True), (True, False)])
def test_poets_failures_survive_a_poet_down_and_fail_without_any(
    tmp_path: Path, for_good: bool, passes: bool
) -> None:
    """Two of three PoETs down in turn: miners use the survivor. Every PoET killed for good
    at the second epoch: the ATX-every-epoch check fails."""
    if for_good:
        faults = _kill("13s", '{ role = "poet" }')
    else:
        faults = (_kill("7s", '{ instances = ["single/1"] }', "6s")
                  + _kill("19s", '{ instances = ["single/2"] }', "6s"))  # fmt: skip
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
    faults = ('[[faults]]\nat = "1s"\naction = "skew"\noffset = "500ms"\n'
              'targets = { role = "miner", count = 2, seed = 3 }\n')  # fmt: skip
    out = _run("short_timeskew", tmp_path=tmp_path, faults=faults)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.long
def test_checkpoint_restarted_miners_recover_from_it(tmp_path: Path) -> None:
    faults = ('[[faults]]\nat = "16s"\naction = "restart"\n'
              'targets = { role = "miner", percentage = 50, seed = 5 }\n')  # fmt: skip
    out = _run("checkpoint", tmp_path=tmp_path, faults=faults)
    assert out.returncode == 0, out.stdout + out.stderr
