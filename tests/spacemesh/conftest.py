"""Fixtures for the Spacemesh-style network's tests."""

from __future__ import annotations

from typing import Any

import pytest
import trio.testing


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """Trio with a virtual clock that jumps whenever every task waits (simulated time)."""
    return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
