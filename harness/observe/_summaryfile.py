"""Reading back what a run's written report concluded (its summary.json), without loading
the report's own machinery."""

from __future__ import annotations

from pathlib import Path

import orjson


def read_warnings(run_dir: Path) -> list[str]:
    """The warnings of the run's report (summary.json's `warnings`); none if no report was
    written or its summary cannot be read."""
    try:
        warnings = orjson.loads((run_dir / "summary.json").read_bytes()).get("warnings")
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return []
    return [str(w) for w in warnings] if isinstance(warnings, list) else []
