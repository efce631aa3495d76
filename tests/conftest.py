"""Shared fixtures: write throw-away plans, run the CLI as a user would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def harness_cli(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS`, as a separate process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT,
    )


@pytest.fixture
def make_plan(tmp_path: Path) -> Callable[[str, str, str], Path]:
    """make_plan(name, manifest_toml, plan_py) -> the plans root holding it."""

    def make(name: str, manifest: str, code: str = "") -> Path:
        root = tmp_path / "plans"
        d = root / name
        d.mkdir(parents=True)
        (d / "manifest.toml").write_text(textwrap.dedent(manifest))
        (d / "__init__.py").write_text("")
        if code:
            (d / "plan.py").write_text(textwrap.dedent(code))
        return root

    return make
