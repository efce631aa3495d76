"""The open-file limit a run needs: raised where this process may, said where it may not."""

from __future__ import annotations

import errno
import resource

from harness._errors import EnvironmentProblem, os_error_in

OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})
"""What opening a file fails with when no file descriptor is left (the process's, the
machine's)."""


def need(instances: int) -> int:
    """Open files a run of `instances` may need in the supervisor: about one per instance
    (its sync connection; 119 in all at 100 instances), twice that to spare, and its own."""
    return 256 + 2 * instances


def raise_limit(instances: int) -> None:
    """Raise this process's soft open-file limit to `need(instances)` (never past the hard
    limit, never down): a desktop's default soft limit, 1024, is short of a 1,000-instance
    run. The instances inherit it."""
    raise_to(need(instances))


def raise_to(want: int) -> None:
    """Raise this process's soft open-file limit to `want` (never past the hard limit,
    never down)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def out_of_files(error: BaseException, instances: int) -> EnvironmentProblem | None:
    """The one-line error for a run that ran out of file descriptors somewhere in `error`."""
    found = os_error_in(error, OUT_OF_FILES)
    if found is None:
        return None
    if found.errno == errno.ENFILE:
        return EnvironmentProblem("the machine's open-file table is full (ENFILE): "
                                  "raise fs.file-max, or run fewer instances")
    return too_few_files(f"a run of {instances} instances", need(instances),
                         " or run fewer instances")


def too_few_files(what: str, needed: int, otherwise: str = "") -> EnvironmentProblem:
    """The one-line error for `what`, which needs about `needed` open files, having run out
    of them (EMFILE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard_text = "unlimited" if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return EnvironmentProblem(
            f"too many open files: this process had all the {soft} it may open in use, "
            f"far more than {what} needs (about {needed}): something opened files or "
            "connections without end (a flood of connections to the sync service?)")
    return EnvironmentProblem(
        f"too many open files: this process may open {soft} (ulimit -n; hard limit "
        f"{hard_text}), {what} needs about {needed}: raise it (ulimit -n {needed}){otherwise}")
