"""Shared fixtures of the observability tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.observe._fixture import FixtureSpec, make_run


@pytest.fixture
def run_factory(tmp_path: Path) -> Callable[..., Path]:
    """Builds a fixture run directory under `<tmp>/outputs` from FixtureSpec fields."""
    outputs = tmp_path / "outputs"

    def make(**fields: object) -> Path:
        return make_run(outputs, FixtureSpec(**fields))  # type: ignore[arg-type]

    return make
