"""Run history: an embedded SQLite store of runs, their params, instances and outcomes."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from harness._errors import UsageError
from harness._runid import is_run_id
from harness.observe._jsonl import number
from harness.observe._rundir import DEFAULT_OUTPUTS, list_run_dirs
from harness.observe._runrecord import read_run
from harness.observe._summaryfile import read_warnings

HISTORY_FILE = "history.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, plan TEXT, "case" TEXT, runner TEXT,
    started REAL, ended REAL, duration_s REAL, outcome TEXT, exit_code INTEGER, reason TEXT,
    instances INTEGER, failed INTEGER, params TEXT, dir TEXT, report TEXT, warnings TEXT,
    origin TEXT
);
CREATE TABLE IF NOT EXISTS instances (
    run_id TEXT REFERENCES runs(run_id) ON DELETE CASCADE, id TEXT, "group" TEXT, role TEXT,
    ip TEXT, outcome TEXT, reason TEXT, exit_code INTEGER, started REAL, ended REAL,
    duration_s REAL, PRIMARY KEY (run_id, id)
);
CREATE TABLE IF NOT EXISTS params (
    run_id TEXT REFERENCES runs(run_id) ON DELETE CASCADE, name TEXT, value TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started);
"""
# Named, not `*`: a history a newer harness added columns to still reads and takes rows here.
_RUN_COLUMNS = ('run_id, plan, "case", runner, started, ended, duration_s, outcome, exit_code, '
                "reason, instances, failed, params, dir, report, warnings, origin")


