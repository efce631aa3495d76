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
    -> {"prefork": N}  (optional: the instances to come, see `_Pool`)
    -> {"spawn": KEY, "env": {...}, "cwd", "stdout", "stderr", "netns": path | null,
        "argv": [...] | null (null: the Python entrypoint)}
    <- {"spawned": KEY, "pid": PID}  or  {"failed": KEY, "error": TEXT}
    <- {"exited": PID, "status": CODE or -SIGNAL}
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import mmap
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

from harness import _linux
from harness._runparams import STACK_SIGNAL

Send = Callable[[dict[str, Any]], None]


class _Outbox:
    """Replies to the supervisor, kept until its socket takes them: when the supervisor
    lags behind (a burst of 1,000 exits) the host goes on forking and reaping.

    Written straight to the non-blocking socket (the supervisor's end is Trio's, so this
    one came non-blocking), a reply that did not fit was dropped whole, and its instance
    waited for the run's timeout."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control
        self._pending = bytearray()
        self._selector: selectors.BaseSelector | None = None
        self._writing = False  # the selector also waits for the socket to take more

    def watch(self, selector: selectors.BaseSelector) -> None:
        """From now on, let `selector` (where the socket is registered as "control") say
        when the socket takes more; until then, every reply is sent whole, blocking."""
        self._control.setblocking(False)
        self._selector = selector
        self.flush()

    def send(self, msg: dict[str, Any]) -> None:
        """Send `msg`, or as much as the socket takes now and the rest later."""
        self._pending += orjson.dumps(msg) + b"\n"
        if self._selector is None:
            self._control.sendall(self._pending)
            self._pending.clear()
        else:
            self.flush()

    def flush(self) -> None:
        """Send what the socket takes now."""
        while self._pending:
            try:
                sent = self._control.send(self._pending)
            except BlockingIOError:
                break
            del self._pending[:sent]
        writing = bool(self._pending)
        if self._selector is not None and writing != self._writing:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
            self._selector.modify(self._control, events, "control")
            self._writing = writing


def _serve(control: socket.socket, entrypoint: str | None, backend: str) -> None:
    control.setblocking(True)
    outbox = _Outbox(control)
    send = outbox.send

    fn = None
    if entrypoint:
        from harness.sdk import load_entrypoint

        try:
            fn = load_entrypoint(entrypoint)  # the plan's code, imported once before any fork
        except BaseException as e:  # SystemExit, KeyboardInterrupt too: the plan's doing
            what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            traceback.print_exc()  # to the host's log: where in the plan's code it was
            send({"fatal": f"cannot load {entrypoint}: {what}"})
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
    # A pool child waits for this signal; blocked from here on, so that one sent before
    # the child waits is kept for it (children unblock it before they run anything).
    signal.pthread_sigmask(signal.SIG_BLOCK, {_ASSIGN})
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ, "control")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    outbox.watch(sel)
    detach = functools.partial(_detach, control, (wake_r, wake_w, sel.fileno()), os.getpid())
    pool: _Pool | None = None
    buffer = b""
    while True:
        # With pool children still to make, only look: make one whenever nothing waits.
        events = sel.select(0 if pool is not None and pool.wanted else None)
        if not events and pool is not None and pool.wanted:
            pool.make_one(fn, backend, detach)
        for key, mask in events:
            if key.data == "child":
                os.read(wake_r, 4096)
                _reap(send)
                continue
            if mask & selectors.EVENT_WRITE:
                outbox.flush()
            if not mask & selectors.EVENT_READ:
                continue
            data = control.recv(1 << 20)
            if not data:
                return  # the supervisor is gone
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                req = orjson.loads(line)
                if "prefork" in req:
                    with contextlib.suppress(OSError):  # no memory for it: no pool
                        pool = _Pool(min(int(req["prefork"]), _POOL_MAX))
                    continue
                try:
                    pid = _spawn(req, fn, backend, detach, pool)
                except OSError as e:
                    send({"failed": req["spawn"], "error": str(e)})
                else:
                    send({"spawned": req["spawn"], "pid": pid})
        # Children are reaped on SIGCHLD's wake-up only: each `waitpid` scans every child,
        # and with 1,000 pool children a reap per turn of this loop was quadratic.


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


_ASSIGN = signal.SIGUSR1
"""Tells a pool child that its slot holds its instance's request."""
_SLOT = 1 << 16
"""Bytes of a pool child's slot: a request (its environment, mostly: a few KiB) that does
not fit is forked for, as without a pool."""
_POOL_MAX = 4096


