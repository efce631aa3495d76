"""One time-ordered view of every log of a run: a k-way merge of the per-source files."""

from __future__ import annotations

import dataclasses
import functools
import heapq
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.observe._jsonl import Tail, Unreadable, parse_line, read_jsonl, told_once
from harness.observe._rundir import follow_run, instance_dirs, run_ended
from harness.observe._runrecord import RunRecord, read_run

SUPERVISOR = "supervisor"
LEVEL_RANK = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}
# Files per instance directory, with the level a plain (non-JSON) line gets.
INSTANCE_FILES = (("log.jsonl", "info"), ("stdout.log", "info"), ("stderr.log", "info"))
# structlog's ConsoleRenderer: "[info     ] event ..." (maybe coloured, maybe time-stamped)
_CONSOLE_LINE = re.compile(
    r"^(?:\x1b\[[0-9;]*m)*(?:\d[\d:.TZ+-]*(?:\x1b\[[0-9;]*m)* )?(?:\x1b\[[0-9;]*m)*\[(?:\x1b\[[0-9;]*m)*"
    r"(?:debug|info|warning|warn|error|critical|exception) *(?:\x1b\[[0-9;]*m)*\]"
)
_MONO_KV = re.compile(r"\bmono=(\d+\.\d+)\b")
_LEADING_TIME = re.compile(  # (after a "[pid] ", as nats-server writes its lines)
    r"^\s*(?:\[\d+\] )?\[?(\d{4}[-/]\d{2}[-/]\d{2})[T ](\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)"
    r"(Z|[+-]\d{2}:?\d{2})?\]? ?(?:\[(DBG|TRC|INF|WRN|ERR|FTL)\])?"
)
_REDIS_TIME = re.compile(  # redis-server: "PID:ROLE 05 Dec 2026 18:47:05.491 # message"
    r"^\s*\d+:[XCSM] (\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}(?:\.\d+)?) ([.*#-]) "
)
_LEVEL_TAGS = {"DBG": "debug", "TRC": "debug", "INF": "info", "WRN": "warning", "ERR": "error",
               "FTL": "critical", ".": "debug", "-": "info", "*": "info", "#": "warning"}
"""A plain line's level, by nats-server's tag after its time, or redis-server's mark."""


@dataclasses.dataclass(frozen=True, slots=True)
class LogLine:
    """One line of the merged view."""

    mono: float
    ts: float | None
    source: str  # instance id or "supervisor"
    stream: str  # "log", "stdout", "stderr"
    level: str
    message: str
    fields: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class LogFilter:
    """Which lines to show; empty tuples mean all."""

    groups: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()
    min_level: str | None = None
    grep: str | None = None

    def wants_source(self, source: str) -> bool:
        """Whether lines of `source` can pass at all."""
        if not self.groups and not self.instances:
            return True
        if source in self.instances:
            return True
        return source != SUPERVISOR and source.rpartition("/")[0] in self.groups

    def __call__(self, line: LogLine) -> bool:
        if (
            self.min_level is not None
            and LEVEL_RANK.get(line.level, 20) < LEVEL_RANK[self.min_level]
        ):
            return False
        # as `grep` on the printed lines: "id=single/0" or "WARN" match, as shown
        return self.grep is None or self.grep in format_line(line, colour=False)


@dataclasses.dataclass(frozen=True, slots=True)
class _Source:
    name: str
    stream: str
    path: Path
    default_level: str
    start_ts: float | None = None  # a plain line before any timestamp gets this time
    # structlog's console rendering (`... mono=123.4`) of records that log.jsonl also holds
    drop_rendered: bool = False


class _Clock:
    """Converts wall-clock times found in plain lines to the shared monotonic clock."""

    def __init__(self, offset: float | None) -> None:
        self.offset = offset  # ts - mono

    def to_mono(self, ts: float) -> float | None:
        return None if self.offset is None else ts - self.offset


def _clock_offset(run_dir: Path, unreadable: Unreadable | None) -> float | None:
    for name in ("events.jsonl", "supervisor.jsonl"):
        for rec in read_jsonl(run_dir / name, unreadable=unreadable):
            ts, mono = rec.get("ts"), rec.get("mono")
            if isinstance(ts, int | float) and isinstance(mono, int | float):
                return float(ts) - float(mono)
    return None


