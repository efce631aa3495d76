"""One instance's clock, which the supervisor can skew at any moment of the run.

`InstanceClock` owns what carries the skew to the instance: the clock file
`<run dir>/<instance id>/clock` (harness._clockfile: read by the SDK's `env.clock` and by
libfaketime; written once there is a skew or a program under libfaketime, no file is the
real time) and, once a non-Python program needs it (`environ`), libfaketime's shared
memory and semaphore in /dev/shm, which it removes in `close`.

Why the supervisor makes libfaketime's shared memory itself: libfaketime runs a drifting
clock (its `x` rate) from a start time, which each process takes at its own start unless
processes share one through FAKETIME_SHARED. Presetting that start time (the clock's
anchor) makes every process of the instance, children and restarts included, read the same
`Skew.at(t)` as the SDK. It also means no process creates its own segment, which
libfaketime 0.9.10 (Debian's) leaves in /dev/shm whenever a process is killed: that version
has no FAKETIME_DISABLE_SHM (0.9.11 added it; set, it would also drop the shared start).
This is how libfaketime's own `faketime` wrapper runs a program: it makes the pair itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import glob
import os
import re
import shutil
import struct
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from harness._clockfile import REAL, Skew
from harness._errors import EnvironmentProblem
from harness._runid import is_run_id

FILE_NAME = "clock"
SHM_DIR = Path("/dev/shm")  # where glibc's shm_open and sem_open keep their objects
SHM_PREFIX = "harness-ft-"  # + key: the shared memory; "sem." + the same: the semaphore
_LEASE = ".lock"  # SHM_PREFIX + run id + this: the run's `RunLease`
_OBJECT = re.compile(rf"(?:sem\.)?{SHM_PREFIX}(?P<run>[A-Za-z0-9._-]+?)(?:-[0-9]+|\.lock)")
"""A run's object or its lease (left alone: the objects already gone, its holder killed)."""
LIBRARY = "libfaketimeMT.so.1"  # the thread-safe build
_KEY = re.compile(r"[A-Za-z0-9._-]{1,200}")
# libfaketime's struct ft_shared_s (0.9.10 and later, 64-bit): ticks, file_idx, then the
# start time of CLOCK_REALTIME, _MONOTONIC, _MONOTONIC_RAW and _BOOTTIME as (sec, nsec).
_SHARED = struct.Struct("=QQ8q")
_SHARED_SIZE = 4096  # a page: room should a later version grow the struct
# libfaketime holds the semaphore only while a process reads the preset start time. A
# process killed in between would leave a binary semaphore taken and the instance's next
# process hanging at start; with this many permits, that takes a billion such kills.
_PERMITS = 1 << 30


def find_libfaketime() -> Path:
    """libfaketime's preload library (Debian: /usr/lib/<multiarch>/faketime/); an
    EnvironmentProblem naming the package when it is not installed."""
    places = [Path("/usr/lib", arch, "faketime") for arch in
              [sysconfig.get_config_var("MULTIARCH")] if arch]  # fmt: skip
    places += [Path(p) for p in ("/usr/lib64/faketime", "/usr/lib/faketime",
                                 "/usr/local/lib/faketime")]  # fmt: skip
    for place in places:
        if (place / LIBRARY).is_file():
            return place / LIBRARY
    raise EnvironmentProblem(
        f"libfaketime is not installed: no {LIBRARY} in {', '.join(map(str, places))} "
        f"(Debian: apt-get install libfaketime faketime); a clock fault cannot reach a "
        f"non-Python program without it")


_PT_INTERP = 3  # the program header that names the dynamic linker


@functools.lru_cache(maxsize=64)
def preload_blind(program: str) -> str | None:
    """Why `program` (argv[0], a path or a name on PATH) cannot take libfaketime through
    LD_PRELOAD, or None as far as its file tells: an ELF executable without an interpreter
    (the dynamic linker) is statically linked, and nothing preloads a library into it."""
    path = program if "/" in program else shutil.which(program)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2):
                return None  # not ELF (a script: its interpreter is what runs)
            end = "<" if head[5] == 1 else ">"
            if head[4] == 2:  # 64-bit
                phoff, = struct.unpack_from(end + "Q", head, 0x20)
                phentsize, phnum = struct.unpack_from(end + "HH", head, 0x36)
            else:
                phoff, = struct.unpack_from(end + "I", head, 0x1C)
                phentsize, phnum = struct.unpack_from(end + "HH", head, 0x2A)
            if phentsize < 4 or phnum == 0:
                return None
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return None
    types = [struct.unpack_from(end + "I", table, i)[0]
             for i in range(0, len(table) - 3, phentsize)]
    if _PT_INTERP in types:
        return None
    return f"{path} is statically linked (no dynamic linker to preload libfaketime)"


