"""Reading and writing JSON lines, tolerant of a live writer's half-written last line."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from harness._errors import EnvironmentProblem
from harness._openfiles import OUT_OF_FILES
from harness._reading import read_upto

MAX_LINE = 16 << 20
"""The longest record read (16 MiB); a longer line counts as damaged."""


def read_jsonl(path: Path, damaged: dict[Path, int] | None = None,
               unreadable: Unreadable | None = None,
               finished: bool = False) -> Iterator[dict[str, Any]]:
    """Yield each JSON object of `path`; blank, malformed or non-object lines are skipped,
    and counted in `damaged[path]` where given (blank lines and a last line without its
    newline, which a live writer may not have finished, are not damage; that last line, if
    it is no record, is where the file is `finished`: its writer is done, so it was cut).

    A missing file yields nothing: an instance that never logged is not an error. One that
    cannot be read yields nothing either where `unreadable` is given (it is told), and is
    `ReadFailed` where it is not (`open_or_tell`).
    """
    f = open_or_tell(path, unreadable)
    if f is None:
        return
    with f:
        for line in _lines(f):
            obj = parse_line(line) if line is not None else None
            if obj is not None:
                yield obj
            elif damaged is not None and _damage(line, finished):
                damaged[path] = damaged.get(path, 0) + 1


def _damage(line: bytes | None, finished: bool) -> bool:
    """Whether a line that is no record is damage: one too long is, one blank is not, nor
    one without its newline (a live writer's last, maybe unfinished) unless the writer is
    done (`finished`)."""
    return line is None or (bool(line.strip()) and (line.endswith(b"\n") or finished))


def _lines(f: IO[bytes]) -> Iterator[bytes | None]:
    """Each line of `f`; None for one longer than MAX_LINE, which is skipped unread (a
    program that logged a gigabyte in one record must not take a gigabyte to read)."""
    while line := f.readline(MAX_LINE + 1):
        if len(line) <= MAX_LINE or line.endswith(b"\n"):
            yield line
            continue
        while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
            pass
        yield None


def number(value: object) -> float | None:
    """A record's value as a float; None where it is no number (missing, or damaged)."""
    return float(value) if isinstance(value, int | float) else None


_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENXIO, errno.ENODEV})
"""What opening a file that is not there, or is no file (a symlink loop, a socket, a device
without its driver), fails with."""


class ReadFailed(EnvironmentProblem):
    """A run's file that is there but could not be read (no permission, an I/O error, no
    file descriptor left): one line naming it. Never the same as a file that is absent."""

    def __init__(self, path: Path, error: OSError) -> None:
        self.path = Path(path)
        self.errno = error.errno
        self.reason = error.strerror or str(error)
        super().__init__(f"reading {path} failed: {self.reason}")

    @property
    def out_of_files(self) -> bool:
        """This process, or the machine, had no file descriptor left: nothing could be read."""
        return self.errno in OUT_OF_FILES


def open_regular(path: Path) -> IO[bytes] | None:
    """`path` opened for reading if it is a regular file; None if it is missing or is not
    one (a directory, a FIFO whose reads would never end, a device, a symlink loop): a
    run's file that is not what it should be is read as absent. `ReadFailed` for one that
    is there but cannot be opened (no permission, no file descriptor left)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO: no wait
    except OSError as e:
        if e.errno in _ABSENT:
            return None
        raise ReadFailed(path, e) from e  # (a run's out-of-files check reads the cause)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


Unreadable = Callable[["ReadFailed"], None]
"""Told of a run's file that is there but cannot be read, which its reader then leaves out
(a warning, in the report and the commands): what a reader given none raises."""


def open_or_tell(path: Path, unreadable: Unreadable | None) -> IO[bytes] | None:
    """`open_regular`; a file that cannot be read is told to `unreadable` and read as
    absent where it is given. Never so when no file descriptor is left: every file would
    then read as absent, and what is shown would lie."""
    try:
        return open_regular(path)
    except ReadFailed as e:
        if unreadable is None or e.out_of_files:
            raise
        unreadable(e)
        return None


def read_regular(path: Path, limit: int = 64 << 20) -> bytes | None:
    """The bytes of `path` if it is a regular file; None if it is missing or is not one
    (`open_regular`). ValueError for one over `limit` bytes (a run's own small file that
    has grown so is damaged, and must not take the machine's memory)."""
    f = open_regular(path)
    if f is None:
        return None
    with f:
        data = read_upto(f, limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is over {limit >> 20} MiB")
    return data


def read_tail(path: Path, size: int, unreadable: Unreadable | None = None) -> str:
    """The last `size` bytes of `path` as text ("" if it is missing or no regular file, or
    cannot be read and `unreadable` is told: `open_or_tell`)."""
    f = open_or_tell(path, unreadable)
    if f is None:
        return ""
    with f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - size))
        return f.read().decode("utf-8", "replace")


