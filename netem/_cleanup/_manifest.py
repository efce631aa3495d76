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

    def owner_alive(self) -> bool:
        return process_start(self.pid) == self.pid_start


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


def _read(path: str) -> Manifest | None:
    """The manifest at `path`; None if it cannot be read as one."""
    try:
        with open(path) as f:
            return Manifest(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def holder(prefix: str) -> Manifest | None:
    """The manifest of the live network that holds `prefix`, or None if none does (no
    manifest, an unreadable one, or one whose owner is dead: leftovers)."""
    manifest = _read(names.manifest_path(prefix))
    return manifest if manifest is not None and manifest.owner_alive() else None


def write(prefix: str, subnet: str) -> Manifest:
    pid = os.getpid()
    manifest = Manifest(
        prefix=prefix,
        pid=pid,
        pid_start=process_start(pid) or "",
        created=time.time(),
        subnet=subnet,
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
