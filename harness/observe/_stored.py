"""Readers of the samples a run stored: telemetry.jsonl and scraped.jsonl. Apart from the
samplers that write them (`_telemetry`, `_scrape`: trio, httpx, prometheus_client), so that
the report, which only reads them, does not import what only a live run needs."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from harness.observe._jsonl import read_jsonl

TELEMETRY_FILE = "telemetry.jsonl"
SCRAPED_FILE = "scraped.jsonl"


def read_telemetry(run_dir: Path, fields: Collection[str] | None = None) -> list[dict[str, Any]]:
    """The records of telemetry.jsonl, in file order; with `fields`, each keeps only those
    of its keys (a reader that needs a few: a 100-instance run's 49,000 records took 55 MB
    whole, a TCP sample has 24 keys)."""
    records = (r for r in read_jsonl(run_dir / TELEMETRY_FILE)
               if isinstance(r.get("mono"), int | float))
    if fields is None:
        return list(records)
    return [{k: v for k, v in r.items() if k in fields} for r in records]


def read_scraped(run_dir: Path) -> Iterator[dict[str, Any]]:
    """The stored samples of scraped.jsonl."""
    for rec in read_jsonl(run_dir / SCRAPED_FILE):
        if isinstance(rec.get("value"), int | float) and isinstance(rec.get("instance"), str):
            yield rec
