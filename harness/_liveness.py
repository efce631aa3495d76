"""Telling a live run from one whose supervisor is gone (docs/contracts.md, 7).

While it runs, the supervisor's run.json says who it is, `"supervisor": {"pid",
"start_ticks", "boot_id", "host", "pid_ns"}` (the start time in clock ticks since boot, field
22 of /proc/PID/stat, so a reused pid is not taken for the supervisor; the PID namespace the
pid is of: a supervisor of another one than the reader's cannot be judged, and its run is
left alone, as one on another host sharing the outputs), refreshes `"last_seen"`
every few seconds and names the directory of its Unix sockets (`"sock_dir"`). A SIGKILL
leaves run.json at "running": `mark_aborted` turns such a run into "aborted", ended when it
was last seen, and removes the sockets and the control token it left. `harness clean`, the
start of every run and the commands that read runs (`show`, `runs`, `report`, `fault`,
`events --follow` and `logs --follow`: `run_over`) call it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import stat
import tempfile
import time
from pathlib import Path

from harness._cgroup import CgroupError, remove_run
from harness._clock import remove_shared
from harness._control import remove_token
from harness._errors import EnvironmentProblem, UsageError
from harness._tell import tell
from harness.observe import list_run_dirs, load_run
from harness.observe._jsonl import ignore_unreadable, number, parse_line, read_jsonl, read_tail
from harness.observe._runrecord import (
    RESERVE_FILE,
    RUN_FILE,
    RecordError,
    RunRecord,
    SupervisorRecord,
    read_run,
    write_run,
)
from harness.runners._registry import CLUSTER_K8S, cluster_clean_command
from harness.sync._protocol import FAILING_EVENTS
from netem._cleanup._manifest import owner_alive, pid_namespace, proc_problem, process_start

LAST_SEEN_EVERY_S = 5.0
"""How often a live supervisor refreshes run.json's `last_seen`."""

SOCKETS = ("sync.sock", "relay.sock")
"""The Unix sockets a run makes in its `sock_dir`."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def identity() -> SupervisorRecord:
    """This process as run.json's `supervisor` records it."""
    pid = os.getpid()
    return SupervisorRecord(pid, int(process_start(pid) or 0), _boot_id(), socket.gethostname(),
                            pid_namespace())


def check_proc() -> None:
    """EnvironmentProblem, in one line, if /proc is another PID namespace's: this process
    could neither record itself as a run's owner nor judge other runs' owners."""
    if (problem := proc_problem()) is not None:
        raise EnvironmentProblem(problem)


def supervisor_alive(who: SupervisorRecord) -> bool | None:
    """Whether the process `who` still runs; None if this process cannot tell (it ran on
    another host sharing the outputs, or in another PID namespace)."""
    if who.host != socket.gethostname():
        return None  # outputs shared with another machine: its processes are not ours to see
    if who.boot_id and who.boot_id != _boot_id():
        return False  # the machine rebooted since
    return owner_alive(who.pid, str(who.start_ticks), who.pid_ns)


def cannot_tell(run: RunRecord) -> str | None:
    """Why the run, which goes on by its record, is left alone without knowing whether its
    supervisor lives; None if it is not such a run."""
    who = run.supervisor
    if not run.goes_on or who is None or supervisor_alive(who) is not None:
        return None
    if who.host != socket.gethostname():
        return f"running on host {who.host or '(unnamed)'} (cannot tell from here)"
    return (f"running in another PID namespace (cannot tell from here: its supervisor's "
            f"pid {who.pid} is of that namespace)")


def is_orphaned(run: RunRecord) -> bool:
    """True if run.json says the run goes on but its supervisor is gone, or names none: a
    live supervisor records itself from its first write, so a record without one (written
    before supervisors did, or damaged) has no one to end it and would read "running", and
    be followed, for ever."""
    return run.goes_on and (run.supervisor is None or supervisor_alive(run.supervisor) is False)


