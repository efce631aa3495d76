"""Writing a run directory's files whole (its id: `harness._runid`; run.json: `harness.observe._runrecord`)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import orjson


def write_json(path: Path, data: Any) -> None:
    """Write atomically (readers never see half a file)."""
    write_files({path: orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)})


def write_files(files: dict[Path, bytes]) -> None:
    """Write every file whole or none: each goes to a temporary file first, and only when
    all are written are they renamed into place. A failure (a full disk) leaves the files
    as they were, and no temporary file."""
    tmps: list[Path] = []
    try:
        for path in files:
            tmps.append(path.with_suffix(path.suffix + ".tmp"))
            tmps[-1].write_bytes(files[path])
    except BaseException:
        for tmp in tmps:
            with contextlib.suppress(OSError):  # read-only: the first error is the one to tell
                tmp.unlink(missing_ok=True)
        raise
    for path, tmp in zip(files, tmps, strict=True):
        os.replace(tmp, path)