def _sources(run_dir: Path, run: RunRecord | None, flt: LogFilter) -> list[_Source]:
    out: list[_Source] = []
    if flt.wants_source(SUPERVISOR):
        out.append(_Source(SUPERVISOR, "log", run_dir / "supervisor.jsonl", "info"))
    starts = {i.id: i.started for i in run.instances if i.started is not None} if run else {}
    run = run or RunRecord(run_dir.name)  # a live run that has not written run.json yet
    for inst in instance_dirs(run_dir, run):
        if flt.wants_source(inst.id):
            has_json = (inst.path / "log.jsonl").exists()
            for fname, level in INSTANCE_FILES:
                out.append(
                    _Source(
                        inst.id,
                        fname.split(".")[0],
                        inst.path / fname,
                        level,
                        starts.get(inst.id),
                        has_json and fname != "log.jsonl",
                    )
                )
    return out


class _Parser:
    """Turns raw lines of one source into LogLines whose mono never decreases: a plain line
    without a timestamp takes the time of the line before it, so that the merge stays valid."""

    def __init__(self, src: _Source, clock: _Clock, start_mono: float) -> None:
        self.src = src
        self.clock = clock
        own = clock.to_mono(src.start_ts) if src.start_ts is not None else None
        self.last = start_mono if own is None else max(own, start_mono)

    def parse(self, raw: bytes) -> LogLine | None:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text.strip():
            return None
        rec = parse_line(raw)
        ts: float | None = None
        mono: float | None = None
        if rec is not None:
            m, t = rec.pop("mono", None), rec.pop("ts", None)
            mono = float(m) if isinstance(m, int | float) else None
            ts = float(t) if isinstance(t, int | float) else None
            if mono is None and ts is not None:
                mono = self.clock.to_mono(ts)
            level = str(rec.pop("level", self.src.default_level)).lower()
            message = str(rec.pop("event", rec.pop("msg", rec.pop("message", ""))))
            rec.pop("instance", None)
            fields = rec
        else:
            rendered = _MONO_KV.search(text) if "mono=" in text else None  # a tenth the time
            tagged = None
            if rendered is not None:
                mono = float(rendered.group(1))
            else:
                ts, tagged = _leading_time(text)
                if ts is not None:
                    mono = self.clock.to_mono(ts)
            if self.src.drop_rendered and (rendered is not None or _CONSOLE_LINE.match(text)):
                # log.jsonl holds this record; its time still places the plain lines after it
                if mono is not None and mono > self.last:
                    self.last = mono
                return None
            level = tagged or self.src.default_level
            message, fields = text, {}
        if mono is None or mono < self.last:
            mono = self.last
        self.last = mono
        if ts is None and self.clock.offset is not None:
            ts = mono + self.clock.offset
        return LogLine(mono, ts, self.src.name, self.src.stream, level, message, fields)


def _leading_time(text: str) -> tuple[float | None, str | None]:
    """The Unix time a plain line starts with (ISO 8601, Go's `2006/01/02 15:04:05`, each
    maybe after nats-server's "[pid] ", or redis-server's "PID:M 05 Dec 2026 18:47:05.491"),
    and the level its tag or mark after the time says, if any."""
    m = _LEADING_TIME.match(text)
    if m is not None:
        date, clock, zone = m.group(1).replace("/", "-"), m.group(2).replace(",", "."), m.group(3)
        text = f"{date}T{clock}{'+00:00' if zone in (None, 'Z') else zone}"
        tag = m.group(4)
    elif (m := _REDIS_TIME.match(text)) is not None:
        zone, tag = None, m.group(2)
        try:
            fmt = "%d %b %Y %H:%M:%S" + (".%f" if "." in m.group(1) else "")
            text = datetime.strptime(m.group(1), fmt).isoformat()
        except ValueError:  # (another locale's month name)
            return None, None
    else:
        return None, None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None, None
    if zone is None:  # no zone: the local time of this machine, like the program's
        dt = dt.replace(tzinfo=None).astimezone()
    return dt.astimezone(UTC).timestamp(), _LEVEL_TAGS.get(tag) if tag else None


def _parsed(parser: _Parser, raws: Iterable[bytes]) -> Iterator[LogLine]:
    for raw in raws:
        line = parser.parse(raw)
        if line is not None:
            yield line


