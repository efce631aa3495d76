"""Run ids: made, recognised and parsed here only (docs/contracts.md, 7).

A run id is `YYYYmmdd-HHMMSS-<6 hex>`: the run's start in UTC to the second, then random
hex so that runs started in the same second differ. Ids sort by start time as strings.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime

RUN_ID_RE = re.compile(r"^(\d{8}-\d{6})-([0-9a-f]{6})$")
_TIME_FORMAT = "%Y%m%d-%H%M%S"


def new_run_id(now: float | None = None) -> str:
    """A fresh run id for a run starting at `now` (Unix seconds; the current time if None)."""
    stamp = time.strftime(_TIME_FORMAT, time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def is_run_id(text: str) -> bool:
    """True when `text` is a well-formed run id (its date is also a real date)."""
    return run_id_time(text) is not None


def run_id_time(text: str) -> datetime | None:
    """The start time (UTC, to the second) a run id records; None if `text` is not a run id."""
    m = RUN_ID_RE.match(text)
    if m is None:
        return None
    try:
        return datetime.strptime(m.group(1), _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # the right shape, not a date: 20261399-...
        return None
