"""An instance's message traces, written and read: `trace.jsonl.gz`, gzip-compressed
lines, the form `TraceWriter` writes, and `trace.jsonl` (the older, plain form).

The block form (docs/contracts.md, 7) is a header naming the columns,
`{"trace": 3, "columns": ["ts", "mono", "kind", ...]}`, then blocks of events, one JSON
array per column, `{"block": [[ts, ...], [mono, ...], ...]}`. Two older forms are read
too: the compact form (`"trace": 2`, one JSON array per event after the header) and one
JSON object per event. Readers take every form, even mixed in one file, several gzip
members (a restarted writer appends one) and a file cut short (a killed writer): what was
written before the cut is kept. A file is parsed in one call (a 100-node run has close to
a million events), line by line only when some line is not JSON."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import time
import zlib
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path
from typing import IO, Any

import orjson
from isal import isal_zlib

from harness._reading import read_upto
from harness.observe._jsonl import ReadFailed, open_regular

TRACE_FILE = "trace.jsonl"
TRACE_GZ_FILE = "trace.jsonl.gz"
COLUMNS = ("ts", "mono", "kind", "msg_id", "topic", "from", "to", "size")
"""The columns of a trace event, in the order `TraceWriter` writes them."""
HEADER = {"trace": 3, "columns": list(COLUMNS)}
FLUSH_S = 1.0  # a killed writer loses at most about this much
BLOCK_ROWS = 256
"""Events per block at most: a block is one line, and a reader that wants the first event
reads no more than a file's first 64 KiB (`first_record`)."""
_NL = ord("\n")
MAX_TRACE_BYTES = 256 << 20
"""What a reader takes of one trace file, decompressed: about 3 million events, several
times a busy node's hour. More (a runaway writer, or a small file that inflates to
gigabytes) would only exhaust the report's memory."""


class TraceWriter:
    """Appends trace events to `<dir>/trace.jsonl.gz` in the block form: columns of up to
    `BLOCK_ROWS` events a line, gzip (ISA-L) level 1, made readable (Z_SYNC_FLUSH) at least every
    `FLUSH_S` seconds of events and on `flush()`/`close()`. Each writer (a process, a
    restart) appends its own gzip member, starting with the header."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        path = Path(directory) / TRACE_GZ_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = path.open("ab")
        # ISA-L's deflate at level 1: a quarter of zlib's level 1 CPU per event, and
        # smaller output. A 100-node run writes about a million events.
        self._z = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
        self._buf: list[bytes] = [orjson.dumps(HEADER) + b"\n"]
        self._rows: list[tuple[Any, ...] | list[Any]] = []
        self._flushed = time.monotonic()

    def write(self, row: tuple[Any, ...] | list[Any]) -> None:
        """Append one event, its values in `COLUMNS` order."""
        if self._file is None:
            return
        if len(row) != len(COLUMNS):
            raise ValueError(f"a trace event has {len(COLUMNS)} values ({', '.join(COLUMNS)}), "
                             f"not {len(row)}")
        self._rows.append(row)
        if len(self._rows) >= BLOCK_ROWS:
            self._block()
        if time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def _block(self) -> None:
        if self._rows:
            self._buf.append(orjson.dumps({"block": list(zip(*self._rows, strict=True))})
                             + b"\n")
            self._rows.clear()

    def flush(self) -> None:
        """Write what is buffered, readable up to here even if the process is killed next."""
        if self._file is None:
            return
        self._block()
        data = self._z.compress(b"".join(self._buf)) + self._z.flush(isal_zlib.Z_SYNC_FLUSH)
        self._buf.clear()
        self._file.write(data)
        self._file.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        """Write the rest and the gzip trailer (idempotent)."""
        if self._file is None:
            return
        self._block()
        data = self._z.compress(b"".join(self._buf)) + self._z.flush(isal_zlib.Z_FINISH)
        self._buf.clear()
        self._file.write(data)
        self._file.close()
        self._file = None


def trace_paths(inst_dir: Path) -> list[Path]:
    """The trace files of an instance that exist as regular files (not a directory or a
    FIFO in their place), compressed first."""
    return [p for p in (inst_dir / TRACE_GZ_FILE, inst_dir / TRACE_FILE) if p.is_file()]


_STEP = 1 << 16
"""Compressed bytes zlib is given at a time for a member ISA-L refused: what came before a
corrupt byte is kept."""


_RESUMED = b"\x00\x00\xff\xff\x1f\x8b\x08"
"""A sync flush's end, then a gzip header: where a killed writer's member stops (it wrote
nothing after its last flush, and no trailer) and a restarted writer's begins."""


