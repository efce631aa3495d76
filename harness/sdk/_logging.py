"""Instance logging: structlog to `<outputs>/log.jsonl` and a readable line on stderr."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from harness.sdk._runenv import RunEnv


def _mono(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["ts"] = time.time()
    event["mono"] = time.monotonic()
    return event


def configure_instance_logging(env: RunEnv) -> None:
    """JSON lines (with ts, mono and the instance id) to log.jsonl; console to stderr."""
    env.outputs_path.mkdir(parents=True, exist_ok=True)
    json_file = (env.outputs_path / "log.jsonl").open("a", buffering=1)
    console = structlog.dev.ConsoleRenderer(colors=False)
    json_renderer = structlog.processors.JSONRenderer()

    def tee(logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        json_file.write(str(json_renderer(logger, name, dict(event))) + "\n")
        return console(logger, name, event)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _mono,
            structlog.processors.format_exc_info,
            tee,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(instance=env.instance_id)
