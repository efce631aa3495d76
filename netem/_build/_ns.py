"""Network namespaces through the kernel's own calls (unshare, setns, bind mounts).

Namespaces are made from short-lived worker threads: `unshare(CLONE_NEWNET)` and `setns`
change only the calling thread, so the process's other threads, and the host's network
namespace, are never touched. Creating them this way costs tens of microseconds each, where
pyroute2's `netns.create` forks a child per namespace.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from netem._errors import NetworkError
from netem._names import NETNS_DIR

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_MS_REC = 0x4000
_MS_BIND = 0x1000
_MS_SHARED = 1 << 20
_MNT_DETACH = 2
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_NETLINK_ROUTE = 0

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def ensure_netns_dir() -> None:
    """Make /run/netns a shared mount point, as `ip netns add` does, so namespaces bound
    there are seen from other mount namespaces too."""
    try:
        os.makedirs(NETNS_DIR, exist_ok=True)
    except OSError as e:
        raise NetworkError(f"cannot create {NETNS_DIR}: {e.strerror} (run as root?)") from None
    rundir = NETNS_DIR.encode()
    if _libc.mount(b"none", rundir, None, _MS_SHARED | _MS_REC, None) == 0:
        return
    if _libc.mount(rundir, rundir, b"none", _MS_BIND | _MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise NetworkError(f"cannot bind-mount {NETNS_DIR}: {os.strerror(err)} (run as root?)")
    if _libc.mount(b"none", rundir, None, _MS_SHARED | _MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise NetworkError(f"cannot make {NETNS_DIR} a shared mount: {os.strerror(err)}")


WORKERS = 2
"""Threads making namespaces at once: the kernel makes them in parallel (1,000 took 0.73 to
0.94 s with two threads against 1.04 to 1.30 s with one)."""


def _in_threads(
    works: Sequence[Callable[[], T]], on_interrupt: Callable[[], None] | None = None
) -> list[T]:
    """Run each of `works` in a fresh thread that may change its own network namespace,
    and return their results in order; the first error is raised once all have ended.

    If the caller is interrupted (Ctrl-C), even while a thread is being started,
    `on_interrupt` is called before the interruption goes up: it must leave the caller
    knowing everything the threads made or will make.
    """
    boxes: list[dict[str, object]] = [{} for _ in works]
    done = [threading.Event() for _ in works]

    def main(work: Callable[[], T], box: dict[str, object], finished: threading.Event) -> None:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            box["result"] = work()
        except BaseException as e:
            box["error"] = e
        finally:
            # The thread ends right after this; a failed restore cannot leak anywhere.
            _libc.setns(original, CLONE_NEWNET)
            os.close(original)
            finished.set()

    try:
        for work, box, finished in zip(works, boxes, done, strict=True):
            threading.Thread(
                target=main, args=(work, box, finished), name="netem-netns", daemon=True
            ).start()
        for finished in done:
            finished.wait()
    except BaseException:
        if on_interrupt is not None:
            on_interrupt()
        raise
    for box in boxes:
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
    return [box["result"] for box in boxes]  # type: ignore[misc]


TCP_TABLE_SIZE = 1024
"""Buckets of each namespace's own TCP socket table (`tcp_child_ehash_entries`)."""