class InstanceClock:
    """The clock of one instance: `set` skews it at any moment; the SDK sees a change within
    `harness.sdk.Clock`'s check interval (0.1 s), a program under `environ` within 1 s.

    `key` names the instance's objects in /dev/shm (`harness-ft-<key>`) and must be unique
    on the host while the run lives, e.g. f"{run_id}-{global_seq}".
    """

    def __init__(self, directory: Path, key: str) -> None:
        if not _KEY.fullmatch(key):
            raise ValueError(f"a clock key is 1 to 200 of A-Z a-z 0-9 . _ -, not {key!r}")
        self.path = directory / FILE_NAME
        self.key = key
        self._anchor = [time.clock_gettime_ns(c) for c in (
            time.CLOCK_REALTIME, time.CLOCK_MONOTONIC, time.CLOCK_MONOTONIC_RAW,
            time.CLOCK_BOOTTIME)]  # fmt: skip
        self._shared = False
        self._skew = REAL
        # No file means real time to both readers; it is written at the first `set`, or for
        # libfaketime (`environ`), which needs one: most runs skew nothing, and at 1,000
        # instances 1,000 files are not free.
        self._written = False

    @property
    def skew(self) -> Skew:
        """The skew in force."""
        return self._skew

    def set(self, offset: float, drift: float = 0.0, *, now: float | None = None) -> Skew:
        """From now on the instance's clock reads `t + offset + drift * (t - now)` at real
        time t: a jump to `offset` now, then `drift` seconds gained per second. `set(0, 0)`
        gives the real clock back. ValueError for a drift outside [-0.5, 0.5]."""
        skew = Skew(float(offset), float(drift), time.time() if now is None else now)
        self._skew = skew
        self._write()
        return skew

    def offset_at(self, t: float | None = None) -> float:
        """The clock's offset at real time `t` (default: now): pass it to `set` to change
        the drift without a jump."""
        return self._skew.offset_at(time.time() if t is None else t)

    def environ(self, base: Mapping[str, str], library: Path | None = None) -> dict[str, str]:
        """`base` (the instance's environment) for a program whose clock libfaketime skews:
        without any FAKETIME* variable of its own, plus LD_PRELOAD (libfaketime first),
        FAKETIME_TIMESTAMP_FILE (the clock file), FAKETIME_CACHE_DURATION=0 (read again at
        each new second), FAKETIME_DONT_FAKE_MONOTONIC=1 and FAKETIME_SHARED (the anchor).
        Must be in place when the program starts. EnvironmentProblem without libfaketime."""
        lib = library or find_libfaketime()
        if not self._written:
            self._write()
        self._share()
        env = {k: v for k, v in base.items() if not k.startswith("FAKETIME")}
        others = [p for p in re.split(r"[: ]", base.get("LD_PRELOAD", "")) if p and p != str(lib)]
        env.update(
            LD_PRELOAD=":".join([str(lib), *others]),
            FAKETIME_TIMESTAMP_FILE=str(self.path),
            FAKETIME_CACHE_DURATION="0",
            FAKETIME_DONT_FAKE_MONOTONIC="1",
            FAKETIME_SHARED=f"/{SHM_PREFIX}{self.key} /{SHM_PREFIX}{self.key}",
        )
        return env

    def close(self) -> None:
        """Remove the objects in /dev/shm (the clock file stays with the run's outputs)."""
        if self._shared:
            for name in (f"{SHM_PREFIX}{self.key}", f"sem.{SHM_PREFIX}{self.key}"):
                with contextlib.suppress(FileNotFoundError):
                    (SHM_DIR / name).unlink()
            self._shared = False

    def __enter__(self) -> InstanceClock:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _write(self) -> None:
        tmp = self.path.with_name(f".{FILE_NAME}.tmp")
        tmp.write_text(self._skew.render(self._anchor[0] / 1e9))
        os.replace(tmp, self.path)  # readers see the old file or the new, never half
        self._written = True

    def _share(self) -> None:
        if self._shared:
            return
        name = f"{SHM_PREFIX}{self.key}"
        stamps = [v for ns in self._anchor for v in divmod(ns, 1_000_000_000)]
        data = _SHARED.pack(0, 0, *stamps).ljust(_SHARED_SIZE, b"\0")
        fd = os.open(SHM_DIR / name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._shared = True  # from here on, close() removes what exists
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        _sem_create(f"/{name}")


class RunLease:
    """Tells every other process that a run's objects in /dev/shm are in use: a lock on
    `harness-ft-<run id>.lock` there, held from before the run makes its first object until
    `close` (a killed supervisor's is let go by the kernel). `remove_stale_shared` removes
    the objects of runs whose lock nobody holds."""

    def __init__(self, run_id: str) -> None:
        self.path = _lease_path(run_id)
        self._fd: int | None = None

    def hold(self) -> None:
        """Take the lock (nothing if held already); before the run's first object."""
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, self.path):
                self._fd = fd
            else:  # a sweep took the file for a dead run's (made, not yet locked) and removed it
                os.close(fd)

    def close(self) -> None:
        """Let it go and remove its file; after the run's objects are removed."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def remove_stale_shared() -> list[str]:
    """Remove the /dev/shm objects of every run whose lease nobody holds (`RunLease`): a
    supervisor killed before its clean-up, whose record (and so `remove_shared` by its run
    id) may be gone with its outputs; and such a lease itself once its objects went by the
    record. Objects without a lease file are left alone: a harness from before leases made
    them, and its live runs must keep theirs. Returns the names removed."""
    runs = set()
    with contextlib.suppress(OSError):
        for name in os.listdir(SHM_DIR):
            found = _OBJECT.fullmatch(name)
            if found and is_run_id(found["run"]):
                runs.add(found["run"])
    removed = []
    for run_id in sorted(runs):
        lease = _lease_path(run_id)
        fd = _let_go(lease)
        if fd is None:
            continue
        try:  # under the lock: a run that opened the file meanwhile waits, then sees it gone
            with contextlib.suppress(OSError):
                removed += remove_shared(run_id)
                lease.unlink()
                removed.append(lease.name)
        finally:
            os.close(fd)
    return removed


def _let_go(lease: Path) -> int | None:
    """`lease` opened and locked, if it is there and no live process held it; else None."""
    try:
        fd = os.open(lease, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None  # none: not a run of ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not _same_file(fd, lease):  # removed meanwhile by another sweep
        os.close(fd)
        return None
    return fd


def _lease_path(run_id: str) -> Path:
    return SHM_DIR / f"{SHM_PREFIX}{run_id}{_LEASE}"


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        return os.path.samestat(os.fstat(fd), path.stat())
    except FileNotFoundError:
        return False


def remove_shared(run_id: str) -> list[str]:
    """Remove the /dev/shm objects of the run's clocks (keys `<run_id>-<seq>`: what a
    supervisor killed before `close` left behind); the names removed. Nothing for what is
    not a run id: a damaged run record must not name other runs' clocks."""
    if not is_run_id(run_id):
        return []
    removed = []
    for name in (f"{SHM_PREFIX}{run_id}-", f"sem.{SHM_PREFIX}{run_id}-"):
        for path in SHM_DIR.glob(f"{glob.escape(name)}*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    return sorted(removed)


def _sem_create(name: str) -> None:
    """A named POSIX semaphore (glibc: /dev/shm/sem.<name>) with `_PERMITS` permits."""
    lib = ctypes.CDLL(None, use_errno=True)
    if not hasattr(lib, "sem_open"):  # glibc before 2.34 keeps it in libpthread
        lib = ctypes.CDLL("libpthread.so.0", use_errno=True)
    sem_open = lib.sem_open
    sem_open.restype = ctypes.c_void_p
    flags = os.O_CREAT | os.O_EXCL
    sem = sem_open(name.encode(), ctypes.c_int(flags), ctypes.c_uint(0o600),
                   ctypes.c_uint(_PERMITS))
    if sem is None or sem == ctypes.c_void_p(-1).value:  # SEM_FAILED
        err = ctypes.get_errno()
        raise EnvironmentProblem(f"cannot create the semaphore {name} for libfaketime: "
                                 f"{os.strerror(err)}")
    lib.sem_close(ctypes.c_void_p(sem))
