"""Reading an instance's message traces: `trace.jsonl.gz` (gzip-compressed JSON lines, the
form nodes write) and `trace.jsonl` (the older, plain form), each tolerant of a writer
killed mid-line or mid-stream."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.observe._jsonl import parse_line

TRACE_FILE = "trace.jsonl"
TRACE_GZ_FILE = "trace.jsonl.gz"
_CHUNK = 1 << 20


def trace_paths(inst_dir: Path) -> list[Path]:
    """The trace files of an instance that exist, compressed first."""
    return [p for p in (inst_dir / TRACE_GZ_FILE, inst_dir / TRACE_FILE) if p.exists()]


def _gunzip(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of every gzip member of `path` (a restarted writer appends a
    member), as far as they go: a stream cut short (a killed writer) ends where it ends."""
    with path.open("rb") as f:
        z = zlib.decompressobj(wbits=31)
        while chunk := f.read(_CHUNK):
            while chunk:
                try:
                    yield z.decompress(chunk)
                except zlib.error:
                    return  # corrupt from here on: keep what came before
                if z.eof:  # the next member starts in what is left over
                    chunk, z = z.unused_data, zlib.decompressobj(wbits=31)
                else:
                    chunk = b""
        yield z.flush() if not z.eof else b""


def _lines(path: Path) -> Iterator[bytes]:
    if path.name.endswith(".gz"):
        rest = b""
        for data in _gunzip(path):
            *lines, rest = (rest + data).split(b"\n")
            yield from lines
        yield rest
    else:
        with path.open("rb") as f:
            yield from f


def read_trace(inst_dir: Path) -> Iterator[dict[str, Any]]:
    """Every trace record of an instance, from both forms when both exist (an instance
    upgraded mid-run); malformed lines are skipped."""
    for path in trace_paths(inst_dir):
        for line in _lines(path):
            rec = parse_line(line)
            if rec is not None:
                yield rec


def first_record(inst_dir: Path) -> dict[str, Any] | None:
    """The first trace record of an instance, reading no more than it needs."""
    return next(read_trace(inst_dir), None)