@dataclasses.dataclass(frozen=True, slots=True)
class RunRow:
    """One run as the history holds it."""

    run_id: str
    plan: str | None
    case: str | None
    runner: str | None
    started: float | None
    ended: float | None
    duration_s: float | None
    outcome: str | None
    exit_code: int | None
    reason: str | None
    instances: int
    failed: int
    params: dict[str, Any]
    dir: str
    report: str | None
    warnings: list[str]
    """The report's warnings (summary.json's): conditions that weaken the run's figures."""
    origin: str | None = None
    """What started the run when not a person (run.json's `origin`: a search's list)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


@contextlib.contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(db, timeout=10)
    except sqlite3.Error as e:
        raise UsageError(f"cannot open run history {db}: {e}") from None
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.executescript(_SCHEMA)
        with conn:
            _migrate(conn)
            yield conn
    except sqlite3.DatabaseError as e:
        # the disk, not the history (errors the module raises itself carry no code)
        code = getattr(e, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(db)) from None
        if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
            # SQLite keeps the system's errno to itself: a quota, a file size limit, a
            # failing disk all read "disk I/O error"
            raise OSError(errno.EIO, f"{e} (a quota, a file size limit or the disk)", str(db)) from None
        raise UsageError(f"run history {db} is unusable: {e}") from None
    finally:
        conn.close()


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a history written by an older harness up to this schema: runs recorded
    before their warnings were kept get them from their run directories, once; runs
    recorded before their origin was have none."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    if "warnings" not in columns and _add_column(conn, "warnings"):
        rows = conn.execute("SELECT run_id, dir FROM runs").fetchall()
        conn.executemany(
            "UPDATE runs SET warnings = ? WHERE run_id = ?",
            [(orjson.dumps(read_warnings(Path(d))).decode(), run_id) for run_id, d in rows if d],
        )
    if "origin" not in columns:
        _add_column(conn, "origin")


def _add_column(conn: sqlite3.Connection, name: str) -> bool:
    """Add the text column `name` to `runs`; False when another process did meanwhile."""
    try:
        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} TEXT")
    except sqlite3.OperationalError as e:
        if "duplicate column" in str(e):
            return False
        raise
    return True


def record_run(run_dir: Path, db: Path | None = None) -> None:
    """Store (or update) the run of `run_dir` in the history, by default
    `<run_dir>/../history.sqlite`. Needs run.json."""
    run = read_run(run_dir)
    if run is None:
        raise UsageError(f"{run_dir} has no run.json; nothing to record")
    db = db or run_dir.parent / HISTORY_FILE
    insts = run.instances
    report = run_dir / "report.html"
    with _connect(db) as conn:
        # each table by itself: a run deleted by a program that left foreign keys off
        # (sqlite3's default) leaves its instances and params behind
        for table in ("params", "instances", "runs"):
            conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run.run_id,))
        conn.execute(
            f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run.run_id,
                run.plan,
                run.case,
                run.runner,
                run.started,
                run.ended,
                run.duration_s,
                run.outcome,
                run.exit_code,
                run.reason,
                len(insts),
                sum(1 for i in insts if i.outcome not in ("passed", None)),
                orjson.dumps(run.params).decode(),
                str(run_dir.resolve()),
                str(report.resolve()) if report.exists() else None,
                orjson.dumps(read_warnings(run_dir)).decode(),
                run.origin,
            ),
        )
        conn.executemany(
            "INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    run.run_id,
                    i.id,
                    i.group,
                    i.role,
                    i.ip,
                    i.outcome,
                    i.reason,
                    i.exit_code,
                    i.started,
                    i.ended,
                    i.duration_s,
                )
                for i in insts
            ],
        )
        conn.executemany(
            "INSERT INTO params VALUES (?,?,?)",
            [(run.run_id, str(k), orjson.dumps(v).decode()) for k, v in run.params.items()],
        )


def sync_history(
    outputs: Path = DEFAULT_OUTPUTS,
    db: Path | None = None,
    unreadable: Callable[[Path, str], None] | None = None,
) -> int:
    """Record every finished run under `outputs` that the history lacks (a supervisor that
    died before recording, runs copied in); returns how many were added. A run whose
    run.json cannot be read is left out, and told to `unreadable` (its directory, why)."""
    db = db or outputs / HISTORY_FILE
    with _connect(db) as conn:
        known = {row[0] for row in conn.execute("SELECT run_id FROM runs WHERE ended IS NOT NULL")}
    added = 0
    for run_dir in list_run_dirs(outputs):
        if run_dir.name in known:
            continue
        try:
            run = read_run(run_dir)
        except UsageError as e:
            if unreadable is not None:
                unreadable(run_dir, str(e))
            continue
        if run is not None and run.is_over:
            record_run(run_dir, db)
            added += 1
    return added


def list_runs(
    outputs: Path = DEFAULT_OUTPUTS,
    *,
    plan: str | None = None,
    outcome: str | None = None,
    limit: int | None = None,
    db: Path | None = None,
    case: str | None = None,
    origin: str | None = None,
) -> list[RunRow]:
    """Runs of the history, newest first, optionally only of `plan` (and `case`) / with
    `outcome` / whose origin holds the text `origin` (a search's id)."""
    db = db or outputs / HISTORY_FILE
    where, args = [], []
    if plan is not None:
        where.append("plan = ?")
        args.append(plan)
    if case is not None:
        where.append('"case" = ?')
        args.append(case)
    if outcome is not None:
        where.append("outcome = ?")
        args.append(outcome)
    if origin is not None:
        where.append("instr(origin, ?) > 0")  # (not LIKE: its % and _ would be wildcards)
        args.append(origin)
    sql = f"SELECT {_RUN_COLUMNS} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY started DESC, run_id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with _connect(db) as conn:
        rows = conn.execute(sql, args).fetchall()
    return [_where_now(row, outputs) for r in rows if (row := _run_row(r)) is not None]


def _where_now(row: RunRow, outputs: Path) -> RunRow:
    """`row` with its directory (and report) where the run is now under `outputs`: the
    history keeps the absolute path it was recorded at, which outputs moved or copied
    elsewhere no longer have."""
    here = outputs / row.run_id
    if not is_run_id(row.run_id) or not here.is_dir():
        return row
    here = here.resolve()
    if str(here) == row.dir:
        return row
    report = here / "report.html"
    return dataclasses.replace(row, dir=str(here),
                               report=str(report.resolve()) if report.is_file() else None)


def _run_row(r: tuple[Any, ...]) -> RunRow | None:
    """A `runs` row as a RunRow; a value of the wrong type (a history edited by hand, or
    written by something else) reads as missing, and a row without a run id is left out,
    so that one bad row does not hide the others."""
    if not isinstance(r[0], str):
        return None
    return RunRow(
        r[0], _text(r[1]), _text(r[2]), _text(r[3]), number(r[4]), number(r[5]),
        number(r[6]), _text(r[7]), r[8] if isinstance(r[8], int) else None, _text(r[9]),
        _count(r[10]), _count(r[11]), params=_json(r[12], dict), dir=_text(r[13]) or r[0],
        report=_text(r[14]), warnings=[w for w in _json(r[15], list) if isinstance(w, str)],
        origin=_text(r[16]),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _json(value: object, kind: type[Any]) -> Any:
    """A JSON column's value, or an empty `kind` when it holds none or something else."""
    try:
        out = orjson.loads(value) if isinstance(value, str | bytes) else None
    except orjson.JSONDecodeError:
        out = None
    return out if isinstance(out, kind) else kind()


def instance_rows(
    run_id: str, outputs: Path = DEFAULT_OUTPUTS, db: Path | None = None
) -> list[dict[str, Any]]:
    """The stored instances of one run."""
    db = db or outputs / HISTORY_FILE
    with _connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM instances WHERE run_id = ? ORDER BY id", (run_id,))
        return [dict(r) for r in rows]
