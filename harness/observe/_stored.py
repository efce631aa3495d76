"""Readers of the samples a run stored: telemetry.jsonl and scraped.jsonl. Apart from the
samplers that write them (`_telemetry`, `_scrape`: trio, httpx, prometheus_client), so that
the report, which only reads them, does not import what only a live run needs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from harness.observe._jsonl import ReadFailed, Unreadable, read_jsonl, read_regular

TELEMETRY_FILE = "telemetry.jsonl"
SCRAPED_FILE = "scraped.jsonl"
SCRAPES_FILE = "scrapes.json"
"""What became of each instance's scrapes (`ScrapeTally` by instance, and the timeout)."""


@dataclasses.dataclass
class ScrapeTally:
    """One instance's metrics scrapes: asked, answered, timed out or failed (and why, last)."""

    asked: int = 0
    answered: int = 0
    timed_out: int = 0
    failed: int = 0
    last_error: str | None = None


def read_scrapes(run_dir: Path) -> tuple[float, dict[str, ScrapeTally]] | None:
    """The scrape timeout and each instance's `ScrapeTally` (None: no scrapes.json, or one
    that cannot be read)."""
    try:
        data = json.loads(read_regular(run_dir / SCRAPES_FILE) or b"null")
        fields = {f.name for f in dataclasses.fields(ScrapeTally)}
        return float(data["timeout_s"]), {
            str(iid): ScrapeTally(**{k: v for k, v in t.items() if k in fields})
            for iid, t in data["instances"].items()
        }
    except (OSError, ReadFailed, ValueError, KeyError, TypeError, AttributeError):
        return None


def read_telemetry(run_dir: Path, fields: Collection[str] | None = None,
                   damaged: dict[Path, int] | None = None,
                   unreadable: Unreadable | None = None,
                   finished: bool = False) -> list[dict[str, Any]]:
    """The records of telemetry.jsonl, in file order; with `fields`, each keeps only those
    of its keys (a reader that needs a few: a 100-instance run's 49,000 records took 55 MB
    whole, a TCP sample has 24 keys). Damaged lines are counted in `damaged`, an unreadable
    file told to `unreadable`, the last line cut short where `finished` (`read_jsonl`)."""
    records = (r for r in read_jsonl(run_dir / TELEMETRY_FILE, damaged, unreadable, finished)
               if isinstance(r.get("mono"), int | float))
    if fields is None:
        return list(records)
    return [{k: v for k, v in r.items() if k in fields} for r in records]


def read_scraped(run_dir: Path) -> Iterator[dict[str, Any]]:
    """The stored samples of scraped.jsonl."""
    for rec in read_jsonl(run_dir / SCRAPED_FILE):
        if isinstance(rec.get("value"), int | float) and isinstance(rec.get("instance"), str):
            yield rec
