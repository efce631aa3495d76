"""A template process that has imported the instance code once and forks each instance.

Starting 100 Python interpreters that import trio costs seconds of CPU; forking a process
that already imported everything costs about a millisecond per instance. The template
speaks JSON lines over a socket pair with the supervisor:

    -> {"spawn": KEY, "env": {...}, "cwd", "stdout", "stderr", "netns": path | null}
    <- {"spawned": KEY, "pid": PID}  or  {"failed": KEY, "error": TEXT}
    <- {"exited": PID, "status": CODE or -SIGNAL}

It dies with the supervisor (parent-death signal), and its children die with it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
from typing import Any

import orjson


def _serve(control: socket.socket, entrypoint: str, backend: str) -> None:
    from harness import _linux
    from harness.sdk import load_entrypoint

    _linux.die_with_parent(signal.SIGKILL)
    fn = load_entrypoint(entrypoint)  # imports the plan's code once, before any fork
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ, "control")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    buffer = b""
    out = control.makefile("wb", buffering=0)

    def send(msg: dict[str, Any]) -> None:
        out.write(orjson.dumps(msg) + b"\n")

    while True:
        for key, _ in sel.select():
            if key.data == "child":
                os.read(wake_r, 4096)
                _reap(send)
                continue
            data = control.recv(1 << 20)
            if not data:
                return  # the supervisor is gone; children die by their parent-death signal
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                req = orjson.loads(line)
                try:
                    pid = _fork(req, fn, backend, control, (wake_r, wake_w))
                except OSError as e:
                    send({"failed": req["spawn"], "error": str(e)})
                else:
                    send({"spawned": req["spawn"], "pid": pid})
        _reap(send)


def _reap(send: Any) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _fork(req: dict[str, Any], fn: Any, backend: str, control: socket.socket,
          wake: tuple[int, int]) -> int:
    stdout = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stderr = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                code = _child(req, fn, backend, control, wake, stdout, stderr)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        return pid
    finally:
        os.close(stdout)
        os.close(stderr)


def _child(req: dict[str, Any], fn: Any, backend: str, control: socket.socket,
           wake: tuple[int, int], stdout: int, stderr: int) -> int:
    from harness import _linux
    from harness.sdk import run_instance

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    control.close()
    for fd in wake:
        os.close(fd)
    os.setsid()
    _linux.die_with_parent(signal.SIGKILL)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if req.get("netns"):
        _linux.setns(req["netns"])
    os.environ.clear()
    os.environ.update(req["env"])
    os.chdir(req["cwd"])
    return run_instance(fn, backend)


def main() -> None:
    """`python -m harness.runners._forkserver FD ENTRYPOINT BACKEND`."""
    fd, entrypoint, backend = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    control = socket.socket(fileno=fd)
    # Import what every instance needs once, here, so that children start warm.
    import anyio  # noqa: F401
    import structlog  # noqa: F401
    import trio  # noqa: F401

    if backend == "asyncio":
        import asyncio  # noqa: F401
    _serve(control, entrypoint, backend)


if __name__ == "__main__":
    main()
