"""Telling a live run from one whose supervisor is gone (docs/contracts.md, 7).

While it runs, the supervisor's run.json says who it is, `"supervisor": {"pid",
"start_ticks", "boot_id", "host"}` (the start time in clock ticks since boot, field 22 of
/proc/PID/stat, so a reused pid is not taken for the supervisor), refreshes `"last_seen"`
every few seconds and names the directory of its Unix sockets (`"sock_dir"`). A SIGKILL
leaves run.json at "running": `mark_aborted` turns such a run into "aborted", ended when it
was last seen, and removes the sockets it left. `harness clean`, the start of every run
and the commands that read runs (`show`, `runs`) call it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness._errors import UsageError
from harness._rundir import write_json
from harness.observe import list_run_dirs, load_run
from netem._cleanup_manifest import process_start

LAST_SEEN_EVERY_S = 5.0
"""How often a live supervisor refreshes run.json's `last_seen`."""

SOCKETS = ("sync.sock", "relay.sock")
"""The Unix sockets a run makes in its `sock_dir`."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def identity() -> dict[str, Any]:
    """This process as run.json's `supervisor` records it."""
    pid = os.getpid()
    return {"pid": pid, "start_ticks": int(process_start(pid) or 0), "boot_id": _boot_id(),
            "host": socket.gethostname()}


def supervisor_alive(who: Mapping[str, Any]) -> bool | None:
    """Whether the process `who` (an `identity()`) still runs; None if `who` cannot tell
    (a run.json written before supervisors recorded themselves)."""
    pid, ticks = who.get("pid"), who.get("start_ticks")
    if not isinstance(pid, int) or not isinstance(ticks, int) or isinstance(pid, bool):
        return None
    if who.get("host") != socket.gethostname():
        return None  # outputs shared with another machine: its processes are not ours to see
    if who.get("boot_id") and who["boot_id"] != _boot_id():
        return False  # the machine rebooted since
    start = process_start(pid)
    return start is not None and int(start) == ticks


def is_orphaned(run: Mapping[str, Any]) -> bool:
    """True if run.json says "running" but its supervisor is gone."""
    who = run.get("supervisor")
    return (
        run.get("outcome") == "running"
        and isinstance(who, Mapping)
        and supervisor_alive(who) is False
    )


def mark_aborted(run_dir: Path, found_by: str) -> bool:
    """If `run_dir`'s supervisor died without recording the run's end, record it as
    "aborted" (ended when last seen) and remove its sockets. True if it did."""
    try:
        if not is_orphaned(load_run(run_dir)):
            return False
        # Read again now that it is known dead: a supervisor that recorded its end and
        # exited between the first read and the check is seen with its end.
        run = load_run(run_dir)
    except UsageError:
        return False  # not readable: not ours to rewrite
    if run.get("outcome") != "running":
        return False
    last_seen = run.get("last_seen")
    if not isinstance(last_seen, int | float):
        last_seen = run.get("started") if isinstance(run.get("started"), int | float) else None
    run["outcome"] = "aborted"
    run["ended"] = last_seen
    run["exit_code"] = None
    run["reason"] = _reason(run, last_seen)
    run["aborted"] = {"found": time.time(), "found_by": found_by}
    for inst in run.get("instances") or []:
        if isinstance(inst, dict) and inst.get("ended") is None:
            inst["outcome"] = "failed"
            inst["reason"] = "aborted with the supervisor"
    write_json(run_dir / "run.json", run)
    remove_sockets(run_dir, run.get("sock_dir"))
    return True


def _reason(run: Mapping[str, Any], last_seen: float | None) -> str:
    who = run.get("supervisor") or {}
    text = f"the supervisor (pid {who.get('pid')}) ended without recording the run's end"
    if last_seen is None:
        return text
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last_seen))
    started = run.get("started")
    into = f", {last_seen - started:.1f} s into the run" if isinstance(started, int | float) else ""
    return f"{text}; last seen {when}{into}"


def remove_sockets(run_dir: Path, sock_dir: Any) -> list[Path]:
    """Remove the run's Unix sockets (only sockets, only by their names), and their
    directory if it is a temporary one that is left empty."""
    where = Path(sock_dir) if isinstance(sock_dir, str) and sock_dir else run_dir
    removed = []
    for name in SOCKETS:
        path = where / name
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
                removed.append(path)
    if where.resolve() != run_dir.resolve():
        with contextlib.suppress(OSError):
            where.rmdir()  # only if empty
    return removed


def mark_aborted_runs(outputs: Path, found_by: str) -> list[Path]:
    """`mark_aborted` for every run under `outputs`; returns the runs it marked."""
    return [d for d in list_run_dirs(outputs) if mark_aborted(d, found_by)]
