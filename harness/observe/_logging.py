"""Structured logs: JSON lines (with ts and mono) to a file, readable colour on stderr."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

from harness._errors import UsageError

LEVELS = ("debug", "info", "warning", "error", "critical")

# Handlers this module installed on the root logger, so that a second call replaces them.
_installed: list[logging.Handler] = []


def _add_clock(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict.setdefault("ts", time.time())
    event_dict.setdefault("mono", time.clock_gettime(time.CLOCK_MONOTONIC))
    return event_dict


def _add_instance(instance: str) -> structlog.types.Processor:
    def add(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("instance", instance)
        return event_dict

    return add


def configure_logging(
    *,
    json_path: Path | None,
    console: bool = True,
    level: str = "info",
    instance: str | None = None,
) -> None:
    """Send structlog (and stdlib logging) records to `json_path` as JSON lines and, when
    `console`, to stderr as readable text (coloured on a terminal).

    Every JSON line carries `ts` (Unix seconds), `mono` (CLOCK_MONOTONIC seconds), `level`,
    `event`, `logger` and, when given, `instance`. Calling it again replaces the outputs.
    """
    level = level.lower()
    if level not in LEVELS:
        raise UsageError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_clock,
    ]
    if instance is not None:
        shared.append(_add_instance(instance))

    root = logging.getLogger()
    for h in _installed:
        root.removeHandler(h)
        h.close()
    _installed.clear()

    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(json_path, encoding="utf-8")
        fh.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(default=str),
                ],
            )
        )
        _installed.append(fh)
    if console:
        ch = logging.StreamHandler(sys.stderr)
        ch.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    _drop_keys("ts", "mono"),
                    # A leading UTC time: `harness logs` places the plain lines that follow
                    # a rendered record (a traceback, say) at that record's time.
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
                ],
            )
        )
        _installed.append(ch)
    for h in _installed:
        root.addHandler(h)
    root.setLevel(getattr(logging, level.upper()))

    structlog.configure(
        processors=[
            # First, so a call below the level costs one check, not the processors after it.
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _drop_keys(*keys: str) -> structlog.types.Processor:
    def drop(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for k in keys:
            event_dict.pop(k, None)
        return event_dict

    return drop


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; `name` becomes the `logger` field of its lines."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
