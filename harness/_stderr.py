"""What an instance's stderr.log says of its end, for its reason: its last lines (why a
program exited non-zero) and the stack a stop had a Python instance dump there."""

from __future__ import annotations

import re
from pathlib import Path

from harness._reading import read_upto
from harness._runparams import TASK_HEADER
from harness.observe._jsonl import ignore_unreadable, read_tail

QUOTE_LINES = 5
QUOTE_CHARS = 500
"""A quote of stderr holds at most its last `QUOTE_LINES` lines and `QUOTE_CHARS`
characters: a reason is one line of the summary table."""
_TAIL_BYTES = 8192  # read from the end: where a quote's lines and their traceback are
_TRACEBACK = "Traceback (most recent call last):"
_SEPARATOR = " | "
_STACK_BYTES = 1 << 20  # a dump: up to 100 threads of 100 frames each (faulthandler's caps)
_TASK = re.escape(TASK_HEADER).replace(re.escape("{name}"), ".*")  # (the SDK's tasks)
_THREAD = re.compile(r"(Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\):$"
                     rf"|({_TASK})$")
_FRAME = re.compile(r'  File "(.*)", line (\d+) in (.*)$')


def last_words(stderr: Path) -> str | None:
    """The last lines of `stderr`, each stripped of its indentation and joined by " | ",
    bounded as `QUOTE_LINES` and `QUOTE_CHARS` say; None if it holds none. The exception
    line of the last Python traceback among them leads it when lines written after the
    traceback (a log line, an atexit hook's) would leave it out: it says what happened."""
    raw = read_tail(stderr, _TAIL_BYTES, ignore_unreadable).splitlines()
    lines = [(i, line.strip()) for i, line in enumerate(raw) if line.strip()]
    if not lines:
        return None
    kept = lines[-QUOTE_LINES:]
    exception = _exception_line(raw)
    if exception is None or exception >= kept[0][0]:
        return _fit([text for _, text in kept], QUOTE_CHARS)
    head = _cut(raw[exception].strip(), QUOTE_CHARS // 2) + " …"
    rest = _fit([text for _, text in kept], QUOTE_CHARS - len(head) - len(_SEPARATOR))
    return head + _SEPARATOR + rest


def _exception_line(raw: list[str]) -> int | None:
    """The index of the last traceback's exception line ("ValueError: bad"): the first line
    after its header that is not indented as its frames are."""
    starts = [i for i, line in enumerate(raw) if line.startswith(_TRACEBACK)]
    if not starts:
        return None
    return next((i for i in range(starts[-1] + 1, len(raw))
                 if raw[i].strip() and not raw[i][0].isspace()), None)


def _fit(lines: list[str], limit: int) -> str:
    """`lines` joined, dropping the first ones until it fits `limit`; the last one alone,
    if longer, cut at its end (its start says what it is)."""
    out = [lines[-1]]
    size = len(lines[-1])
    for line in reversed(lines[:-1]):
        size += len(_SEPARATOR) + len(line)
        if size > limit:
            break
        out.append(line)
    return _cut(_SEPARATOR.join(reversed(out)), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stack_note(stderr: Path, offset: int, code: Path) -> str | None:
    """What a stop's stack dump, written to `stderr` from `offset` on, says for the
    instance's reason: the innermost frame of `code` (the plan's directory) it holds, of
    the thread that took the signal first (faulthandler's "Current thread"), and where the
    whole dump is; None if there is no dump there (the instance ended before it could
    write one)."""
    try:
        with stderr.open("rb") as f:
            f.seek(offset)
            text = read_upto(f, _STACK_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    # (rank: 0 the current thread, 1 another, 2 a task; frames innermost first)
    threads: list[tuple[int, list[tuple[str, ...]]]] = []
    for line in text.splitlines():
        if (head := _THREAD.match(line)) is not None:
            rank = 0 if head.group(1) == "Current thread" else 2 if head.group(2) else 1
            threads.append((rank, []))
        elif threads and (frame := _FRAME.match(line)) is not None:
            threads[-1][1].append(frame.groups())
    if not threads:
        return None
    threads.sort(key=lambda thread: thread[0])  # stable: the current thread first
    where = f"every thread's stack at the stop is in {stderr.name}"
    for rank, frames in threads:
        for file, line, function in frames:
            path = Path(file)
            if path.is_relative_to(code):
                how = "awaiting in" if rank == 2 else "in"
                return f"; it was {how} {function} ({path.relative_to(code)}:{line}): {where}"
    return f"; {where}"
