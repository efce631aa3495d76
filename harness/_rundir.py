"""Writing a run directory's JSON files (its id: `harness._runid`; run.json: `harness.observe._runrecord`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


def write_json(path: Path, data: Any) -> None:
    """Write atomically (readers never see half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    os.replace(tmp, path)
