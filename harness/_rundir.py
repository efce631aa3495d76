"""A run's output directory: its id, layout and the JSON files in it (docs/contracts.md, 7)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import IO, Any

import orjson


def new_run_id() -> str:
    """'YYYYmmdd-HHMMSS-<6 hex>', sortable by start time."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def write_json(path: Path, data: Any) -> None:
    """Write atomically (readers never see half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    os.replace(tmp, path)


class JsonLines:
    """An append-only JSON-lines file, flushed by the caller's rhythm."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] = path.open("ab")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        self._file.write(orjson.dumps(record, default=str) + b"\n")

    def flush(self) -> None:
        """Make what was written visible to readers (e.g. `harness logs --follow`)."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close."""
        self._file.close()
