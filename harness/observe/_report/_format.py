"""Small formatting helpers shared by the report's sections."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson


def ts(v: float | None) -> str:
    """A Unix time as UTC to the second; a dash when unknown."""
    if not isinstance(v, int | float):
        return "—"
    return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def num(v: Any, digits: int = 1) -> str:
    """A number to `digits` decimals; a dash when it is not a finite number."""
    if not isinstance(v, int | float) or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}"


def to_json(v: Any) -> str:
    """Compact JSON."""
    return orjson.dumps(v).decode()
