"""Shared command-line plumbing: one-line errors, clean exit on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

import anyio


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def address(value: str) -> str:
    """argparse type for ``host:port``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected host:port, got {value!r}")
    return value


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
        anyio.run(runner, backend="asyncio")
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
