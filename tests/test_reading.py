"""Reading up to a cap: every byte up to it, from files, pipes and in-memory files, without
allocating the cap."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import pytest

from harness._reading import read_upto


@pytest.mark.parametrize("size", [0, 1, 1000, (1 << 20) + 7])
@pytest.mark.parametrize("limit", [1, 999, 1 << 21])
def test_a_file_gives_its_bytes_up_to_the_limit(tmp_path: Path, size: int, limit: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    with (tmp_path / "f").open("rb") as f:
        f.read(0)
        assert read_upto(f, limit) == data[:limit]
    assert read_upto(io.BytesIO(data), limit) == data[:limit]


def test_a_pipe_and_a_file_read_from_its_middle_are_read_to_their_end(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.write(w, b"x" * 50_000)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        assert read_upto(f, 1 << 30) == b"x" * 50_000
    (tmp_path / "f").write_bytes(b"abcdef")
    with (tmp_path / "f").open("rb") as f:
        f.read(2)
        assert read_upto(f, 3) == b"cde"
        assert read_upto(f, 3) == b"f"


def test_a_small_file_under_a_huge_cap_costs_about_its_size(tmp_path: Path) -> None:
    """`f.read(256 MiB)` allocated 256 MiB for each small trace file read under that cap."""
    (tmp_path / "f").write_bytes(b"y" * 10_000)
    tracemalloc.start()
    try:
        with (tmp_path / "f").open("rb") as f:
            assert len(read_upto(f, 256 << 20)) == 10_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 21