class _Pool:
    """Children forked ahead of their instances, while the run still builds its network.

    A fork (the host's page tables copied, then Python's after-fork work in the child)
    is a fifth of a forked instance's start-up; made while the network builds, on a core
    the build leaves idle, it is off the run's critical path. Each pool child waits for
    `_ASSIGN`, then reads its request from its slot of memory shared with the host and
    starts as a directly forked child would. Those never asked for die with the host."""

    def __init__(self, count: int) -> None:
        self.wanted = count  # children still to make; the next one's slot is `wanted - 1`
        self._memory = mmap.mmap(-1, max(count, 1) * _SLOT)  # shared, anonymous
        self._waiting: collections.deque[tuple[int, int]] = collections.deque()  # pid, slot

    def make_one(self, fn: Any, backend: str, detach: Callable[[], None]) -> None:
        self.wanted -= 1
        slot = self.wanted
        pid = _fork()
        if pid == 0:
            _exit_with(lambda: self._wait_and_run(slot, fn, backend, detach))
        self._waiting.append((pid, slot))

    def _wait_and_run(self, slot: int, fn: Any, backend: str, detach: Callable[[], None]) -> int:
        detach()
        signal.sigwait({_ASSIGN})
        with memoryview(self._memory)[slot * _SLOT : (slot + 1) * _SLOT] as view:
            req = orjson.loads(view[4 : 4 + int.from_bytes(view[:4], "little")])
        self.release()
        stdout, stderr = _open_outputs(req)
        return _child(req, fn, backend, stdout, stderr)

    def release(self) -> None:
        """In a child: unmap the slots, which hold (and go on receiving) every other
        instance's request, its sync token included."""
        self._memory.close()

    def assign(self, data: bytes) -> int | None:
        """The pid of a pool child now running the request `data`; None if none can."""
        while self._waiting and len(data) + 4 <= _SLOT:
            pid, slot = self._waiting.popleft()
            self._memory[slot * _SLOT : slot * _SLOT + 4 + len(data)] = (
                len(data).to_bytes(4, "little") + data
            )
            try:
                os.kill(pid, _ASSIGN)
            except ProcessLookupError:  # killed from outside while it waited: the next
                continue
            return pid  # (a slot is never used twice: its child may read it any time)
        if self.wanted:
            self.wanted -= 1  # forked for directly: one pool child fewer to make
        return None


def _spawn(req: dict[str, Any], fn: Any, backend: str, detach: Callable[[], None],
           pool: _Pool | None) -> int:
    """Start `req`'s instance: on a pool child if one waits, else on a new fork."""
    stdout, stderr = _open_outputs(req)  # here, so that a bad path fails the request
    try:
        if pool is not None and (pid := pool.assign(orjson.dumps(req))) is not None:
            return pid  # it opens them again itself
        pid = _fork()
        if pid == 0:
            detach()
            if pool is not None:
                pool.release()
            _exit_with(lambda: _child(req, fn, backend, stdout, stderr))
        return pid
    finally:
        os.close(stdout)
        os.close(stderr)


def _fork() -> int:
    """`os.fork`, with nothing of the host's output left in its buffers: a child would
    write it again to its own stdout.log (what the plan's module printed at import,
    unless PYTHONUNBUFFERED is set)."""
    with contextlib.suppress(OSError, ValueError):  # its log's disk full: fork all the same
        sys.stdout.flush()
        sys.stderr.flush()
    return os.fork()


def _open_outputs(req: dict[str, Any]) -> tuple[int, int]:
    stdout = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return stdout, os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        os.close(stdout)
        raise


CANNOT_START = "harness: cannot start the instance: "
"""How a child the host forked says, as its last line on stderr, that it could not start
(the supervisor reads it for the instance's reason)."""


def _exit_with(run: Callable[[], int]) -> NoReturn:
    """In a child: run, then exit with its code (70, or 127 for a missing program, if it
    could not start)."""
    code = 70
    try:
        code = run()
    except BaseException as e:
        print(f"{CANNOT_START}{e}", file=sys.stderr)
        code = 127 if isinstance(e, FileNotFoundError) else 70
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _detach(control: socket.socket, fds: tuple[int, ...], host: int) -> None:
    """In a child of `host`: nothing of the host's serving is kept (`fds`: its wake-up
    pipe, its selector), and it dies with the host (at once, if the host is gone already)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    control.close()
    for fd in fds:
        os.close(fd)
    _linux.die_with_parent(signal.SIGKILL)
    if os.getppid() != host:  # it died before the request: no signal will come
        os._exit(70)


def _child(req: dict[str, Any], fn: Any, backend: str, stdout: int, stderr: int) -> int:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {_ASSIGN})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the host ignores it; instances must not
    os.setsid()
    for group in req.get("cgroups") or ():  # before anything else runs: its children follow
        with open(os.path.join(group, "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    for fd in {stdout, stderr} - {1, 2}:  # a forked Python instance would keep them
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if req.get("netns"):
        _linux.setns(req["netns"])
    os.chdir(req["cwd"])
    if req.get("argv"):
        # Python (and this host: STACK_SIGNAL) ignores them, and an ignored signal stays so
        # across exec: a program run by hand has them at their default (subprocess
        # restores them too).
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, STACK_SIGNAL):
            signal.signal(sig, signal.SIG_DFL)
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
    # Ignored by every child until the SDK has it dump the stacks (`run_instance`): one the
    # supervisor stops as it starts must not die of it instead of its SIGTERM.
    signal.signal(STACK_SIGNAL, signal.SIG_IGN)
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
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # not waiting for a thread the plan's module started (a run's end did)


if __name__ == "__main__":
    main()