def mark_aborted(run_dir: Path, found_by: str) -> bool:
    """If `run_dir`'s supervisor died without recording the run's end, remove what it
    left and record the run as "aborted" (ended when last seen). True if it did."""
    try:
        run = load_run(run_dir)
        if not is_orphaned(run):
            _remove_reserve_if_dead(run_dir, run)
            return False
        # Read again now that it is known dead: a supervisor that recorded its end and
        # exited between the first read and the check is seen with its end.
        run = load_run(run_dir)
    except UsageError:
        return False  # not readable: not ours to rewrite
    if not run.goes_on:
        return False
    passed, last_event = _read_events(run_dir)
    signs = (run.last_seen, run.started, last_event,
             *(_last_stamp(run_dir / name) for name in SIGNS_OF_LIFE))
    last_seen = max((t for t in signs if t is not None), default=None)
    instances = tuple(
        i if i.ended is not None
        else dataclasses.replace(i, outcome="passed", reason=None, exit_code=0,
                                 ended=passed[i.id]) if i.id in passed
        else dataclasses.replace(i, outcome="failed", reason="aborted with the supervisor")
        for i in run.instances
    )
    # What it left first, the record last: a clean killed in between (or failing to write)
    # leaves the run going on by its record, and the next one does it all again. Marked
    # first, what was left after it stayed for good.
    remove_sockets(run_dir, run.sock_dir)
    with contextlib.suppress(OSError):  # its instances' clocks in /dev/shm
        remove_shared(run.run_id)
    with contextlib.suppress(CgroupError, OSError):  # its instances' cgroups (as root)
        remove_run(run.run_id)
    remove_token(run_dir)
    # Its space for run.json's end: on a full disk, that is what lets this write in.
    with contextlib.suppress(OSError):  # a read-only run dir: kept
        (run_dir / RESERVE_FILE).unlink(missing_ok=True)
    write_run(run_dir, dataclasses.replace(
        run, outcome="aborted", ended=last_seen, exit_code=None,
        reason=_reason(run, last_seen), aborted={"found": time.time(), "found_by": found_by},
        instances=instances))  # fmt: skip
    return True


def _remove_reserve_if_dead(run_dir: Path, run: RunRecord) -> None:
    """The space kept for run.json's end (1 MiB) of a run that recorded its end and whose
    supervisor was killed before it let that space go."""
    reserve = run_dir / RESERVE_FILE
    if (not run.goes_on and run.supervisor is not None and reserve.exists()
            and supervisor_alive(run.supervisor) is False):
        with contextlib.suppress(OSError):
            reserve.unlink()


def _read_events(run_dir: Path) -> tuple[dict[str, float], float | None]:
    """From events.jsonl, in one pass: the instances it says passed (success, then a clean
    exit, and no failure), by id, with when they exited (a supervisor killed in the run's
    tear-down had not yet written their outcome, and they were marked failed with it); and
    when its last record was written, flushed every half second: a truer last sign of life
    than run.json's `last_seen`, refreshed every 5 s (a run killed 4 s in read "last seen
    0.1 s into the run")."""
    succeeded: set[str] = set()
    failed: set[str] = set()
    exited: dict[str, float] = {}
    last: float | None = None
    # unreadable: the run is marked aborted all the same, with no instance judged passed
    for e in read_jsonl(run_dir / "events.jsonl", unreadable=ignore_unreadable):
        ts = e.get("ts")
        if isinstance(ts, int | float):
            last = float(ts)
        inst = e.get("instance")
        if not isinstance(inst, str):
            continue
        if e.get("kind") == "event":
            if e.get("type") == "success":
                succeeded.add(inst)
            elif e.get("type") in FAILING_EVENTS:
                failed.add(inst)
        elif e.get("kind") == "instance" and e.get("status") == "exited":
            if e.get("exit_code") == 0 and isinstance(ts, int | float):
                exited[inst] = ts
            else:
                exited.pop(inst, None)
    passed = {i: t for i, t in exited.items() if i in succeeded and i not in failed}
    return passed, last


SIGNS_OF_LIFE = ("telemetry.jsonl", "faults.jsonl")
"""Files besides events.jsonl the supervisor writes to, line by line, while it lives: the
telemetry every second, the faults as they are played. A quiet run (instances waiting on
their network) writes no event for long: one killed 4.5 s in read "last seen 0.7 s into the
run", a fault it played at 3.7 s shown after its end."""


def _last_stamp(path: Path) -> float | None:
    """The `ts` of the last whole record of JSON-lines file `path`, from its tail only (the
    telemetry of a long run is large); None if it has none."""
    for line in reversed(read_tail(path, 64 << 10, ignore_unreadable).splitlines()):
        record = parse_line(line)
        ts = None if record is None else number(record.get("ts"))
        if ts is not None:
            return ts
    return None


def tell_if_aborted(run_dir: Path) -> None:
    """After following a run to its end: a line on stderr if it ended aborted (its
    supervisor gone), which the lines followed do not say."""
    with contextlib.suppress(UsageError, OSError):
        run = load_run(run_dir)
        if run.outcome == "aborted":
            tell(f"harness: run {run_dir.name} was aborted: {run.reason}")


RECORD_LOST_S = 30.0
"""How long a run directory may go without a readable run.json, nothing in it renamed or
created, before no supervisor is taken to be writing it: a live one rewrites run.json
every `LAST_SEEN_EVERY_S` (a rename, which changes the directory), and writes it first
within moments of making the directory (after the scan of older runs for dead ones)."""


