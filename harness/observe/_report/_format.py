"""Small formatting helpers shared by the report's sections."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape
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


#: How many rows a long table shows before folding the rest.
SHOWN_ROWS = 15


def folded_table(head: str, rows: list[str], what: str, shown: int = SHOWN_ROWS) -> str:
    """A table of `rows` (already in order, worst first): the first `shown`, then the rest
    folded in a <details> ("the other N `what`"), so a 100-instance run stays readable."""
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows[:shown])}</tbody></table>"
    rest = rows[shown:]
    if not rest:
        return table
    return (
        f'{table}<details class="more"><summary>the other {len(rest)} {escape(what)}</summary>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rest)}</tbody></table></details>"
    )
