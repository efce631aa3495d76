"""Shared command-line plumbing: one-line errors, logs on stderr, clean exit on signals."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

import anyio
import structlog

from ._transport import split_address

LOG_LEVELS = ("debug", "info", "warning", "error")

MAX_NODES = 10_000
MAX_LAYERS = 100_000
"""A node walks every layer from genesis to now: beyond these a run would not end in any
useful time (or at all)."""
MIN_LAYER_S, MAX_LAYER_S = 0.1, 86_400.0
MAX_PROPOSALS_PER_LAYER = 1000
"""As the plan's own param (manifest.toml): each expected proposal costs every node work."""


def check_layers(layer_duration: float, proposals_per_layer: int) -> None:
    """ValueError naming the option when a layer's length or its expected proposals are
    out of range (NaN included)."""
    if not MIN_LAYER_S <= layer_duration <= MAX_LAYER_S:
        raise ValueError(f"--layer-duration must be {MIN_LAYER_S:g} to {MAX_LAYER_S:g} "
                         f"seconds, not {layer_duration!r}")
    if not 1 <= proposals_per_layer <= MAX_PROPOSALS_PER_LAYER:
        raise ValueError(f"--proposals-per-layer must be 1 to {MAX_PROPOSALS_PER_LAYER}, "
                         f"not {proposals_per_layer}")


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def address(value: str) -> str:
    """argparse type for ``host:port`` (`split_address`'s rule)."""
    try:
        split_address(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def configure_logging(level: str) -> None:
    """Log lines on stderr from ``level`` up; a call below it is a no-op (cheap).

    Only the command-line programs call this; under the harness an instance's logs are set
    up by the harness (JSON lines in its outputs).
    """
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def run_until_signalled(main: Callable[[], Awaitable[None]], prog: str) -> int:
    """Run ``main`` on asyncio until it returns or SIGINT/SIGTERM arrives; 0 on a clean stop."""

    async def runner() -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            await main()
            tg.cancel_scope.cancel()

    try:
        from harness.sdk import run_on  # imported anyway: the clock (HarnessClock)

        run_on("uvloop", runner)  # as the plan's nodes (manifest.toml)
    except (OSError, ValueError, BaseExceptionGroup) as exc:
        cause = first_error(exc)
        if cause is None:
            raise
        print(f"{prog}: error: {cause}", file=sys.stderr)
        return 1
    return 0


def first_error(exc: BaseException) -> OSError | ValueError | None:
    """The first ``OSError``/``ValueError`` in a (possibly nested) exception group."""
    if isinstance(exc, OSError | ValueError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_error(inner)
            if found is not None:
                return found
    return None
