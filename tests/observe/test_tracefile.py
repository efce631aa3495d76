"""Trace files: the block form `TraceWriter` writes (a header naming the columns, then
blocks of events, a JSON array per column, gzip-compressed), read back whole, with the older
forms (an array per event, an object per event), mixed forms, a restarted writer and a
writer killed mid-way."""

from __future__ import annotations

import gzip
import random
import zlib
from pathlib import Path

import orjson
import pytest

from harness.observe import _tracefile, analyse_traces
from harness.observe._tracefile import (
    COLUMNS,
    TRACE_FILE,
    TRACE_GZ_FILE,
    TraceWriter,
    first_record,
    read_trace,
    read_trace_columns,
)
from tests.observe._bigrun import make_big_run


def _event(i: int, kind: str = "receive") -> tuple[object, ...]:
    return (1e9 + i, 100.0 + i, kind, f"m{i}", "t", "a", "b", 10 + i)


def test_the_block_form_gives_the_same_analysis_as_objects(tmp_path: Path) -> None:
    objects = make_big_run(tmp_path / "a", instances=12, messages=6, degree=4)
    compact = make_big_run(tmp_path / "b", instances=12, messages=6, degree=4,
                           gzip_traces=True, compact_traces=True)
    head = gzip.decompress((compact / "single" / "1" / TRACE_GZ_FILE).read_bytes())
    assert head.startswith(orjson.dumps(_tracefile.HEADER) + b'\n{"block":[[')
    a, b = analyse_traces(objects), analyse_traces(compact)
    assert a.hops and [(h.msg_id, h.src, h.dst, h.hop_ms) for h in a.hops] == [
        (h.msg_id, h.src, h.dst, h.hop_ms) for h in b.hops
    ]
    assert a.topics == b.topics and a.links == b.links and a.outliers == b.outliers


def test_the_writer_writes_what_the_reader_reads(tmp_path: Path) -> None:
    w = TraceWriter(tmp_path)
    for i in range(3):
        w.write(_event(i))
    w.close()
    w = TraceWriter(tmp_path)  # a restarted instance appends a member of its own
    w.write(_event(3, "deliver"))
    w.close()
    w.write(_event(4))  # closed: ignored
    assert [r["msg_id"] for r in read_trace(tmp_path)] == ["m0", "m1", "m2", "m3"]
    assert next(read_trace(tmp_path)) == dict(zip(COLUMNS, _event(0), strict=True))
    assert first_record(tmp_path) == dict(zip(COLUMNS, _event(0), strict=True))


def test_the_writer_writes_blocks_of_at_most_block_rows_events(tmp_path: Path) -> None:
    w = TraceWriter(tmp_path)
    count = 2 * _tracefile.BLOCK_ROWS + 3
    for i in range(count):
        w.write(_event(i))
    w.close()
    lines = gzip.decompress((tmp_path / TRACE_GZ_FILE).read_bytes()).splitlines()
    blocks = [orjson.loads(line)["block"] for line in lines[1:]]
    assert [len(b[0]) for b in blocks] == [_tracefile.BLOCK_ROWS, _tracefile.BLOCK_ROWS, 3]
    assert all(len(b) == len(COLUMNS) for b in blocks)
    assert read_trace_columns(tmp_path)["msg_id"] == [f"m{i}" for i in range(count)]
    assert first_record(tmp_path) == dict(zip(COLUMNS, _event(0), strict=True))
    with pytest.raises(ValueError, match="8 values"):
        TraceWriter(tmp_path).write(("a", "b"))


def test_every_form_gives_the_same_columns(tmp_path: Path) -> None:
    """The block form, the compact form (`"trace": 2`, an array per event) and the oldest
    (an object per event) of the same events read the same."""
    events = [_event(i, ("publish", "receive", "deliver")[i % 3]) for i in range(10)]
    header = orjson.dumps({"trace": 2, "columns": list(COLUMNS)})
    forms = {
        "blocks": [orjson.dumps(_tracefile.HEADER),
                   orjson.dumps({"block": list(zip(*events[:4], strict=True))}),
                   orjson.dumps({"block": list(zip(*events[4:], strict=True))})],
        "rows": [header, *map(orjson.dumps, events)],
        "objects": [orjson.dumps(dict(zip(COLUMNS, e, strict=True))) for e in events],
    }
    got = {}
    for form, lines in forms.items():
        (tmp_path / form).mkdir()
        (tmp_path / form / TRACE_FILE).write_bytes(b"\n".join(lines) + b"\n")
        got[form] = read_trace_columns(tmp_path / form)
        assert first_record(tmp_path / form) == dict(zip(COLUMNS, events[0], strict=True))
    assert got["blocks"] == got["rows"] == got["objects"]
    assert got["blocks"]["size"] == [e[-1] for e in events]


