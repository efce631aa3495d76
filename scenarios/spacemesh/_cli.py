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