def _gunzip(data: bytes, limit: int, damage: list[str] | None = None) -> tuple[bytes, bool]:
    """The decompressed bytes of every gzip member of `data`, as far as they go, and at most
    `limit` of them (True with them if there was more): a stream cut short (a killed
    writer) ends where it ends, and the member a restarted writer appended after it is read
    too; one corrupt from some point on (not gzip) ends there (up to the next such writer's
    member), and `damage`, where given, is told where. Whole members go through ISA-L's inflate (`isal`: a third of zlib's time);
    a member cut short or corrupt through zlib's, which gives every byte it can of it
    (ISA-L may keep back the last)."""
    cuts = []
    at = data.find(_RESUMED)
    while at >= 0:
        cuts.append(at + 4)
        at = data.find(_RESUMED, at + 4)
    if not cuts:
        return _gunzip_members(data, limit, damage, len(data), len(data))
    out: list[bytes] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(data)], strict=True):
        got, more = _gunzip_members(data[lo:hi], limit, damage, hi, len(data))
        out.append(got)
        limit -= len(got)
        if more:
            return b"".join(out), True
    return b"".join(out), False


def _gunzip_members(data: bytes, limit: int, damage: list[str] | None, end: int,
                    size: int) -> tuple[bytes, bool]:
    """`_gunzip` of the part of a file that ends at byte `end` of its `size`."""
    out: list[bytes] = []
    left = limit
    while data:
        if left <= 0:
            return b"".join(out), True
        z = isal_zlib.decompressobj(wbits=31)
        try:
            chunk = z.decompress(data, left)
        except isal_zlib.error:  # type: ignore[misc]  # isal's stub types it as an instance
            chunk = None
        if chunk is not None and (z.eof or z.unconsumed_tail):
            out.append(chunk)
            if not z.eof:
                return b"".join(out), True  # the limit, inside this member
            left -= len(chunk)
            data = z.unused_data
            continue
        zz = zlib.decompressobj(wbits=31)
        pos = 0
        while pos < len(data) and not zz.eof:
            if left <= 0:  # (a max_length of 0 is no limit to zlib)
                return b"".join(out), True
            try:
                part = zz.decompress(data[pos : pos + _STEP], left)
            except zlib.error:  # corrupt from here on: keep what came before, and say so
                if damage is not None:
                    damage.append(f"could not be decoded past byte {end - len(data) + pos:,} "
                                  f"of {size:,} (what came before is read)")
                return b"".join(out), False
            pos += _STEP
            out.append(part)
            left -= len(part)
            if zz.unconsumed_tail:
                return b"".join(out), True
        if not zz.eof:
            out.append(zz.flush()[: max(0, left)])
            break
        data = zz.unused_data + data[pos:]
    return b"".join(out), False


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a while: creating a great many objects that
    cannot be in a cycle (parsed JSON, columns) would otherwise run it over and over."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _items(data: bytes) -> list[Any]:
    """The JSON value of each line (None for a line that is not JSON)."""
    lo, hi = 0, len(data)  # without the newlines at either end, not copied (a copy of a
    while lo < hi and data[lo] == _NL:  # 100-node run's traces costs 0.1 s)
        lo += 1
    while hi > lo and data[hi - 1] == _NL:
        hi -= 1
    if lo == hi:
        return []
    with no_gc():
        items = _parse_lines(data, lo, hi)
        if items is not None:
            return items
        body = data[lo:hi]
        if b"\n\n" in body:  # blank lines between
            body = b"\n".join(filter(None, body.split(b"\n")))
            items = _parse_lines(body, 0, len(body))
            if items is not None:
                return items
        # some line is cut short or not JSON: take them one by one
        return list(map(_loads, body.split(b"\n")))


def _parse_lines(data: bytes, lo: int, hi: int) -> list[Any] | None:
    """The lines of `data[lo:hi]` parsed in one call, as a JSON array; None unless each
    line is one JSON value."""
    try:
        items = orjson.loads(b"".join((b"[", memoryview(data)[lo:hi], b"]")).replace(b"\n", b","))
    except orjson.JSONDecodeError:
        return None
    if type(items) is list and len(items) == data.count(b"\n", lo, hi) + 1:
        return items
    return None


def _add_rows(cols: dict[str, list[Any]], names: list[Any], rows: list[Any], *,
              lists: bool | None = None) -> None:
    """Add rows of the columns `names` (`lists`: whether every row is a list, when known)."""
    width = len(names)
    given: dict[Any, tuple[Any, ...]] | None = None
    if lists is None:
        lists = set(map(type, rows)) == {list}
    if rows and lists:
        with contextlib.suppress(ValueError):  # rows not all of the header's width
            given = dict(zip(names, zip(*rows, strict=True), strict=True))
    if given is None:
        rows = [r for r in rows if type(r) is list and len(r) == width]
        if not rows:
            return
        given = dict(zip(names, zip(*rows, strict=True), strict=True))
    for name, col in cols.items():
        col.extend(given.get(name) or repeat(None, len(rows)))


def _add_records(cols: dict[str, list[Any]], recs: list[Any]) -> None:
    recs = [r for r in recs if type(r) is dict and "columns" not in r and "block" not in r]
    for name, col in cols.items():
        col.extend(map(dict.get, recs, repeat(name)))


def _header(item: Any) -> list[str] | None:
    """The column names if `item` is a header line."""
    names = item.get("columns") if isinstance(item, dict) else None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None


