"""SDK metrics: what an instance measures, recorded as JSON lines in its metrics.jsonl."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from harness.observe._jsonl import JsonlWriter, read_jsonl

MetricKind = Literal["counter", "gauge", "histogram", "point"]
KINDS: tuple[MetricKind, ...] = ("counter", "gauge", "histogram", "point")


class Metrics:
    """Records an instance's metrics to `path` (its metrics.jsonl), one JSON line each:
    `{"ts", "mono", "name", "kind", "value", "labels"}`; a counter's line also has `total`.

    Safe to use from several threads. Use as a context manager or call `close()`.
    """

    def __init__(self, path: Path) -> None:
        self._writer = JsonlWriter(path)
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    @property
    def path(self) -> Path:
        """The metrics.jsonl file written to."""
        return self._writer.path

    def counter(self, name: str, inc: float = 1, **labels: str) -> float:
        """Add `inc` (>= 0) to a counter; returns its new total."""
        if inc < 0:
            raise ValueError(f"counter {name!r} can only go up, not by {inc!r}")
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            total = self._totals.get(key, 0.0) + inc
            self._totals[key] = total
            self._emit(name, "counter", inc, labels, total=total)
        return total

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge to `value`."""
        with self._lock:
            self._emit(name, "gauge", value, labels)

    def histogram(self, name: str, value: float, **labels: str) -> None:
        """Record one observation of a distribution (a latency, a size)."""
        with self._lock:
            self._emit(name, "histogram", value, labels)

    def point(self, name: str, value: float, **labels: str) -> None:
        """Record a single data point (a result, a one-off measurement)."""
        with self._lock:
            self._emit(name, "point", value, labels)

    def _emit(
        self, name: str, kind: str, value: float, labels: Mapping[str, str], **extra: float
    ) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"a metric name is a non-empty string, not {name!r}")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"metric {name!r}: value must be a finite number, not {value!r}")
        rec: dict[str, Any] = {"name": name, "kind": kind, "value": value, **extra}
        if labels:
            rec["labels"] = {k: str(v) for k, v in labels.items()}
        self._writer.write(rec)

    def close(self) -> None:
        """Close the file; safe to call twice."""
        self._writer.close()

    def __enter__(self) -> Metrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The valid metric records of a metrics.jsonl (malformed lines skipped)."""
    return [
        r
        for r in read_jsonl(path)
        if isinstance(r.get("name"), str)
        and r.get("kind") in KINDS
        and isinstance(r.get("value"), int | float)
        and isinstance(r.get("mono"), int | float)
    ]
