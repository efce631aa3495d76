"""The instance agent in a pod: the faults it hears on its instance's topic act on the
instance's real process tree (here children of the test)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import trio

from harness.runners.k8s.agent import _run_once

# The instance starts a child of its own: faults must reach both (its whole tree).
INSTANCE = [sys.executable, "-c",
            "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)']); time.sleep(60)"]  # fmt: skip


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name: state, ppid, pgrp, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(ppid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(_stat(int(stat.parent.name))[1]) == ppid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def _dies_within(pid: int, seconds: float) -> bool:
    """Whether `pid` is gone (or a zombie) within `seconds`: a SIGKILL is delivered at
    once, but a busy machine may run the process's exit a moment later."""
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_pause_resume_and_kill_reach_the_instances_whole_process_group() -> None:
    states: list[tuple[str, ...]] = []
    tree: list[int] = []

    async def main() -> tuple[int, dict[str, Any] | None]:
        send, receive = trio.open_memory_channel[dict[str, Any]](4)
        result: list[tuple[int, dict[str, Any] | None]] = []
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                result.append(await _run_once(INSTANCE, dict(os.environ), receive))

            nursery.start_soon(run)
            with trio.fail_after(20):
                while len(tree) < 2:  # the instance (a child of ours) and its own child
                    await trio.sleep(0.1)
                    tree[:] = [p for c in _children(os.getpid()) if _stat(c)[2] == str(c)
                               for p in (c, *_children(c))]  # fmt: skip
            for pause in (True, False):
                await send.send({"pause": pause})
                await trio.sleep(0.3)
                states.append(tuple(_stat(p)[0] for p in tree))
            await send.send({"end": "killed", "grace": None})
        return result[0]

    code, ended = trio.run(main)
    assert states[0] == ("T", "T")  # both stopped
    assert "T" not in states[1]  # both going again
    assert ended is not None and ended["end"] == "killed" and code != 0
    assert _dies_within(tree[1], 5)  # the kill took the instance's child too (else: 60 s)
