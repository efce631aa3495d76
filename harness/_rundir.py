"""A run's output directory: its id and run.json (docs/contracts.md, 7)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import orjson


def new_run_id() -> str:
    """'YYYYmmdd-HHMMSS-<6 hex>', sortable by start time."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def write_json(path: Path, data: Any) -> None:
    """Write atomically (readers never see half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    os.replace(tmp, path)
