"""Reading back what a run's written report concluded (its summary.json), without loading
the report's own machinery."""

from __future__ import annotations

from pathlib import Path

import orjson

from harness.observe._jsonl import ReadFailed, read_regular


def read_warnings(run_dir: Path) -> list[str]:
    """The warnings of the run's report (summary.json's `warnings`); none if no report was
    written or its summary cannot be read."""
    try:
        warnings = orjson.loads(read_regular(run_dir / "summary.json") or b"{}").get("warnings")
    except (OSError, ReadFailed, ValueError, AttributeError):  # JSONDecodeError: ValueError
        return []
    return [str(w) for w in warnings] if isinstance(warnings, list) else []