def _block(item: Any, width: int) -> list[list[Any]] | None:
    """The columns of a block line (`{"block": [[...], ...]}`: `width` lists of one
    length, not 0), or None if `item` is not one."""
    block = item.get("block") if type(item) is dict else None
    if (type(block) is list and len(block) == width and set(map(type, block)) == {list}
            and len(set(map(len, block))) == 1 and block[0]):
        return block
    return None


def _add_blocks(cols: dict[str, list[Any]], names: list[str], blocks: list[Any]) -> None:
    """Add blocks of the columns `names` (those that are not blocks are skipped)."""
    given = [b for b in map(_block, blocks, repeat(len(names))) if b is not None]
    where = {name: j for j, name in enumerate(names)}
    for name, col in cols.items():
        j = where.get(name)
        for block in given:
            col.extend(repeat(None, len(block[0])) if j is None else block[j])


def _add(cols: dict[str, list[Any]], items: list[Any]) -> None:
    """Add a file's lines: objects (the oldest form) and, after each header, its rows or
    blocks."""
    names = _header(items[0]) if items else None
    types = set(map(type, itertools.islice(items, 1, None))) if names is not None else set()
    if names is not None and dict not in types:
        # the compact form: one writer's header, then its rows
        _add_rows(cols, names, items[1:], lists=types == {list})
        return
    if names is not None and types == {dict} and all("block" in b for b in items[1:]):
        # the usual (the block form): one writer's header, then its blocks
        _add_blocks(cols, names, items[1:])
        return
    objects = list(itertools.compress(range(len(items)),
                                      map(isinstance, items, repeat(dict))))
    headers = [i for i in objects if _header(items[i]) is not None]
    _add_records(cols, items[: headers[0]] if headers else items)
    for i, end in zip(headers, [*headers[1:], len(items)], strict=False):
        segment = items[i + 1 : end]
        names = _header(items[i]) or []
        _add_rows(cols, names, [r for r in segment if type(r) is list])
        _add_blocks(cols, names, [r for r in segment if type(r) is dict and "block" in r])
        _add_records(cols, segment)  # objects among the rows: the forms mixed in one file


def read_trace_columns(
    inst_dir: Path, columns: tuple[str, ...] = COLUMNS
) -> dict[str, list[Any]]:
    """Every trace event of an instance as columns (those named, by default `COLUMNS`; a
    missing value None), from both files when both exist (an instance upgraded mid-run);
    lines that are not events are skipped. At most `MAX_TRACE_BYTES` of each file are read
    (`read_trace_columns_capped` says when that cut one short)."""
    return read_trace_columns_capped(inst_dir, columns)[0]


def read_trace_columns_capped(
    inst_dir: Path, columns: tuple[str, ...] = COLUMNS, damage: list[str] | None = None
) -> tuple[dict[str, list[Any]], bool]:
    """`read_trace_columns`, and True if a file held more than `MAX_TRACE_BYTES` once
    decompressed: its events past those were not read. `ReadFailed` for a file that is
    there but cannot be read; `damage` is told of one corrupt from some point on (what came
    before is read)."""
    limit = MAX_TRACE_BYTES
    cols: dict[str, list[Any]] = {name: [] for name in columns}
    cut = False
    for path in trace_paths(inst_dir):
        f = open_regular(path)
        if f is None:  # gone since, or replaced by what is no file
            continue
        with f:  # compressed, a file this long inflates to more anyway
            data = read_upto(f, limit)
            cut |= bool(f.read(1))
        if path.name.endswith(".gz"):
            data, more = _gunzip(data, limit, damage)
            cut |= more
        _add(cols, _items(data))
    return cols, cut


def read_trace(inst_dir: Path) -> Iterator[dict[str, Any]]:
    """Every trace event of an instance as a record `{"ts", "mono", "kind", ...}`."""
    cols = read_trace_columns(inst_dir)
    for row in zip(*cols.values(), strict=True):
        yield dict(zip(COLUMNS, row, strict=True))


def first_record(inst_dir: Path) -> dict[str, Any] | None:
    """The first trace event of an instance, reading no more than the file's head (or,
    when no whole event is in it, the whole file)."""
    try:
        return _first_record(inst_dir)
    except ReadFailed as e:
        if e.out_of_files:
            raise
        return None  # the whole read tells (`read_trace_columns_capped`)


def _first_record(inst_dir: Path) -> dict[str, Any] | None:
    for path in trace_paths(inst_dir):
        f = open_regular(path)
        if f is None:
            continue
        with f:
            head = f.read(1 << 16)
        if path.name.endswith(".gz"):
            try:
                head = zlib.decompressobj(wbits=31).decompress(head, 1 << 16)
            except zlib.error:
                continue
        names: list[str] | None = None
        for line in head.split(b"\n")[:-1]:  # the last may be cut short
            item = _loads(line)
            if _header(item) is not None:
                names = _header(item)
                continue
            if names is not None and (block := _block(item, len(names))) is not None:
                item = [col[0] for col in block]  # its first event
            if isinstance(item, dict) and "block" not in item:
                return item  # the oldest form
            if names is not None and isinstance(item, list) and len(item) == len(names):
                event = dict(zip(names, item, strict=True))
                return {name: event.get(name) for name in COLUMNS}
    return next(read_trace(inst_dir), None)
