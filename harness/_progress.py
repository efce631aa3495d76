"""Live progress on stderr while a run goes on, and the summary table at its end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from harness._outcome import InstanceState
from harness._tell import one_line


class Progress:
    """One status line: instances started, passed, failed, and the latest phase.

    On a terminal the line is redrawn in place; elsewhere (CI logs) a line is printed when
    something changed, at most every `interval` seconds, and at least every `heartbeat`
    seconds while nothing changes (a long phase then does not read as a hang).
    """

    def __init__(self, total: int, out: TextIO | None = None, interval: float = 2.0,
                 heartbeat: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.interval = 0.2 if self.tty else interval
        self.heartbeat = heartbeat
        self._clock = clock
        self.t0 = clock()
        self.started = self.passed = self.failed = 0
        self.phase = ""
        self._last_line = ""
        self._last_print = 0.0
        self._gone = False

    def line(self) -> str:
        """The current status line."""
        phase = f"  phase: {one_line(self.phase, 120)}" if self.phase else ""
        return (
            f"[{self._clock() - self.t0:6.1f}s] started {self.started}/{self.total}"
            f"  passed {self.passed}  failed {self.failed}{phase}"
        )

    def update(self, force: bool = False) -> None:
        """Show the line if it changed and enough time passed, or `heartbeat` passed
        (outside a terminal), or `force`."""
        now = self._clock()
        if not force and now - self._last_print < self.interval:
            return
        text = self.line()
        body = text.split("] ", 1)[1]
        unchanged = body == self._last_line.split("] ", 1)[-1]
        # (the heartbeat's line comes at the update before it is due, not the one after: at
        # updates every 2 s, a 15 s heartbeat printed every 16 s)
        due = self.heartbeat - self.interval
        if not force and unchanged and (self.tty or now - self._last_print < due):
            return
        self._last_line, self._last_print = text, now
        self._write("\r\x1b[2K" + text if self.tty else text + "\n")

    def note(self, text: str) -> None:
        """A line of its own (e.g. the first failure), above the status line."""
        last = self._last_line if self.tty else ""
        self._write(("\r\x1b[2K" if self.tty else "") + one_line(text, 1000) + "\n" + last)

    def finish(self) -> None:
        """End the status line."""
        self.update(force=True)
        if self.tty:
            self._write("\n")

    def _write(self, text: str) -> None:
        """`text`, flushed. Once the stream fails (a reader gone away, as in `2>&1 | head`;
        a hung-up terminal) nothing more is written: progress must not fail the run."""
        if self._gone:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):  # ValueError: closed
            self._gone = True


def summary_table(instances: Iterable[InstanceState], limit: int = 25) -> str:
    """Per-group counts, then every failed instance with its reason (the first `limit`),
    those that failed of themselves before those stopped because another had."""
    groups: dict[str, list[int]] = {}
    failures: list[tuple[bool, str, str]] = []
    for inst in instances:
        passed, reason = inst.verdict()
        counts = groups.setdefault(inst.spec.group, [0, 0])
        counts[0 if passed else 1] += 1
        if not passed:
            role = f" [{inst.spec.role}]" if inst.spec.role else ""
            failures.append((reason == inst.stopped, inst.spec.id + role, reason or ""))
    width = max([len("group"), *map(len, groups)])
    rows = [f"{'group':<{width}}  passed  failed"]
    rows += [f"{g:<{width}}  {p:>6}  {f:>6}" for g, (p, f) in groups.items()]
    if failures:
        failures.sort(key=lambda f: f[0])  # stable: instance order within each kind
        rows.append("")
        rows.append("failed instances:")
        w = max(len(i) for _, i, _ in failures[:limit])
        rows += [f"  {i:<{w}}  {one_line(r, 1000)}" for _, i, r in failures[:limit]]
        if len(failures) > limit:
            rows.append(f"  ... and {len(failures) - limit} more (see run.json)")
    return "\n".join(rows)
