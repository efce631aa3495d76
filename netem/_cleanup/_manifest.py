"""The manifest of a live network: /run/netem/<prefix>.json, naming its owner process.

Written before the first namespace is created and removed after the last one is gone, so
every namespace a network made can be traced to a manifest, and a manifest whose owner is
dead marks leftovers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator

from netem import _names as names


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    prefix: str
    pid: int
    pid_start: str  # the owner's start time (field 22 of /proc/<pid>/stat): pids get reused
    created: float
    subnet: str
    pid_ns: int | None = None  # the owner's PID namespace; None: written before it was kept

    def owner_alive(self) -> bool | None:
        """Whether the owner still runs; None if this process cannot tell (`owner_alive`)."""
        return owner_alive(self.pid, self.pid_start, self.pid_ns)


def proc_problem() -> str | None:
    """Why /proc cannot tell this process's PID namespace's processes, or None. Under
    `unshare --pid` without `--mount-proc` it shows another namespace's: the pid an owner
    records (pid 1, there) names another process in /proc (the host's init, never dead: its
    leftovers were never removed), and a pid read there signals another process here."""
    try:
        seen = int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return None  # no /proc at all: nothing is judged by it
    if seen == os.getpid():
        return None
    return (f"/proc is another PID namespace's (it numbers this process {seen}, not "
            f"{os.getpid()}): mount one for this namespace (unshare --pid --fork --mount-proc)")


def pid_namespace() -> int | None:
    """The inode of this process's PID namespace, or None if /proc does not say: the pids
    an owner records are of that namespace, not of every reader's."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def owner_alive(pid: int, start: str, pid_ns: int | None) -> bool | None:
    """Whether process `pid`, started at `start` (clock ticks since boot), still runs; None
    if it ran in another PID namespace than this process (a container, `unshare --pid`):
    its pid names another process here, or none, so it is left alone, never taken for dead.
    A record without a namespace (`pid_ns` None: older versions) is judged as one of ours."""
    if pid_ns is not None and pid_ns != pid_namespace():
        return None
    return process_start(pid) == start


def process_start(pid: int) -> str | None:
    """Start time of process `pid` in clock ticks since boot, or None if it does not exist
    or has died: a zombie (SIGKILLed, its parent not yet waiting for it) owns nothing more,
    and `harness clean` right after a `kill -9` took it for a live owner."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


_FIELDS = frozenset(f.name for f in dataclasses.fields(Manifest))


def _read(path: str) -> Manifest | None:
    """The manifest at `path`; None if it cannot be read as one. Keys it does not know are
    skipped: a newer version's manifest is still its owner's (taken for unreadable, it went
    as a dead one's, namespaces and all)."""
    try:
        with open(path) as f:
            data = json.load(f)
        manifest = Manifest(**{k: v for k, v in data.items() if k in _FIELDS})
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    # A damaged namespace would read as another one's: a network nothing ever removes.
    ns = manifest.pid_ns
    return manifest if ns is None or (isinstance(ns, int) and not isinstance(ns, bool)) else None


def holder(prefix: str) -> Manifest | None:
    """The manifest of the live network that holds `prefix`, or None if none does (no
    manifest, an unreadable one, or one whose owner is dead: leftovers). An owner in another
    PID namespace holds it: it cannot be told dead."""
    manifest = _read(names.manifest_path(prefix))
    return manifest if manifest is not None and manifest.owner_alive() is not False else None


def write(prefix: str, subnet: str) -> Manifest:
    pid = os.getpid()
    manifest = Manifest(
        prefix=prefix,
        pid=pid,
        pid_start=process_start(pid) or "",
        created=time.time(),
        subnet=subnet,
        pid_ns=pid_namespace(),
    )
    path = names.manifest_path(prefix)
    tmp = f"{path}.{pid}.tmp"
    for attempt in range(5):
        os.makedirs(names.MANIFEST_DIR, exist_ok=True)
        try:
            with open(tmp, "w") as f:
                json.dump(dataclasses.asdict(manifest), f)
            os.replace(tmp, path)
            return manifest
        except FileNotFoundError:
            # Another network removed the empty directory in between: make it again.
            if attempt == 4:
                raise
        except BaseException:  # interrupted: no temporary file left behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    raise AssertionError("unreachable")


def remove(prefix: str) -> bool:
    """Remove the manifest, and the directory once it is empty."""
    try:
        os.unlink(names.manifest_path(prefix))
    except FileNotFoundError:
        return False
    with contextlib.suppress(OSError):  # not empty: other networks live
        os.rmdir(names.MANIFEST_DIR)
    return True


def read_all() -> Iterator[Manifest | str]:
    """Every manifest; a prefix instead where its file cannot be read (treated as dead)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.listdir(names.MANIFEST_DIR)):
            if not entry.endswith(".json"):
                continue
            manifest = _read(os.path.join(names.MANIFEST_DIR, entry))
            yield manifest if manifest is not None else entry.removesuffix(".json")
