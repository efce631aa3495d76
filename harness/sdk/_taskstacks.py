"""Where each task of an instance's event loop waits, written at a stop beside faulthandler's
dump of the threads: a test function that awaits (a barrier, a sleep, a socket) is in no
thread's stack, only in its task's chain of coroutines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from harness._runparams import TASK_HEADER


def write_task_stacks(signum: int = 0, frame: FrameType | None = None) -> None:
    """The stacks of the running event loop's tasks to stderr, under a line stamped with
    the time (`harness logs` places the dump by it); a signal handler (it writes with
    os.write: the stop may come while stderr's own buffer is being written)."""
    with contextlib.suppress(Exception):  # a stop's diagnostics must not fail the stop
        sections = [_section(name, frames) for name, frames in _tasks()]
        if not sections:
            return
        now = datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds")
        text = (f"{now.replace('+00:00', 'Z')} harness.sdk: where the event loop's tasks "
                "waited at the stop\n" + "".join(sections))
        os.write(sys.stderr.fileno(), text.encode("utf-8", "backslashreplace"))


def _section(name: str, frames: list[tuple[str, int, str]]) -> str:
    lines = [TASK_HEADER.format(name=name)]
    lines += [f'  File "{file}", line {line} in {function}' for file, line, function in frames]
    return "\n".join(lines) + "\n\n"


def _tasks() -> list[tuple[str, list[tuple[str, int, str]]]]:
    """(name, frames most recent first) of every task of the loop running in this thread:
    trio's task tree, else asyncio's tasks; none outside one."""
    out = []
    try:
        import trio

        root: Any = trio.lowlevel.current_root_task()
    except (ImportError, RuntimeError):
        root = None
    if root is not None:
        todo = [root]
        while todo:
            task = todo.pop()
            frames = [(f.f_code.co_filename, line, f.f_code.co_name)
                      for f, line in task.iter_await_frames()]
            out.append((task.name, frames[::-1]))
            todo.extend(t for nursery in task.child_nurseries for t in nursery.child_tasks)
        return out
    loop = asyncio.events._get_running_loop()
    if loop is None:
        return out
    for task in asyncio.all_tasks(loop):
        out.append((task.get_name(), _awaited(task.get_coro())[::-1]))
    return out


def _awaited(coro: Any) -> list[tuple[str, int, str]]:
    """The frames of a coroutine and of what it awaits, outermost first (asyncio's
    `Task.get_stack` gives the outermost alone)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames
