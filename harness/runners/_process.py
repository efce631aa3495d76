"""Starting instance processes through the process host (see `_forkserver`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import orjson
import trio


@dataclasses.dataclass(frozen=True)
class Launch:
    """How to start one instance."""

    env: Mapping[str, str]
    cwd: Path
    stdout: Path
    stderr: Path
    netns: str | None = None  # a path such as /run/netns/NAME
    argv: Sequence[str] | None = None  # a program; None: the case's Python entrypoint
    cgroups: Sequence[str] = ()  # directories whose cgroup.procs it joins before it starts


class Process(Protocol):
    """A started instance."""

    pid: int
    lost: str | None
    """Why it ended without its exit being seen (its process host died), once that is so."""

    async def wait(self) -> int:
        """Its exit status: the exit code, or minus the signal number that ended it."""
        ...


def warm_up_prefix(host_pid: int) -> str:
    """The name its process host's warm-up directory starts with (`_warmup`), in the
    temporary directory: the host may die in its warm-up (a SIGKILL if it is not ready when
    the run ends), and then the supervisor removes it."""
    return f"harness-w{host_pid}-"  # short: its socket's path must fit in AF_UNIX's 108


def _remove_warm_up(host_pid: int) -> None:
    for left in Path(tempfile.gettempdir()).glob(f"{warm_up_prefix(host_pid)}*"):
        shutil.rmtree(left, ignore_errors=True)


def signal_group(pid: int, sig: int) -> None:
    """Send `sig` to the instance's whole process group (it leads its own session)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        # No such group yet: the fork server's child calls setsid only as it starts, and
        # has started nothing of its own before (or it is gone: then this fails too).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def _receive(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some()
    except trio.BrokenResourceError:
        return b""


class _ForkedProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None
        self.lost: str | None = None
        self.exited = trio.Event()

    async def wait(self) -> int:
        await self.exited.wait()
        assert self.status is not None
        return self.status


class ProcessHost:
    """The supervisor's side of `harness.runners._forkserver`: starts every instance."""

    def __init__(self, entrypoint: str | None, backend: str = "trio") -> None:
        self.entrypoint = entrypoint
        self.backend = backend
        self._ids = 0
        self._pending: dict[int, tuple[trio.Event, dict[str, object]]] = {}
        self._procs: dict[int, _ForkedProcess] = {}
        self._stream: trio.SocketStream | None = None
        self._proc: trio.Process | None = None
        self._lock = trio.Lock()
        self.error: str | None = None  # why no instance can be forked, once that is so
        self.ready = False  # it has answered: ready to fork, or why it never will be
        self._log: Path | None = None

    async def run(
        self, cwd: Path, env: Mapping[str, str], *, log: Path | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the host and serve it until cancelled (then it and every instance end).
        Its own output (and what the plan's module prints while imported) goes to `log`,
        not to this process's terminal, where it would mix with `harness run --json`."""
        ours, theirs = trio.socket.socketpair()
        argv = [sys.executable, "-m", "harness.runners._forkserver", str(theirs.fileno())]
        if self.entrypoint:
            argv += [self.entrypoint, self.backend]
        self._log = log
        out = None if log is None else os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                               0o644)
        try:
            self._proc = await trio.lowlevel.open_process(
                argv, cwd=str(cwd), env=dict(env), pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            )
            theirs.close()
            self._stream = trio.SocketStream(ours)
            await self._read(task_status)
        finally:
            if out is not None:
                os.close(out)
            theirs.close()
            ours.close()  # the host sees EOF, kills every instance left and exits
            if self._proc is not None:
                if not self.ready:  # still importing the plan's module (which may never
                    with contextlib.suppress(ProcessLookupError):  # end): no instance yet
                        os.killpg(self._proc.pid, signal.SIGKILL)
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    await self._proc.wait()
                if self._proc.returncode is None:
                    self._proc.kill()
                _remove_warm_up(self._proc.pid)
            if log is not None:
                with contextlib.suppress(OSError):
                    if os.stat(log).st_size == 0:  # it said nothing: no file
                        os.unlink(log)
            self._end_unseen(None)  # the host killed those still running

    async def _read(self, task_status: trio.TaskStatus[None]) -> None:
        assert self._stream is not None
        buffer = b""
        started = False
        while data := await _receive(self._stream):
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                msg = orjson.loads(line)
                if "ready" in msg or "fatal" in msg:
                    self.error = msg.get("fatal")
                    if self.error is not None and self._log is not None:
                        self.error += f" (traceback in {self._log.name})"
                    self.ready = started = True
                    task_status.started()
                elif "exited" in msg:
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
        if not self.error:
            output = ""
            if self._log is not None:  # removed once the host is gone, if it said nothing
                said = self._log.is_file() and self._log.stat().st_size
                output = f"; its output: {self._log}" if said else "; it wrote nothing"
            self.error = f"the process host exited (status {code}){output}"
        for event, box in self._pending.values():
            box["error"] = self.error
            event.set()
        # Its instances die with it (their parent-death signal), unseen: they were
        # waited for until the run's timeout, and blamed for it.
        self._end_unseen(self.error)
        if not started:  # it died before it was ready: every spawn fails with why
            task_status.started()
        await trio.sleep_forever()  # spawn() reports the error for every instance

    def _end_unseen(self, lost: str | None) -> None:
        """Every instance whose exit the host did not report ends now, killed with it
        (`lost`: why its exit was never seen, if the host died)."""
        for p in self._procs.values():
            if p.status is None:
                p.status, p.lost = -signal.SIGKILL, lost
                p.exited.set()

    async def prefork(self, count: int) -> None:
        """Have the host fork `count` children ahead, in its idle moments, for the next
        `spawn`s to start on (while the network builds, say); those never used die with
        it. A spawn with none ready forks as before."""
        assert self._stream is not None, "ForkServer.run has not started"
        if count > 0 and not self.error:
            async with self._lock:
                # A host that died meanwhile is reported by every spawn, with its status.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._stream.send_all(orjson.dumps({"prefork": count}) + b"\n")

    async def spawn(self, launch: Launch) -> Process:
        """Start one instance: fork the Python entrypoint, or fork and exec `launch.argv`."""
        if self.error:
            raise OSError(self.error)
        assert self._stream is not None, "ForkServer.run has not started"
        self._ids += 1
        key = self._ids
        event, box = trio.Event(), dict[str, object]()
        self._pending[key] = (event, box)
        request = {"spawn": key, "env": dict(launch.env), "cwd": str(launch.cwd),
                   "stdout": str(launch.stdout), "stderr": str(launch.stderr),
                   "netns": launch.netns, "argv": list(launch.argv) if launch.argv else None,
                   "cgroups": list(launch.cgroups)}
        async with self._lock:
            await self._stream.send_all(orjson.dumps(request) + b"\n")
        await event.wait()
        del self._pending[key]
        if "error" in box:
            raise OSError(str(box["error"]))
        return self._procs[int(box["pid"])]  # type: ignore[call-overload]