def test_a_killed_writer_loses_only_what_came_after_its_last_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    monkeypatch.setattr(_tracefile.time, "monotonic", lambda: now[0])
    w = TraceWriter(tmp_path)
    w.write(_event(0))
    assert read_trace_columns(tmp_path)["msg_id"] == []  # buffered
    now[0] += _tracefile.FLUSH_S  # a second later, the next event flushes both
    w.write(_event(1))
    w.write(_event(2))  # buffered; the process is killed now (no close)
    assert read_trace_columns(tmp_path)["msg_id"] == ["m0", "m1"]


def test_a_writer_restarted_after_a_killed_one_is_read_and_so_is_the_killed_one(
    tmp_path: Path,
) -> None:
    """A restarted instance appends its member after the killed process's, which has no
    trailer: the reader ran the new member's header into the old deflate stream and read
    nothing of either ("could not be decoded past byte 0")."""
    killed = TraceWriter(tmp_path)
    for i in range(3):
        killed.write(_event(i))
    killed.flush()
    killed.write(_event(9))  # buffered when the process is killed: lost
    again = TraceWriter(tmp_path)
    again.write(_event(3))
    again.flush()
    again.write(_event(8))  # killed too
    last = TraceWriter(tmp_path)
    last.write(_event(4))
    last.close()
    damage: list[str] = []
    _, more = _tracefile._gunzip((tmp_path / TRACE_GZ_FILE).read_bytes(), 1 << 30, damage)
    assert not more and damage == []
    assert read_trace_columns(tmp_path)["msg_id"] == ["m0", "m1", "m2", "m3", "m4"]


def test_mixed_forms_cut_lines_and_junk_are_read_as_far_as_they_go(tmp_path: Path) -> None:
    old = orjson.dumps(dict(zip(COLUMNS, _event(0), strict=True)))
    header = orjson.dumps({"trace": 2, "columns": ["mono", "msg_id", "kind", "extra"]})
    blocks = orjson.dumps({"trace": 3, "columns": ["msg_id", "mono"]})
    lines = [old, b"not json", header, b'[101.0, "m1", "receive", 1]', b"[1, 2]",
             b'{"trace": 2, "columns": ["msg_id"]}', b'["m2"]', b'["m3"',
             blocks, b'{"block": [[], []]}', b'{"block": [["m4", "m5"], [104.0, 105.0]]}',
             b'{"block": [["m6", "m7"], [106.0]]}',  # columns of different lengths
             b'{"block": [["m8"]]}', b'{"block": [["m9"], [109.0]]', b""]  # one column; cut
    (tmp_path / TRACE_FILE).write_bytes(b"\n".join(lines))
    cols = read_trace_columns(tmp_path)
    assert cols["msg_id"] == ["m0", "m1", "m2", "m4", "m5"]
    assert cols["mono"] == [100.0, 101.0, None, 104.0, 105.0]
    assert cols["size"] == [10, None, None, None, None]
    # an empty block first: the first event is the next block's
    (tmp_path / TRACE_FILE).write_bytes(b"\n".join([blocks, b'{"block": [[], []]}', *lines[-5:]]))
    assert first_record(tmp_path) == {**dict.fromkeys(COLUMNS), "msg_id": "m4", "mono": 104.0}


def _zlib_gunzip(data: bytes) -> bytes:
    """The reader's gunzip as it was with zlib's inflate (the reference for ISA-L's)."""
    out = []
    while data:
        z = zlib.decompressobj(wbits=31)
        try:
            out.append(z.decompress(data))
        except zlib.error:
            break
        if not z.eof:
            out.append(z.flush())
            break
        data = z.unused_data
    return b"".join(out)


def test_gunzip_reads_members_cut_streams_and_junk_as_zlib_does() -> None:
    lines = b"".join(orjson.dumps(_event(i)) + b"\n" for i in range(400))
    whole = gzip.compress(lines, compresslevel=1)
    z = zlib.compressobj(1, zlib.DEFLATED, 31)  # a killed writer: flushed, no trailer
    killed = z.compress(lines[:5000]) + z.flush(zlib.Z_SYNC_FLUSH) + z.compress(lines[5000:])
    data = whole + whole + killed
    assert _tracefile._gunzip(data, 1 << 30) == (lines + lines + lines[:5000], False)
    cases = [data[:cut] for cut in range(0, len(data), 7)]
    cases += [whole + b"junk", whole + b"\x1f\x8b\x08junk", b"junk" + whole]
    for case in cases:
        assert _tracefile._gunzip(case, 1 << 30) == (_zlib_gunzip(case), False), len(case)


