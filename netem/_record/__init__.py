"""The record of a network's changes: one JSON line each, in the run's `network.jsonl`.

Every line has `ts` (Unix seconds), `mono` (CLOCK_MONOTONIC seconds), `op`, `asked_by`,
`asked` (the call's arguments, addresses as strings) and `applied` (what changed, after
validation). `netem.replay` reads it back.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from netem._shape import LinkShape


def shape_json(shape: LinkShape | None) -> dict[str, Any] | None:
    return None if shape is None else shape.to_dict()


class Recorder:
    """Appends change lines to a file; `None` path records nothing."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = None if path is None else Path(path)
        self._file: TextIO | None = None
        self._lock = threading.Lock()
        if self.path is not None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, op: str, asked_by: str, asked: Any, applied: Any) -> None:
        if self._file is None:
            return
        line = {
            "ts": time.time(),
            "mono": time.monotonic(),
            "op": op,
            "asked_by": asked_by,
            "asked": asked,
            "applied": applied,
        }
        with self._lock:
            self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
