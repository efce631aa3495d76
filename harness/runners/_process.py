"""Instance processes: exec'd programs, or Python instances forked from a template."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import orjson
import trio

from harness import _linux


@dataclasses.dataclass(frozen=True)
class Launch:
    """How to start one instance."""

    env: Mapping[str, str]
    cwd: Path
    stdout: Path
    stderr: Path
    netns: str | None = None  # a path such as /run/netns/NAME
    argv: Sequence[str] | None = None  # a program; None: the case's Python entrypoint


class Process(Protocol):
    """A started instance."""

    pid: int

    async def wait(self) -> int:
        """Its exit status: the exit code, or minus the signal number that ended it."""
        ...


def signal_group(pid: int, sig: int) -> None:
    """Send `sig` to the instance's whole process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


class _ExecProcess:
    def __init__(self, proc: trio.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    async def wait(self) -> int:
        return await self._proc.wait()


def _child_setup(netns: str | None) -> None:
    # Runs in the child between fork and exec: no Python objects of the parent are safe to
    # use here beyond these calls.
    _linux.die_with_parent(signal.SIGKILL)
    if netns:
        _linux.setns(netns)


async def exec_program(launch: Launch) -> Process:
    """Start `launch.argv` in its own session (and network namespace), output to files."""
    assert launch.argv is not None
    with launch.stdout.open("ab") as out, launch.stderr.open("ab") as err:
        proc = await trio.lowlevel.open_process(
            list(launch.argv),
            env=dict(launch.env),
            cwd=str(launch.cwd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(launch.netns),
        )
    return _ExecProcess(proc)


class _ForkedProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None
        self.exited = trio.Event()

    async def wait(self) -> int:
        await self.exited.wait()
        assert self.status is not None
        return self.status


class ForkServer:
    """The supervisor's side of `harness.runners._forkserver` (one per test case)."""

    def __init__(self, entrypoint: str, backend: str) -> None:
        self.entrypoint = entrypoint
        self.backend = backend
        self._ids = 0
        self._pending: dict[int, tuple[trio.Event, dict[str, object]]] = {}
        self._procs: dict[int, _ForkedProcess] = {}
        self._stream: trio.SocketStream | None = None
        self._proc: trio.Process | None = None
        self._lock = trio.Lock()

    async def run(
        self, cwd: Path, env: Mapping[str, str], *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the template and serve it until cancelled (then it and its children die)."""
        ours, theirs = trio.socket.socketpair()
        argv = [sys.executable, "-m", "harness.runners._forkserver",
                str(theirs.fileno()), self.entrypoint, self.backend]
        try:
            self._proc = await trio.lowlevel.open_process(
                argv, cwd=str(cwd), env=dict(env), pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=lambda: _linux.die_with_parent(signal.SIGKILL),
            )
            theirs.close()
            self._stream = trio.SocketStream(ours)
            task_status.started()
            await self._read()
        finally:
            theirs.close()
            ours.close()
            if self._proc is not None and self._proc.returncode is None:
                self._proc.kill()
                with trio.CancelScope(shield=True):
                    await self._proc.wait()
            for p in self._procs.values():  # children died with the template (SIGKILL)
                if p.status is None:
                    p.status = -signal.SIGKILL
                    p.exited.set()

    async def _read(self) -> None:
        assert self._stream is not None
        buffer = b""
        async for data in self._stream:
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                msg = orjson.loads(line)
                if "exited" in msg:
                    proc = self._procs.get(msg["exited"])
                    if proc is not None:
                        proc.status = msg["status"]
                        proc.exited.set()
                else:
                    key = msg.get("spawned", msg.get("failed"))
                    event, box = self._pending[key]
                    box.update(msg)
                    if "pid" in msg:
                        self._procs[msg["pid"]] = _ForkedProcess(msg["pid"])
                    event.set()
        code = await self._proc.wait() if self._proc else None
        raise RuntimeError(f"the instance template process exited (status {code})")

    async def spawn(self, launch: Launch) -> Process:
        """Fork one instance from the template."""
        assert self._stream is not None, "ForkServer.run has not started"
        self._ids += 1
        key = self._ids
        event, box = trio.Event(), dict[str, object]()
        self._pending[key] = (event, box)
        request = {"spawn": key, "env": dict(launch.env), "cwd": str(launch.cwd),
                   "stdout": str(launch.stdout), "stderr": str(launch.stderr),
                   "netns": launch.netns}
        async with self._lock:
            await self._stream.send_all(orjson.dumps(request) + b"\n")
        await event.wait()
        del self._pending[key]
        if "error" in box:
            raise OSError(f"cannot start the instance: {box['error']}")
        return self._procs[int(box["pid"])]  # type: ignore[call-overload]
