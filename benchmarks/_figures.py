"""The figures a benchmark writes for the one benchmark report (docs/benchmarks.md).

Each benchmark writes one file, `outputs/bench/<source>.json`: a JSON list of items

    {"name": str, "value": number, "unit": str, "peer": str | null, "peer_value": number | null}

with optional "better" ("lower" or "higher"; default: "higher" for rates, units ending in
"/s" or equal to "x", else "lower"; "none" for a figure that measures the machine, not the
code, and is never flagged), "target" (text, e.g. "<= 1 ms"), "load" (the 1-minute
load average when it was measured) and "speed" (the CPU seconds `_speed.workload` took when
the file was written: how fast the machine was then). `benchmarks/report.py` gathers every
such file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from _speed import speed

OUTPUTS = Path(os.environ.get("BENCH_OUTPUTS", Path(__file__).resolve().parents[1] / "outputs"))
"""Where the report and `bench/` go (BENCH_OUTPUTS overrides; default: the checkout's)."""


@dataclasses.dataclass(frozen=True)
class Figure:
    """One measured figure, with the peer's figure from the same run where there is one."""

    name: str
    value: float
    unit: str
    peer: str | None = None
    peer_value: float | None = None
    better: str | None = None
    target: str | None = None
    load: float | None = None
    speed: float | None = None

    @property
    def lower_is_better(self) -> bool:
        """How a change of this figure is judged (a regression is a change the other way)."""
        if self.better is not None:
            return self.better == "lower"
        return not (self.unit.endswith("/s") or self.unit == "x")

    @property
    def judged(self) -> bool:
        """Whether a change of this figure can be a regression (not for the machine's own
        figures, `better = "none"`)."""
        return self.better != "none"

    @property
    def ratio(self) -> float | None:
        """Ours over the peer's, where both are there and the peer's is not zero."""
        if self.peer_value is None or self.peer_value == 0:
            return None
        return self.value / self.peer_value

    def as_item(self) -> dict[str, Any]:
        """The item as written to a figures file (optional fields only when set)."""
        item = dataclasses.asdict(self)
        for key in ("better", "target", "load", "speed"):
            if item[key] is None:
                del item[key]
        return item


class FiguresError(ValueError):
    """A figures file that does not follow the schema; the message names what is wrong."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse(items: Any) -> list[Figure]:
    """The figures of one file's JSON; FiguresError naming the first item that is wrong."""
    if not isinstance(items, list):
        raise FiguresError("not a JSON list of figures")
    out = []
    for i, item in enumerate(items):
        where = f"item {i}"
        if not isinstance(item, dict):
            raise FiguresError(f"{where} is not an object")
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise FiguresError(f"{where}: 'name' is missing or not a string")
        where = f"item {i} ({item['name']!r})"
        if not _number(item.get("value")):
            raise FiguresError(f"{where}: 'value' is missing or not a finite number")
        if not isinstance(item.get("unit"), str):
            raise FiguresError(f"{where}: 'unit' is missing or not a string")
        for key in ("peer", "target"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise FiguresError(f"{where}: {key!r} must be a string or null")
        for key in ("peer_value", "load", "speed"):
            if item.get(key) is not None and not _number(item[key]):
                raise FiguresError(f"{where}: {key!r} must be a finite number or null")
        if item.get("better") not in (None, "lower", "higher", "none"):
            raise FiguresError(f"{where}: 'better' must be \"lower\", \"higher\" or \"none\"")
        out.append(Figure(item["name"], float(item["value"]), item["unit"], item.get("peer"),
                          None if item.get("peer_value") is None else float(item["peer_value"]),
                          item.get("better"), item.get("target"),
                          None if item.get("load") is None else float(item["load"]),
                          None if item.get("speed") is None else float(item["speed"])))
    return out


def load(path: Path) -> list[Figure]:
    """The figures of one file; FiguresError (naming the file) if it is unreadable or wrong."""
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise FiguresError(f"{path}: {e}") from None


def write(source: str, figures: Iterable[Figure], outputs: Path | None = None) -> Path:
    """Write a benchmark's figures to `<outputs>/bench/<source>.json` (replacing the file
    its last run wrote); each gets the load average and the machine's speed now (`_speed`)
    unless it has them."""
    load_now, speed_now = os.getloadavg()[0], speed()
    items = [dataclasses.replace(f, load=f.load if f.load is not None else load_now,
                                 speed=f.speed if f.speed is not None else speed_now).as_item()
             for f in figures]
    path = (outputs or OUTPUTS) / "bench" / f"{source}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(items, indent=1) + "\n")
    tmp.replace(path)
    print(f"figures: {path}")
    return path
