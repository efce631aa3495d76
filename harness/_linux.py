"""The few Linux calls the standard library lacks on Python 3.11 (setns, parent-death signal)."""

from __future__ import annotations

import ctypes
import os
import signal

# The interpreter's own symbols include libc's. ctypes.util.find_library would run
# `ldconfig -p` in a child process at every import.
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def setns(path: str, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace at `path` (e.g. /run/netns/NAME)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns_fd(fd, nstype, what=path)
    finally:
        os.close(fd)


def setns_fd(fd: int, nstype: int = CLONE_NEWNET, *, what: str = "") -> None:
    """Move the calling thread into the namespace open at `fd`."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({what or fd}): {os.strerror(err)}")


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies."""
    if _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


def child_subreaper() -> None:
    """Orphaned descendants of this process get it as their parent (instead of init)."""
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")
