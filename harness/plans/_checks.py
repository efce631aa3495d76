"""Typed reads of manifest and composition values: each wrong type or range is a UsageError
naming where it is and what it holds, never a TypeError or ValueError from deep inside."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from harness._errors import UsageError
from harness._reading import read_upto

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Group ids and the like: they name directories, so no '/', no leading '.', no '..'."""


MAX_INPUT = 16 << 20
"""Bytes an input file (a manifest, a composition, a faults file) may hold: /dev/zero given
as one took all the machine's memory."""


def read_input(path: Path, what: str) -> str:
    """The UTF-8 text of the input file at `path` (a pipe will do: `<(...)`); unreadable,
    too large or not UTF-8 is one UsageError."""
    try:
        with path.open("rb") as f:
            raw = read_upto(f, MAX_INPUT + 1)
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror or e}") from None
    if len(raw) > MAX_INPUT:
        raise UsageError(f"{what} {path}: larger than {MAX_INPUT >> 20} MiB")
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{what} {path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from None


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML file at `path`; unreadable, not UTF-8 or not TOML is one UsageError."""
    text = read_input(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{what} {path}: {e}") from None
    except RecursionError:
        raise UsageError(f"{what} {path}: nested too deeply to read") from None


def is_argv(value: Any) -> bool:
    """True for a non-empty list of strings (a program and its arguments)."""
    return isinstance(value, list) and bool(value) and all(isinstance(a, str) for a in value)


def table(value: Any, where: str) -> Mapping[str, Any]:
    """`value` if it is a TOML table (a dict)."""
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a table, not {value!r}")
    return value


def check_keys(value: Any, known: Iterable[str], where: str) -> None:
    """A misspelt key (`timout`, `[groups.parms]`) is an error, never silently ignored: the
    run would go on with the defaults and pass for the wrong reason."""
    unknown = sorted(set(table(value, where)) - set(known))
    if unknown:
        raise UsageError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )


INT64 = range(-(2**63), 2**63)
"""The whole numbers a run's JSON records (orjson) and its history (SQLite) carry."""


def whole(value: Any, where: str, *, least: int | None = 0) -> int:
    """`value` if it is an integer >= `least` (not a bool, a float or a numeral in text)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{where} must be a whole number, not {value!r}")
    if least is not None and value < least:
        raise UsageError(f"{where} must be at least {least}, not {value!r}")
    return value


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float (an int a float can hold), and not a boolean."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def number(value: Any, where: str) -> float:
    """`value` if it is a finite int or float (not a bool or text)."""
    if not is_number(value):
        shown = repr(value)
        raise UsageError(f"{where} must be a finite number, not "
                         f"{shown if len(shown) <= 40 else shown[:20] + '...'}")
    return value


def text(value: Any, where: str) -> str:
    """`value` if it is a string."""
    if not isinstance(value, str):
        raise UsageError(f"{where} must be text, not {value!r}")
    return value


RUN_DIR_FILES = frozenset({
    "run.json", "events.jsonl", "faults.jsonl", "network.jsonl", "supervisor.jsonl",
    "telemetry.jsonl", "scraped.jsonl", "scrapes.json", "summary.json", "junit.xml",
    "report.html", "relay.json", "relay.log", "relay.sock", "sync.sock", "control.token",
    "process-host.log",
})
"""The names of a run directory's own files, beside its groups' directories."""


def group_id(value: Any, where: str) -> str:
    """`value` if it can name a group: a safe name that is none of the run directory's own
    files (a group `report.html` took the report's place)."""
    gid = safe_name(value, where)
    if gid in RUN_DIR_FILES or gid.endswith(".tmp"):
        raise UsageError(f"{where} {gid!r} is the name of a file of the run's own directory")
    return gid


def safe_name(value: Any, where: str) -> str:
    """`value` if it is a name safe as one path component (see SAFE_NAME)."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise UsageError(
            f"{where} {value!r} is not a safe name: a letter or digit, then letters, digits, "
            "'_', '.' or '-'"
        )
    return value
