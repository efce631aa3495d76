"""Writing a run directory's files whole (its id: `harness._runid`; run.json: `harness.observe._runrecord`)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import orjson

from harness._outputs import is_disk_full


def json_bytes(data: Any) -> bytes:
    """`data` as a run directory's JSON files hold it."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)


def write_json(path: Path, data: Any) -> None:
    """Write atomically (readers never see half a file)."""
    write_files({path: json_bytes(data)})


def write_files(files: dict[Path, bytes]) -> None:
    """Write every file whole or none: each goes to a temporary file first, and only when
    all are written are they renamed into place. A failure (a full disk) leaves no
    temporary file, and the files as they were (but those renamed already, if a later
    rename fails: a directory in the way)."""
    tmps: list[Path] = []
    # A name of this writer's own: two processes marking one dead run aborted at once
    # (runs starting together, clean beside show) shared `run.json.tmp`, truncated each
    # other's half-written file, left run.json no JSON and failed their renames.
    mine = f".{os.getpid()}-{secrets.token_hex(3)}.tmp"
    try:
        for path in files:
            tmps.append(path.with_suffix(path.suffix + mine))
            tmps[-1].write_bytes(files[path])
        for path, tmp in zip(files, tmps, strict=True):  # a rename may fail too (a directory)
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            with contextlib.suppress(OSError):  # read-only: the first error is the one to tell
                tmp.unlink(missing_ok=True)
        raise


class Reserve:
    """Disk space set aside for one file's last write, so that a disk that fills during
    the run cannot keep it from being written: the file is written into the reserved
    blocks, which need no new space, and renamed into place."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @classmethod
    def make(cls, path: Path, size: int) -> Reserve | None:
        """`size` bytes allocated at `path`; None where the file system cannot allocate
        ahead (no reserve then). The OSError if the disk has not that much free: a run
        that starts so could never record its end (run.json said "running" for good)."""
        try:
            # 0o666 and the umask, as any run.json: it may become one
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as e:
            if is_disk_full(e):
                raise
            return None
        try:
            os.posix_fallocate(fd, 0, size)  # blocks, not a sparse file
        except OSError as e:
            path.unlink(missing_ok=True)
            if is_disk_full(e):
                raise
            return None
        finally:
            os.close(fd)
        return cls(path, size)

    def write(self, path: Path, data: bytes) -> None:
        """Write `data` as `path`, whole, first as usual and, if the disk is full, into the
        reserved space (ENOSPC still if `data` is larger than the reserve)."""
        try:
            write_files({path: data})
            return
        except OSError as e:
            if not is_disk_full(e) or len(data) > self.size:
                raise
        with open(self.path, "r+b") as f:  # overwrites allocated blocks: no new space
            f.write(data)
            f.truncate(len(data))
        os.replace(self.path, path)

    def release(self) -> None:
        """Give the space back (the file is gone if `write` used it); a file system that
        refuses (read-only by now) keeps it, and the run's own error is the one told."""
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
