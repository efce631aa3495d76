"""Reading a file up to a cap without paying for the cap."""

from __future__ import annotations

import os
import stat
from typing import IO

_STEP = 1 << 20


def read_upto(f: IO[bytes], limit: int) -> bytes:
    """At most `limit` bytes of `f` from where it stands. `f.read(limit)` would allocate
    `limit` bytes before reading a byte (CPython's buffered read), so a 256 MiB cap cost
    256 MiB for every small file read under it: a regular file is read in one call sized
    by what it holds, anything else (a pipe) a mebibyte at a time."""
    try:
        st = os.fstat(f.fileno())
        size = st.st_size - f.tell() if stat.S_ISREG(st.st_mode) else 0
    except (OSError, ValueError):  # no descriptor (an in-memory file)
        size = 0
    step = max(size + 1, _STEP)  # + 1: a file grown since holds more, read on
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = f.read(min(left, step))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
        step = _STEP
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
