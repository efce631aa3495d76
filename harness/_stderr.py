"""What an instance's stderr.log says of its end, for its reason: its last lines (why a
program exited non-zero) and the stack a stop had a Python instance dump there."""

from __future__ import annotations

from pathlib import Path

from harness.observe._jsonl import ignore_unreadable, read_tail

QUOTE_LINES = 5
QUOTE_CHARS = 500
"""A quote of stderr holds at most its last `QUOTE_LINES` lines and `QUOTE_CHARS`
characters: a reason is one line of the summary table."""
_TAIL_BYTES = 8192  # read from the end: where a quote's lines and their traceback are
_TRACEBACK = "Traceback (most recent call last):"
_SEPARATOR = " | "


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