def run_over(run_dir: Path, found_by: str) -> bool:
    """True once the run has ended: run.json records its end, or its supervisor is gone
    (the run is then marked aborted, by `found_by`). UsageError when the run has no
    readable record and nothing wrote one for `RECORD_LOST_S`: its end would never come."""
    try:
        run = read_run(run_dir)
    except RecordError as e:
        run, why = None, f"has no readable {RUN_FILE} ({e})"
    else:
        why = f"has no {RUN_FILE}"
    if run is not None:
        return run.is_over or mark_aborted(run_dir, found_by)
    stamps = []
    for path in (run_dir, run_dir / RUN_FILE):
        with contextlib.suppress(OSError):
            stamps.append(path.stat().st_mtime)
    quiet = time.time() - max(stamps, default=0.0)
    if quiet >= RECORD_LOST_S:
        raise UsageError(f"{run_dir} {why}, and no supervisor wrote one for "
                         f"{RECORD_LOST_S:g} s: it is no run going on, to follow")
    return False


def _reason(run: RunRecord, last_seen: float | None) -> str:
    if run.supervisor is None:
        text = "the run's record names no supervisor and no end (an older or damaged record)"
    else:
        text = f"the supervisor (pid {run.supervisor.pid}) ended without recording the run's end"
    if last_seen is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last_seen))
        into = f", {last_seen - run.started:.1f} s into the run" if run.started is not None else ""
        text += f"; last seen {when}{into}"
    if run.runner == CLUSTER_K8S:  # its objects outlive it on the cluster
        namespace = (run.network or {}).get("namespace")
        text += ("; its objects may be left on the cluster: "
                 + cluster_clean_command(run.run_id, namespace))
    return text


SOCK_DIR_PREFIX = "harness-"
"""The prefix of a temporary directory for a run's sockets (where its own path is too long
for AF_UNIX)."""


def remove_sockets(run_dir: Path, sock_dir: str | None) -> list[Path]:
    """Remove the run's Unix sockets (only sockets, only by their names), and their
    directory if it is a temporary one that is left empty."""
    where = Path(sock_dir) if sock_dir else run_dir
    removed = []
    for name in SOCKETS:
        path = where / name
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
                removed.append(path)
    # Only a directory the supervisor made: a damaged record may name any
    if where.name.startswith(SOCK_DIR_PREFIX) and where.parent == Path(tempfile.gettempdir()):
        with contextlib.suppress(OSError):
            where.rmdir()  # only if empty
    return removed


STALE_AFTER_S = 60.0
"""How long a socket must have been there without a listener before `remove_stale_sockets`
takes it for a dead run's (a live run binds, then listens, within moments)."""


def remove_stale_sockets(tmp: Path | None = None) -> list[Path]:
    """Remove the socket directories that killed runs left in the temporary directory,
    whatever outputs those runs wrote to: a `harness-*` directory of this user's that holds
    nothing but the run's sockets, none of them listened on, all older than `STALE_AFTER_S`.
    Returns the directories removed."""
    tmp = Path(tempfile.gettempdir()) if tmp is None else tmp
    removed = []
    with contextlib.suppress(OSError):
        for where in tmp.glob(f"{SOCK_DIR_PREFIX}*"):
            with contextlib.suppress(OSError):
                stale = _stale(where)
                for sock in stale:
                    sock.unlink()
                if stale:
                    where.rmdir()
                    removed.append(where)
    return removed


def _stale(where: Path) -> list[Path]:
    """The sockets in `where` if it is a dead run's socket directory, else nothing."""
    info = where.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return []
    entries = list(where.iterdir())
    if not entries or any(e.name not in SOCKETS for e in entries):
        return []  # not (or not yet) a run's socket directory
    now = time.time()
    for entry in entries:
        sock = entry.lstat()
        if not stat.S_ISSOCK(sock.st_mode) or now - sock.st_mtime < STALE_AFTER_S:
            return []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)  # a live listener's full backlog would hold the connect
            try:
                probe.connect(str(entry))
            except ConnectionRefusedError:
                continue  # nobody listens: the run that made it is gone
            except OSError:
                pass
            return []  # listened on, or not to be judged
    return entries


def mark_aborted_runs(outputs: Path, found_by: str) -> list[Path]:
    """`mark_aborted` for every run under `outputs`; returns the runs it marked."""
    return [d for d in list_run_dirs(outputs) if mark_aborted(d, found_by)]


def runs_left_alone(outputs: Path) -> list[tuple[RunRecord, str]]:
    """The runs under `outputs` that go on by their record and whose supervisor this
    process cannot judge (`cannot_tell`), each with why."""
    found = []
    for run_dir in list_run_dirs(outputs):
        with contextlib.suppress(UsageError):  # not readable: nothing to say of it
            run = load_run(run_dir)
            why = cannot_tell(run)
            if why is not None:
                found.append((run, why))
    return found