def merged_lines(run_dir: Path, flt: LogFilter = LogFilter(),
                 unreadable: Unreadable | None = None) -> Iterator[LogLine]:
    """Every log line of the run, in order of `mono`, filtered by `flt`; a file that cannot
    be read is told to `unreadable` and left out, where it is given (`ReadFailed` where not).

    Each file is read lazily and merged with a heap, so memory stays flat on large logs.
    """
    run = read_run(run_dir)
    told = told_once(unreadable)  # events.jsonl is read for the clock, then maybe again
    clock = _Clock(_clock_offset(run_dir, told))
    start = clock.to_mono(run.started) if run and run.started is not None else None
    parsers = [_Parser(s, clock, start or float("-inf")) for s in _sources(run_dir, run, flt)]
    streams = [_parsed(p, Tail(p.src.path, unreadable=told).lines(final=True))
               for p in parsers]
    for line in heapq.merge(*streams, key=_mono):
        if flt(line):
            yield line


def _mono(line: LogLine) -> float:
    return line.mono


def follow_lines(
    run_dir: Path,
    flt: LogFilter = LogFilter(),
    *,
    ended: Callable[[Path], bool] = run_ended,
    poll: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
    unreadable: Unreadable | None = None,
) -> Iterator[LogLine]:
    """Like `merged_lines`, then keeps yielding new lines of a live run until
    `ended(run_dir)`. Lines that arrive in one poll are ordered among themselves; each
    poll's are merged as `merged_lines` merges, a file read as the merge needs it. A file
    that cannot be read is told to `unreadable` once, where it is given."""
    clock = _Clock(None)
    told = told_once(unreadable)
    tails: dict[Path, tuple[Tail, _Parser]] = {}

    def read(final: bool) -> Iterator[LogLine]:
        if clock.offset is None:
            clock.offset = _clock_offset(run_dir, told)
        run = read_run(run_dir)
        # An instance's start is in run.json only from its next refresh (5 s): until then
        # its plain lines take the run's start, as in `merged_lines`, not minus infinity
        # (shown as ??:??:?? and put before everything else).
        start = clock.to_mono(run.started) if run and run.started is not None else None
        for src in _sources(run_dir, run, flt):
            if src.path not in tails:
                parser = _Parser(src, clock, float("-inf") if start is None else start)
                tails[src.path] = (Tail(src.path, unreadable=told), parser)
        streams = [_parsed(parser, tail.lines(final=final)) for tail, parser in tails.values()]
        return (line for line in heapq.merge(*streams, key=_mono) if flt(line))

    return follow_run(run_dir, read, ended=ended, poll=poll, sleep=sleep)


# Foreground colours that read on dark and light terminals.
_PALETTE = (32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
_LEVEL_SHORT = {"warning": "WARN", "critical": "CRIT"}
_LEVEL_COLOUR = {"warning": 33, "warn": 33, "error": 31, "critical": 31, "debug": 90}


def colour_for(source: str, order: Sequence[str] = ()) -> int:
    """The ANSI colour of a source: by its place in `order`, else by a stable hash."""
    if source == SUPERVISOR:
        return 97
    if source in order:
        return _PALETTE[order.index(source) % len(_PALETTE)]
    return _PALETTE[sum(source.encode()) % len(_PALETTE)]


def _clock_time(ts: float) -> str:
    try:
        second, micros = divmod(round(ts * 1_000_000), 1_000_000)
        return f"{_local_second(second)}.{micros // 1000:03d}"
    except (OverflowError, OSError, ValueError):  # a damaged record's time
        return "??:??:??.???"


@functools.lru_cache(maxsize=64)
def _local_second(second: int) -> str:
    """HH:MM:SS of a Unix second in local time: a log's lines share their seconds, and
    formatting each line's time anew was a third of `format_line`."""
    return datetime.fromtimestamp(second).strftime("%H:%M:%S")


def format_line(line: LogLine, *, colour: bool, width: int = 12) -> str:
    """`HH:MM:SS.mmm source LEVEL message key=value ...` for a terminal."""
    when = _clock_time(line.ts) if line.ts is not None else f"{line.mono:12.3f}"
    extras = " ".join(f"{k}={v}" for k, v in line.fields.items() if k != "logger")
    who = line.source if line.stream in ("log",) else f"{line.source}:{line.stream[3:]}"
    msg = f"{line.message} {extras}".rstrip()
    level = _LEVEL_SHORT.get(line.level, line.level[:5].upper())
    if not colour:
        return f"{when} {who:<{width}} {level:<5} {msg}"
    c = colour_for(line.source)
    lc = _LEVEL_COLOUR.get(line.level, 0)
    return f"\x1b[2m{when}\x1b[0m \x1b[{c}m{who:<{width}}\x1b[0m \x1b[{lc}m{level:<5}\x1b[0m {msg}"
