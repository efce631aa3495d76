"""The outputs root: checked before a run starts, and a failed write into it as one line."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from harness._errors import (
    EnvironmentProblem,
    HarnessError,
    UsageError,
    os_error_in,
    undecodable,
)

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(error: BaseException) -> bool:
    """True for an OSError saying the file system (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in _DISK_FULL


def disk_full_in(error: BaseException) -> OSError | None:
    """The first full-disk OSError in `error` or, for an exception group, in any of its
    leaves (a full disk fails every writer at once, so it rarely comes alone)."""
    return os_error_in(error, _DISK_FULL)


def outputs_error(error: OSError, where: Path) -> HarnessError:
    """The one-line error for `error`, met writing a run's outputs under `where`: a full disk
    is the machine's problem (exit 3), any other refusal a bad outputs path (exit 2)."""
    reason = error.strerror or str(error)
    if is_disk_full(error):
        return EnvironmentProblem(f"cannot write the run's outputs in {where}: {reason}")
    return UsageError(f"outputs {where} cannot hold a run: {reason}")


def check_outputs(outputs: Path) -> None:
    """Create the outputs root if need be and prove a file can be written in it: a path
    that is a file, under /proc, immutable, read-only or full is refused before the run."""
    if outputs.exists() and not outputs.is_dir():
        raise UsageError(f"outputs {outputs} cannot hold a run: it is not a directory")
    if outputs.is_symlink() and not outputs.exists():  # mkdir would say "File exists"
        raise UsageError(f"outputs {outputs} cannot hold a run: it is a symbolic link to "
                         f"{os.readlink(outputs)}, which does not exist")
    # a run's record names its directory in JSON (the working directory's name counts)
    if (shown := undecodable(str(outputs.resolve()))) is not None:
        raise UsageError(f"outputs {shown}: the path is not UTF-8 text")
    try:
        outputs.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=outputs, prefix=".harness-probe-")
        try:
            os.write(fd, b"x")  # a full file system refuses the first block, not the name
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as e:
        raise outputs_error(e, outputs) from None