def _private_tables_parent() -> int | None:
    """A descriptor of a new anonymous namespace whose children get their own TCP socket
    table of TCP_TABLE_SIZE buckets, with the calling thread moved into it; None, and the
    thread left where it was, where the kernel (before 6.1) or its owner refuses.

    Why: a namespace made from the host's shares the host's table (262,144 buckets with
    24 GiB), which the kernel walks whole for every namespace whose sockets it lists
    (telemetry: 0.45 s of CPU for 1,000 namespaces, 0.05 s with their own tables)."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            write_sysctl("net/ipv4/tcp_child_ehash_entries", str(TCP_TABLE_SIZE))
        except OSError:
            _check(_libc.setns(original, CLONE_NEWNET), "setns(back)")
            return None
        return os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    finally:
        os.close(original)


def create_namespaces(
    names: Sequence[str], setup: Callable[[str], T], created: list[str]
) -> list[T]:
    """Create a namespace bound at /run/netns/<name> for each name, calling `setup(name)`
    while inside it (sysctls, sockets that belong to it); returns the results in the order
    of `names`. Each name is appended to `created` as soon as it exists, so the caller can
    remove the ones made before a failure; once an interruption has gone up, no namespace
    is made that is not in `created`. Up to WORKERS threads make them, each every WORKERS-th
    name; one failing stops the others."""
    workers = max(1, min(WORKERS, len(names)))
    # Each thread holds its gate while it makes a namespace; the interrupted caller (or a
    # failing thread) holds them all while it sets `stop`: after that no thread makes
    # anything more, whether it had started yet or not.
    gates = [threading.Lock() for _ in range(workers)]
    stop = False

    def stop_all() -> None:
        nonlocal stop
        for gate in gates:
            gate.acquire()
        stop = True
        for gate in gates:
            gate.release()

    def work(k: int) -> list[T]:
        out: list[T] = []
        parent = None
        template = None  # this thread's first mount point's file (`_mount_point`)
        try:
            parent = _private_tables_parent()
            for name in names[k::workers]:
                path = f"{NETNS_DIR}/{name}"
                with gates[k]:
                    if stop:
                        break
                    if parent is not None:
                        _check(_libc.setns(parent, CLONE_NEWNET), "setns(parent)")
                    try:
                        template = _mount_point(path, template)
                    except FileExistsError:
                        raise NetworkError(f"network namespace {name} exists already") from None
                    created.append(name)
                    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
                    _check(
                        _libc.mount(
                            b"/proc/thread-self/ns/net", path.encode(), b"none", _MS_BIND, None
                        ),
                        f"bind mount of {path}",
                    )
                out.append(setup(name))
        except BaseException:
            stop_all()
            raise
        finally:
            for fd in (parent, template):
                if fd is not None:
                    os.close(fd)
        return out

    parts = _in_threads([functools.partial(work, k) for k in range(workers)], stop_all)
    results: list[T] = [None] * len(names)  # type: ignore[list-item]
    for k, part in enumerate(parts):
        results[k::workers] = part
    return results


def _mount_point(path: str, template: int | None) -> int:
    """Create the empty file `path` that a namespace is bound on: a hard link of `template`
    (a descriptor of an earlier one's file, opened before its mount) where the kernel
    allows it, else a new file; returns the descriptor to link the next one from.

    A new name instead of a new inode: on an ext4 without a journal each new inode is
    looked for past every inode deleted in the last minutes, and a run's 1,000 namespace
    files, made after the last run's were deleted, spent a fifth of the build there."""
    if template is not None:
        if _libc.linkat(template, b"", _AT_FDCWD, path.encode(), _AT_EMPTY_PATH) == 0:
            return template
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), path)
    # New files from here on: the link is not allowed here (it needs CAP_DAC_READ_SEARCH).
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    if template is not None:
        os.close(template)  # only now: on a failure above the caller still holds it
    return fd


def run_in_netns(path: str, fn: Callable[[], T]) -> T:
    """Call `fn` from a thread inside the namespace bound at `path`."""

    def work() -> T:
        fd = os.open(path, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns({path})")
        finally:
            os.close(fd)
        return fn()

    return _in_threads([work])[0]


def netlink_socket() -> socket.socket:
    """A NETLINK_ROUTE socket of the calling thread's current namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)


def write_sysctl(name: str, value: str) -> None:
    """Write a sysctl of the calling thread's namespace, e.g. `net/ipv6/conf/all/...`."""
    with open(f"/proc/sys/{name}", "w") as f:
        f.write(value)


def read_sysctl(name: str) -> str | None:
    """Read a sysctl of the calling thread's namespace; None if it does not exist."""
    try:
        with open(f"/proc/sys/{name}") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def remove_namespace(name: str) -> bool:
    """Unbind /run/netns/<name>; the kernel frees the namespace, and the interfaces in it,
    once no process is left inside. True if it existed."""
    path = f"{NETNS_DIR}/{name}"
    if _libc.umount2(path.encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def netns_inode(name: str) -> int | None:
    """The inode identifying the namespace bound at /run/netns/<name>, if it is bound."""
    fd = open_bound(name)
    if fd is None:
        return None
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def open_bound(name: str) -> int | None:
    """A descriptor of the namespace bound at /run/netns/<name>, if it is bound: while it is
    open, the namespace (and so its inode number) lives on, even once unbound."""
    path = f"{NETNS_DIR}/{name}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    if os.fstat(fd).st_dev == os.stat(NETNS_DIR).st_dev:  # a plain file: not bound
        os.close(fd)
        return None
    return fd


def pids_in(inodes: Iterable[int]) -> list[int]:
    """Processes whose network namespace is one of `inodes`."""
    wanted = {f"net:[{ino}]" for ino in inodes}
    if not wanted:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") in wanted:
                pids.append(int(entry))
        except OSError:
            continue
    return pids
