"""Network namespaces through the kernel's own calls (unshare, setns, bind mounts).

Namespaces are made from a short-lived worker thread: `unshare(CLONE_NEWNET)` and `setns`
change only the calling thread, so the process's other threads, and the host's network
namespace, are never touched. Creating them this way costs tens of microseconds each, where
pyroute2's `netns.create` forks a child per namespace.
"""

from __future__ import annotations

import ctypes
import errno
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


def _in_thread(work: Callable[[], T], on_interrupt: Callable[[], None] | None = None) -> T:
    """Run `work` in a fresh thread that may change its own network namespace.

    If the caller is interrupted (Ctrl-C), even while the thread is being started,
    `on_interrupt` is called before the interruption goes up: it must leave the caller
    knowing everything the thread made or will make.
    """
    box: dict[str, object] = {}
    done = threading.Event()

    def main() -> None:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            box["result"] = work()
        except BaseException as e:
            box["error"] = e
        finally:
            # The thread ends right after this; a failed restore cannot leak anywhere.
            _libc.setns(original, CLONE_NEWNET)
            os.close(original)
            done.set()

    try:
        threading.Thread(target=main, name="netem-netns", daemon=True).start()
        done.wait()
    except BaseException:
        if on_interrupt is not None:
            on_interrupt()
        raise
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def create_namespaces(
    names: Sequence[str], setup: Callable[[str], T], created: list[str]
) -> list[T]:
    """Create a namespace bound at /run/netns/<name> for each name, calling `setup(name)`
    while inside it (sysctls, sockets that belong to it). Each name is appended to `created`
    as soon as it exists, so the caller can remove the ones made before a failure; once an
    interruption has gone up, no namespace is made that is not in `created`."""

    # Held while a namespace is made, and by the interrupted caller while it sets `stop`:
    # after that the thread makes nothing more, whether it had started yet or not.
    gate = threading.Lock()
    stop = False

    def interrupted() -> None:
        nonlocal stop
        with gate:
            stop = True

    def work() -> list[T]:
        out: list[T] = []
        for name in names:
            path = f"{NETNS_DIR}/{name}"
            with gate:
                if stop:
                    break
                try:
                    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
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
        return out

    return _in_thread(work, interrupted)


def run_in_netns(path: str, fn: Callable[[], T]) -> T:
    """Call `fn` from a thread inside the namespace bound at `path`."""

    def work() -> T:
        fd = os.open(path, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns({path})")
        finally:
            os.close(fd)
        return fn()

    return _in_thread(work)


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
    path = f"{NETNS_DIR}/{name}"
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino if st.st_dev != os.stat(NETNS_DIR).st_dev else None


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
