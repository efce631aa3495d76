"""Message tracing: one JSON line per gossip publish, receipt and delivery."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Literal

import orjson

TraceKind = Literal["publish", "receive", "deliver"]


class Tracer:
    """Appends to ``<outputs>/trace.jsonl``; a no-op without an outputs path.

    ``mono`` is ``time.monotonic()`` (CLOCK_MONOTONIC, shared by every process on the host),
    which orders events across instances.
    """

    def __init__(self, outputs: str | os.PathLike[str] | None) -> None:
        self._file: IO[bytes] | None = None
        if outputs is not None:
            path = Path(outputs) / "trace.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab", buffering=0)

    @property
    def enabled(self) -> bool:
        """True when lines are written."""
        return self._file is not None

    def record(
        self, kind: TraceKind, msg_id: str, topic: str, sender: str, receiver: str, size: int
    ) -> None:
        """Write one trace line (``from`` and ``to`` are node ids or addresses)."""
        if self._file is None:
            return
        line = {
            "ts": time.time(),
            "mono": time.monotonic(),
            "kind": kind,
            "msg_id": msg_id,
            "topic": topic,
            "from": sender,
            "to": receiver,
            "size": size,
        }
        self._file.write(orjson.dumps(line) + b"\n")

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
