"""Fixtures for the Spacemesh-style network's tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
import trio.testing
from structlog.testing import LogCapture


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """Trio with a virtual clock that jumps whenever every task waits (simulated time)."""
    return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}


@pytest.fixture(autouse=True)
def _quiet_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process networks log below warning as cheap no-ops; the old setup comes back after.
    No logger keeps its setup past a test: a command's `configure_logging` asks loggers to
    cache theirs on first use, and a module's logger would then keep it in later tests."""
    configure = structlog.configure

    def uncached(**settings: Any) -> None:
        configure(**(settings | {"cache_logger_on_first_use": False}))

    monkeypatch.setattr(structlog, "configure", uncached)
    saved = structlog.get_config()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.fixture
def logs(_quiet_logs: None) -> list[dict[str, Any]]:
    """The event dicts (info and up) the code under test logs, in order."""
    capture = LogCapture()
    structlog.configure(
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    return capture.entries
