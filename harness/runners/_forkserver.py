"""The process host: starts every instance of a run and makes sure none outlives it.

Python instances are forked from this process after it imported the plan's code once:
starting 100 interpreters that import trio costs seconds of CPU, a fork about a
millisecond. Other programs are forked and exec'd. Each instance leads its own session and
may join a network namespace first.

The host is a child subreaper: whatever an instance starts, even a daemon that leaves its
session, stays below it. When the supervisor goes away, however it goes (a SIGKILL
included: the kernel closes the socket), the host kills everything below it and exits.

It speaks JSON lines over a socket pair with the supervisor:

    <- {"ready": true}  or  {"fatal": TEXT} (the entrypoint could not be imported)
    -> {"spawn": KEY, "env": {...}, "cwd", "stdout", "stderr", "netns": path | null,
        "argv": [...] | null (null: the Python entrypoint)}
    <- {"spawned": KEY, "pid": PID}  or  {"failed": KEY, "error": TEXT}
    <- {"exited": PID, "status": CODE or -SIGNAL}
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from harness import _linux

Send = Callable[[dict[str, Any]], None]


def _serve(control: socket.socket, entrypoint: str | None, backend: str) -> None:
    out = control.makefile("wb", buffering=0)

    def send(msg: dict[str, Any]) -> None:
        out.write(orjson.dumps(msg) + b"\n")

    fn = None
    if entrypoint:
        from harness.sdk import load_entrypoint

        try:
            fn = load_entrypoint(entrypoint)  # the plan's code, imported once before any fork
        except Exception as e:
            send({"fatal": f"cannot load {entrypoint}: {type(e).__name__}: {e}"})
            return
    # Children share this process's memory copy-on-write; a collection that walks the
    # inherited objects would write to (and so copy) nearly every page of it.
    gc.collect()
    gc.freeze()
    send({"ready": True})
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ, "control")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    buffer = b""
    while True:
        for key, _ in sel.select():
            if key.data == "child":
                os.read(wake_r, 4096)
                _reap(send)
                continue
            data = control.recv(1 << 20)
            if not data:
                return  # the supervisor is gone
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


def _reap(send: Send | None) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if send is not None:
            send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _children() -> list[int]:
    me = os.getpid()
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(") ", 1)[1].split()[1]) == me:
                        kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return kids


def _kill_everything() -> None:
    """SIGKILL every process below this one, including orphans reparented to it."""
    deadline = time.monotonic() + 10
    while (kids := _children()) and time.monotonic() < deadline:
        for pid in kids:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
        time.sleep(0.02)
        _reap(None)


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
            except BaseException as e:
                print(f"harness: cannot start the instance: {e}", file=sys.stderr)
                code = 127 if isinstance(e, FileNotFoundError) else 70
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
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the host ignores it; instances must not
    control.close()
    for fd in wake:
        os.close(fd)
    os.setsid()
    for group in req.get("cgroups") or ():  # before anything else runs: its children follow
        with open(os.path.join(group, "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    _linux.die_with_parent(signal.SIGKILL)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if req.get("netns"):
        _linux.setns(req["netns"])
    os.chdir(req["cwd"])
    if req.get("argv"):
        os.execvpe(req["argv"][0], req["argv"], req["env"])
    from harness.sdk import run_instance

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    replace_environ(req["env"])
    return run_instance(fn, backend)


def replace_environ(env: dict[str, str]) -> None:
    """Make os.environ (and the C environment) `env`, changing only what differs: an
    instance's environment is the host's, plus its own ~20 variables (`clear` and `update`
    set all ~60 again, a tenth of a forked instance's start-up)."""
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def main() -> None:
    """`python -m harness.runners._forkserver FD [ENTRYPOINT BACKEND]`."""
    control = socket.socket(fileno=int(sys.argv[1]))
    entrypoint = sys.argv[2] if len(sys.argv) > 2 else None
    backend = sys.argv[3] if len(sys.argv) > 3 else "trio"
    _linux.child_subreaper()
    # The supervisor may already be gone when this runs; then the socket reads EOF at once.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # our end comes through the socket
    if entrypoint:
        # An instance's start-up, run here first: children start warm (_warmup says why).
        from harness.runners._warmup import warm_up

        try:
            warm_up(backend)
        except Exception as e:  # only slower instances: say so, and go on
            print(f"harness: process host: the warm-up failed: {e}", file=sys.stderr)
    try:
        _serve(control, entrypoint, backend)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the supervisor went away (e.g. interrupted while this started)
    finally:
        _kill_everything()


if __name__ == "__main__":
    main()
