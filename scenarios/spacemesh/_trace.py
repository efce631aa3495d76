"""Message tracing: one event per gossip publish, receipt and delivery, in the block form,
gzip-compressed, that the harness reads (harness.observe._tracefile)."""

from __future__ import annotations

import os
import time
from typing import Literal

from harness.observe import TraceWriter

TraceKind = Literal["publish", "receive", "deliver"]


class Tracer:
    """Appends to ``<outputs>/trace.jsonl.gz``; a no-op without an outputs path.

    Buffered: what is written is readable at least once a second of events (a node killed
    with SIGKILL loses about the last second's); `close()` writes the rest. ``mono`` is
    ``time.monotonic()`` (CLOCK_MONOTONIC, shared by every process on the host), which
    orders events across instances.
    """

    def __init__(self, outputs: str | os.PathLike[str] | None) -> None:
        self._writer = TraceWriter(outputs) if outputs is not None else None

    @property
    def enabled(self) -> bool:
        """True when events are written."""
        return self._writer is not None

    def record(
        self, kind: TraceKind, msg_id: str, topic: str, sender: str, receiver: str, size: int
    ) -> None:
        """Write one event (``from`` and ``to`` are node ids or addresses)."""
        if self._writer is not None:
            self._writer.write(
                (time.time(), time.monotonic(), kind, msg_id, topic, sender, receiver, size)
            )

    def close(self) -> None:
        """Write what is buffered and close the file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
