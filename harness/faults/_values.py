"""Checks of the values a fault is written with: numbers, durations, sizes."""

from __future__ import annotations

import re
from typing import Any

from harness.faults._errors import FaultError
from harness.plans import parse_duration
from harness.plans._checks import INT64, is_number

_MAX_S = 7 * 24 * 3600.0
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
               "KB": 10**3, "MB": 10**6, "GB": 10**9}  # fmt: skip


def is_int(x: object) -> bool:
    """A whole number within 64 bits (what a run's JSON records carry), not a boolean."""
    return isinstance(x, int) and not isinstance(x, bool) and x in INT64


def int64(value: Any, where: str, *, least: int) -> int:
    """`value` if `is_int` takes it and it is at least `least`; the error names both bounds
    (a count too large to carry is as wrong as one too small)."""
    if not is_int(value) or value < least:
        raise FaultError(f"{where} must be a whole number >= {least} and at most 2**63 - 1, "
                         f"not {value!r}")
    return int(value)


def seconds(value: Any, where: str, *, positive: bool = False, signed: bool = False) -> float:
    """A duration: a number of seconds or a string such as "250ms", "2s", "1.5m" (with a
    leading "-" where `signed`)."""
    if isinstance(value, str):
        text = value.strip()
        negative = text.startswith("-")
        try:
            result = parse_duration(text[1:] if negative else text)
        except ValueError:
            raise FaultError(f"{where}: {value!r} is not a duration (e.g. 250ms, 2s, 1m)") from None
        result = -result if negative else result
    elif is_number(value):
        result = float(value)
    else:
        raise FaultError(f"{where}: must be a duration (e.g. \"2s\" or 2), not {value!r}")
    if not signed and result < 0:
        raise FaultError(f"{where}: must not be negative, not {value!r}")
    if positive and result <= 0:
        raise FaultError(f"{where}: must be longer than 0, not {value!r}")
    if abs(result) > _MAX_S:
        raise FaultError(f"{where}: {value!r} is longer than a week")
    return result


def size(value: Any, where: str) -> int:
    """Bytes: a whole number or a string such as "64MiB", "1GB"; at least 1 MiB."""
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise FaultError(f"{where}: {value!r} is not a size (e.g. 64MiB, 1GB, 1048576)")
        value = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if not is_int(value) or value < 2**20:
        raise FaultError(f"{where}: must be at least 1MiB and at most 2**63 - 1 bytes, "
                         f"not {value!r}")
    return int(value)