def test_gunzip_stops_at_its_limit_and_says_there_was_more() -> None:
    lines = b"".join(orjson.dumps(_event(i)) + b"\n" for i in range(400))
    whole = gzip.compress(lines, compresslevel=1)
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    killed = z.compress(lines[:5000]) + z.flush(zlib.Z_SYNC_FLUSH) + z.compress(lines[5000:])
    data = whole + whole + killed
    full = _zlib_gunzip(data)
    for limit in [*range(0, len(full) + 50, 997), len(lines), 2 * len(lines), len(full)]:
        assert _tracefile._gunzip(data, limit) == (full[:limit], len(full) > limit), limit


def test_a_trace_that_inflates_past_the_cap_is_read_up_to_it_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzip bomb (here 64 MiB of zeros in 64 KiB after the real events) must not be
    inflated whole: the reader stops at MAX_TRACE_BYTES and says it did."""
    monkeypatch.setattr(_tracefile, "MAX_TRACE_BYTES", 1 << 20)
    w = TraceWriter(tmp_path)
    for i in range(100):
        w.write(_event(i))
    w.close()
    cols, cut = _tracefile.read_trace_columns_capped(tmp_path)
    assert len(cols["msg_id"]) == 100 and not cut
    with (tmp_path / TRACE_GZ_FILE).open("ab") as f:
        f.write(gzip.compress(bytes(64 << 20), compresslevel=9))
    cols, cut = _tracefile.read_trace_columns_capped(tmp_path)
    assert cols["msg_id"] == [f"m{i}" for i in range(100)] and cut
    assert read_trace_columns(tmp_path)["msg_id"] == cols["msg_id"]
    plain = tmp_path / "plain"
    plain.mkdir()
    events = b"".join(orjson.dumps(dict(zip(COLUMNS, _event(i), strict=True))) + b"\n"
                      for i in range(3))
    (plain / TRACE_FILE).write_bytes(events + b" " * (2 << 20))
    cols, cut = _tracefile.read_trace_columns_capped(plain)
    assert cols["msg_id"] == ["m0", "m1", "m2"] and cut


def test_a_member_corrupt_from_some_point_keeps_what_came_before_and_says_where() -> None:
    """A corrupt member was dropped whole, without a word (as if the node traced nothing)."""
    lines = b"".join(orjson.dumps(_event(i)) + b"\n" for i in range(40000))
    member = gzip.compress(lines, compresslevel=1)
    assert len(member) > 3 * _tracefile._STEP
    bad = member[: 2 * _tracefile._STEP] + random.Random(1).randbytes(50_000)
    damage: list[str] = []
    out, more = _tracefile._gunzip(gzip.compress(lines[:100]) + bad, 1 << 30, damage)
    assert not more and out.startswith(lines[:100] + lines[:100_000]) and len(out) < 2 * len(lines)
    assert len(damage) == 1 and damage[0].startswith("could not be decoded past byte ")
    junk = random.Random(2).randbytes(5000)
    damage.clear()
    assert _tracefile._gunzip(junk, 1 << 30, damage) == (b"", False)
    assert damage == ["could not be decoded past byte 0 of 5,000 (what came before is read)"]


def test_a_cut_member_over_many_steps_stops_at_the_limit_even_at_a_step_s_end() -> None:
    """A member zlib inflates a step at a time keeps to the limit wherever it falls, at a
    step's end too (where a limit used up would leave zlib a max_length of 0: none)."""
    lines = b"".join(orjson.dumps(_event(i)) + b"\n" for i in range(40000))
    z = zlib.compressobj(1, zlib.DEFLATED, 31)  # a killed writer: no trailer
    killed = z.compress(lines) + z.flush(zlib.Z_SYNC_FLUSH)
    step = _tracefile._STEP
    assert len(killed) > 3 * step
    zz, ends = zlib.decompressobj(wbits=31), []
    for pos in range(0, len(killed), step):  # what each step's end has given
        ends.append(len(zz.decompress(killed[pos : pos + step])) + (ends[-1] if ends else 0))
    for limit in [*ends[:-1], 1, len(lines) - 1]:
        out, more = _tracefile._gunzip(killed, limit)
        assert out == lines[:limit] and more, limit
    assert _tracefile._gunzip(killed, len(lines)) == (lines, False)
