"""`Tail`: the lines appended to a file, read a chunk at a time, an overlong line cut."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.observe import merged_lines
from harness.observe._jsonl import CUT, TAIL_MAX_LINE, Tail
from harness.observe._logmerge import follow_lines
from tests.observe._fixture import M0


def _expected(data: bytes, max_line: int, final: bool) -> list[bytes]:
    *complete, last = data.split(b"\n")
    # a partial last line waits for its newline, unless the writer is done or it is already
    # too long: then it is shown cut at once (a live progress bar's line may never end)
    lines = complete + ([last] if (final and last) or len(last) > max_line else [])
    return [ln if len(ln) <= max_line else ln[:max_line] + CUT for ln in lines]


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"\n")), max_size=12),
    max_line=st.integers(1, 12),
    final=st.booleans(),
)
def test_tail_gives_each_line_once_whatever_the_writes_and_cuts_the_long_ones(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[bytes], max_line: int, final: bool
) -> None:
    """Written in any pieces, read after any of them: the lines of the whole, once each."""
    path = tmp_path_factory.mktemp("tail") / "f.log"
    path.write_bytes(b"")
    tail = Tail(path, max_line=max_line)
    got: list[bytes] = []
    for piece in pieces:
        with path.open("ab") as f:
            f.write(piece)
        got += tail.read_lines()
    got += list(tail.lines(final=final))
    assert got == _expected(b"".join(pieces), max_line, final)


def test_a_line_of_hundreds_of_mb_is_cut_without_being_held(tmp_path: Path) -> None:
    """`harness logs` of a program that wrote 300 MB without a newline took 660 MB: the
    rest of the line it did not show was read whole to skip it."""
    path = tmp_path / "f.log"
    with path.open("wb") as f:
        for _ in range(48):
            f.write(b"x" * (1 << 20))
        f.write(b"\nafter\n")
    tracemalloc.start()
    try:
        lines = list(Tail(path).lines(final=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [b"x" * TAIL_MAX_LINE + CUT, b"after"]
    assert peak < 8 * TAIL_MAX_LINE, f"{peak / TAIL_MAX_LINE:.0f} MiB held to read a 48 MiB line"


def test_the_last_line_without_its_newline_is_shown_once_the_run_ended(
    run_factory: Callable[..., Path],
) -> None:
    """`logs` showed a program's last line when it had no newline; `logs --follow` never did."""
    run_dir = run_factory(instances=1, log_lines=2)
    with (run_dir / "single" / "0" / "stdout.log").open("ab") as f:
        f.write(b"last words, no newline")
    flt_lines = [ln.message for ln in merged_lines(run_dir) if ln.stream == "stdout"]
    followed = [ln.message for ln in follow_lines(run_dir, sleep=lambda _: None)
                if ln.stream == "stdout"]  # fmt: skip
    assert flt_lines[-1] == followed[-1] == "last words, no newline"
    assert flt_lines == followed


def test_following_a_long_run_merges_what_it_finds_in_order(
    run_factory: Callable[..., Path],
) -> None:
    """The first poll of `logs --follow` finds all a run wrote so far, more than a chunk of
    each file: it comes out in one time order, as `logs` gives it."""
    run_dir = run_factory(instances=2, log_lines=2)
    for i in (0, 1):
        with (run_dir / "single" / str(i) / "log.jsonl").open("ab") as f:
            for k in range(12_000):  # ~1.2 MB each, past the 1 MiB chunk
                rec = {"ts": 0.0, "mono": M0 + 100 + k * 0.01 + i * 0.005, "event": f"n{k}",
                       "level": "info", "pad": "p" * 40}
                f.write(orjson.dumps(rec) + b"\n")
    followed = [(ln.mono, ln.source) for ln in follow_lines(run_dir, sleep=lambda _: None)]
    assert followed == [(ln.mono, ln.source) for ln in merged_lines(run_dir)]
    assert [m for m, _ in followed] == sorted(m for m, _ in followed)
