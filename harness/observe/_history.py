"""Run history: an embedded SQLite store of runs, their params, instances and outcomes."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from harness._errors import UsageError
from harness.observe._rundir import DEFAULT_OUTPUTS, list_run_dirs, load_run

HISTORY_FILE = "history.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, plan TEXT, "case" TEXT, runner TEXT,
    started REAL, ended REAL, duration_s REAL, outcome TEXT, exit_code INTEGER, reason TEXT,
    instances INTEGER, failed INTEGER, params TEXT, dir TEXT, report TEXT
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
            yield conn
    except sqlite3.DatabaseError as e:
        raise UsageError(f"run history {db} is unusable: {e}") from None
    finally:
        conn.close()


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _dur(a: Any, b: Any) -> float | None:
    x, y = _num(a), _num(b)
    return None if x is None or y is None else y - x


def record_run(run_dir: Path, db: Path | None = None) -> None:
    """Store (or update) the run of `run_dir` in the history, by default
    `<run_dir>/../history.sqlite`. Needs run.json."""
    run = load_run(run_dir)
    if not run:
        raise UsageError(f"{run_dir} has no run.json; nothing to record")
    db = db or run_dir.parent / HISTORY_FILE
    run_id = str(run.get("run_id") or run_dir.name)
    insts = [i for i in run.get("instances") or [] if isinstance(i, dict) and "id" in i]
    params: dict[str, Any] = run["params"] if isinstance(run.get("params"), dict) else {}
    report = run_dir / "report.html"
    with _connect(db) as conn:
        conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        conn.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                run.get("plan"),
                run.get("case"),
                run.get("runner"),
                _num(run.get("started")),
                _num(run.get("ended")),
                _dur(run.get("started"), run.get("ended")),
                run.get("outcome"),
                run.get("exit_code"),
                run.get("reason"),
                len(insts),
                sum(1 for i in insts if i.get("outcome") not in ("passed", None)),
                orjson.dumps(params).decode(),
                str(run_dir.resolve()),
                str(report.resolve()) if report.exists() else None,
            ),
        )
        conn.executemany(
            "INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    run_id,
                    str(i["id"]),
                    i.get("group"),
                    i.get("role"),
                    i.get("ip"),
                    i.get("outcome"),
                    i.get("reason"),
                    i.get("exit_code"),
                    _num(i.get("started")),
                    _num(i.get("ended")),
                    _dur(i.get("started"), i.get("ended")),
                )
                for i in insts
            ],
        )
        conn.executemany(
            "INSERT INTO params VALUES (?,?,?)",
            [(run_id, str(k), orjson.dumps(v).decode()) for k, v in params.items()],
        )


def sync_history(outputs: Path = DEFAULT_OUTPUTS, db: Path | None = None) -> int:
    """Record every finished run under `outputs` that the history lacks (a supervisor that
    died before recording, runs copied in); returns how many were added."""
    db = db or outputs / HISTORY_FILE
    with _connect(db) as conn:
        known = {row[0] for row in conn.execute("SELECT run_id FROM runs WHERE ended IS NOT NULL")}
    added = 0
    for run_dir in list_run_dirs(outputs):
        if run_dir.name in known:
            continue
        try:
            run = load_run(run_dir)
        except UsageError:
            continue
        if run.get("ended") is not None:
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
) -> list[RunRow]:
    """Runs of the history, newest first, optionally only of `plan` / with `outcome`."""
    db = db or outputs / HISTORY_FILE
    where, args = [], []
    if plan is not None:
        where.append("plan = ?")
        args.append(plan)
    if outcome is not None:
        where.append("outcome = ?")
        args.append(outcome)
    sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY started DESC, run_id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with _connect(db) as conn:
        rows = conn.execute(sql, args).fetchall()
    return [
        RunRow(*r[:12], params=orjson.loads(r[12] or "{}"), dir=r[13], report=r[14])  # type: ignore[misc]
        for r in rows
    ]


def instance_rows(
    run_id: str, outputs: Path = DEFAULT_OUTPUTS, db: Path | None = None
) -> list[dict[str, Any]]:
    """The stored instances of one run."""
    db = db or outputs / HISTORY_FILE
    with _connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM instances WHERE run_id = ? ORDER BY id", (run_id,))
        return [dict(r) for r in rows]
