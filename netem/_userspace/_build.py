"""Compiling the C engine on first use, into a cache directory keyed by the source's hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

CACHE_ENV = "NETEM_USERSPACE_CACHE"
"""Environment variable naming the directory built engines are kept in."""

_LIBS = ("-lnetfilter_queue", "-lm")
_CFLAGS = ("-O2", "-std=gnu11", "-Wall")


_BUILD = ".build-"
"""The prefix of a build's own directory in the cache, followed by its builder's pid."""
STALE_BUILD_S = 600.0
"""How old a build directory whose builder is gone must be before a build removes it (a
build takes seconds; the age spares one of a process in another PID namespace)."""


class BuildError(RuntimeError):
    """The C engine could not be built; the message says what is missing."""


def engine_source() -> bytes:
    """The C source shipped in this package."""
    return resources.files("netem._userspace").joinpath("engine.c").read_bytes()


def cache_dir() -> Path:
    """Where built engines live: $NETEM_USERSPACE_CACHE, else $XDG_CACHE_HOME/netem-userspace."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netem-userspace"


def _compiler() -> str:
    cc = os.environ.get("CC", "cc")
    found = shutil.which(cc)
    if not found:
        raise BuildError(
            f"no C compiler ({cc!r}) found to build the userspace engine: install gcc "
            "(apt install gcc libnetfilter-queue-dev) or use the Python engine "
            "(pip install NetfilterQueue)"
        )
    return found


def build_engine(directory: Path | None = None) -> Path:
    """Return the path of the compiled engine, building it if this source is not cached
    (an engine built elsewhere and put in the cache needs no compiler here: a pod's image)."""
    source = engine_source()
    key = hashlib.sha256(source + " ".join((*_CFLAGS, *_LIBS)).encode()).hexdigest()[:16]
    target = (directory or cache_dir()) / f"netem-engine-{key}"
    if os.access(target, os.X_OK):
        return target
    cc = _compiler()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(
            f"cannot create the engine cache {target.parent} ({exc.strerror}); "
            f"point {CACHE_ENV} at a writable directory"
        ) from None
    _remove_killed_builds(target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f"{_BUILD}{os.getpid()}-") as tmp:
        src = Path(tmp) / "engine.c"
        src.write_bytes(source)
        out = Path(tmp) / "engine"
        proc = subprocess.run(
            [cc, *_CFLAGS, "-o", str(out), str(src), *_LIBS],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or [
                proc.stderr.strip() or f"exit code {proc.returncode}"
            ]
            hint = ""
            if "libnetfilter_queue" in proc.stderr:
                hint = " (install libnetfilter-queue-dev)"
            raise BuildError(f"building the userspace engine failed{hint}: {lines[0].strip()}")
        # atomic: engines being built at the same moment by others never see a partial file
        os.replace(out, target)
    return target


def _remove_killed_builds(cache: Path) -> None:
    """Remove the build directories that builders killed mid-build left in `cache`: those
    whose pid no process has (or that name none) and older than `STALE_BUILD_S`."""
    now = time.time()
    for path in cache.glob(f"{_BUILD}*"):
        pid = path.name[len(_BUILD):].split("-", 1)[0]
        try:
            if now - path.stat().st_mtime < STALE_BUILD_S:
                continue
        except OSError:
            continue  # gone meanwhile
        if not (pid.isdigit() and _alive(int(pid))):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    # (Not netem._cleanup's process_start: this module is imported where pyroute2 is not.)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's, or no pid at all: not known to be gone
    return True
