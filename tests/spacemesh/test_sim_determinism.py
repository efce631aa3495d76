"""``python -m scenarios.spacemesh.sim``: one seed, one run (the logs are identical)."""

from __future__ import annotations

import subprocess
import sys

ARGS = ["--miners", "4", "--gateways", "1", "--layers", "4", "--log-level", "info"]


def _run(seed: int) -> tuple[list[str], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "scenarios.spacemesh.sim", *ARGS, "--seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    # Each line starts with its wall-clock timestamp; the figures line has wall and CPU times.
    lines = [line.split(" ", 1)[1] for line in proc.stderr.splitlines() if " " in line]
    figures = " ".join(
        f for f in proc.stdout.split() if not f.startswith(("wall=", "speedup", "cpu="))
    )
    return lines, figures


def test_the_same_seed_gives_identical_logs() -> None:
    first, figures = _run(5)
    assert sum("layer verified" in line for line in first) >= 4 * 5  # every node, every layer
    assert "agree=True" in figures
    assert _run(5) == (first, figures)