def parse_line(line: bytes | str) -> dict[str, Any] | None:
    """One JSON object, or None when the line is not one."""
    line = line.strip()
    if not line or line[:1] not in (b"{", "{"):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def stamp() -> dict[str, float]:
    """The `ts` (Unix seconds) and `mono` (CLOCK_MONOTONIC seconds) every line carries."""
    return {"ts": time.time(), "mono": time.clock_gettime(time.CLOCK_MONOTONIC)}


class JsonlWriter:
    """Appends one JSON object per line to a file, flushed line by line, or, with
    `flush_each=False` (a busy log), whenever the caller calls `flush()`."""

    def __init__(self, path: Path, *, flush_each: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.flush_each = flush_each
        self._f: IO[bytes] | None = path.open("ab")

    def write(self, record: Mapping[str, Any]) -> None:
        """Write `record` (stamped with ts and mono unless it has them)."""
        if self._f is None:
            raise ValueError(f"{self.path} is closed")
        obj = {**stamp(), **record}
        self._f.write(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=str) + b"\n")
        if self.flush_each:
            self._f.flush()

    def flush(self) -> None:
        """Make what was written visible to readers."""
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        """Close the file; safe to call twice."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


TAIL_MAX_LINE = 1 << 20
"""Bytes of a line kept at most (`Tail`): a program that writes hundreds of MB without a
newline (a progress bar redrawn with carriage returns, binary output) is not held whole.
Not `MAX_LINE`, the records' limit: named so, it replaced that one, and every record over
1 MiB (a long failure, a partition's step) was left out as damaged."""
CUT = b" [line cut at 1 MiB]"
"""What ends a line that `Tail` cut."""
_CHUNK = 1 << 16
"""Bytes a `Tail` reads at a time: `harness logs` merges one `Tail` per file, each holding
its last chunk's lines, so this times the number of files is the merge's memory (1 MiB
chunks held 0.7 GB for 300 files)."""


class Tail:
    """Reads the lines appended to a file since the last call, a chunk at a time, so memory
    stays flat on a large file; a line longer than `max_line` bytes is cut there (`CUT`
    marks it) and the rest of it is dropped. A file that cannot be read is told to
    `unreadable` at each read, and read as absent, where it is given (`open_or_tell`; a
    follower tells it once: `told_once`)."""

    def __init__(self, path: Path, *, from_start: bool = True, max_line: int = TAIL_MAX_LINE,
                 unreadable: Unreadable | None = None) -> None:
        self.path = path
        self.max_line = max_line
        self._unreadable = unreadable
        self._pos = 0
        self._buf = b""  # the start of a line whose newline has not come yet
        self._cutting = False  # within a line that was cut: drop up to its newline
        if not from_start:
            with contextlib.suppress(FileNotFoundError):
                self._pos = os.stat(path).st_size

    def lines(self, *, final: bool = False) -> Iterator[bytes]:
        """The new complete lines (without the newline), read as they are asked for, up to
        the file's end; a partial last line waits for its newline, unless `final` (the
        writer is done)."""
        f = open_or_tell(self.path, self._unreadable)
        if f is not None:
            with f:
                f.seek(self._pos)
                while chunk := f.read(_CHUNK):
                    self._pos += len(chunk)
                    lines = self._split(chunk)
                    del chunk  # the lines are copies: not both while they are handed out
                    yield from lines
        if final and self._buf:
            yield self._buf
            self._buf = b""

    def read_lines(self) -> list[bytes]:
        """`lines()`, all of them at once."""
        return list(self.lines())

    def _split(self, chunk: bytes) -> list[bytes]:
        pieces = chunk.split(b"\n")
        last = len(pieces) - 1  # the piece after the chunk's last newline: no line end yet
        out: list[bytes] = []
        for i, piece in enumerate(pieces):
            if self._cutting:
                self._cutting = i == last
                continue
            line = self._buf + piece if i == 0 else piece
            self._buf = b""
            if len(line) > self.max_line:
                out.append(line[: self.max_line] + CUT)
                self._cutting = i == last
            elif i < last:
                out.append(line)
            else:
                self._buf = line
        return out


def told_once(unreadable: Unreadable | None) -> Unreadable | None:
    """`unreadable`, told of each file once (a follower reads its files again and again)."""
    if unreadable is None:
        return None
    seen: set[Path] = set()

    def tell(error: ReadFailed) -> None:
        if error.path not in seen:
            seen.add(error.path)
            unreadable(error)

    return tell


def ignore_unreadable(error: ReadFailed) -> None:
    """An `Unreadable` that leaves the file out and tells no one (where a reader has no one
    to tell, and a file it cannot read must not end what it does)."""
