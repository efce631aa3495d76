"""The run record: `run.json`, written by the supervisor and read by everything else.

`RunRecord` (with one `InstanceRecord` per instance and one `GroupRecord` per group) is
the only definition of the file (docs/contracts.md, 7). Reading is tolerant of older
files: a missing key takes its default, and keys this version does not know are kept in
`extra` and written back unchanged. A value of the wrong type, or a file that is not a run
record at all, is a `RecordError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson

from harness._errors import UsageError
from harness._rundir import write_json
from harness.observe._jsonl import ReadFailed, read_regular

RUN_FILE = "run.json"
RESERVE_FILE = ".run.json.reserve"
"""Disk space a running supervisor holds for run.json's last write (`harness._rundir.Reserve`)."""

#: The outcomes a run record may hold; "running" until the supervisor writes the end.
OUTCOMES = ("running", "passed", "failed", "interrupted", "error", "aborted")


class RecordError(UsageError):
    """run.json is unreadable, or is not a run record."""


_T = TypeVar("_T")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


_LAST_TIME = 253402214400.0  # 9999-12-31 UTC: the last day a date can show


def _is_time(v: Any) -> bool:
    return _is_number(v) and 0 <= v <= _LAST_TIME


class _Reader:
    """Takes typed values out of one JSON object, naming where a bad one is."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data, self.where, self.used = data, where, set[str]()

    def _get(self, key: str, check: Callable[[Any], bool], kind: str) -> Any:
        self.used.add(key)
        value = self.data.get(key)
        if value is not None and not check(value):
            raise RecordError(f"{self.where}: {key!r} must be {kind}, not {value!r:.60}")
        return value

    def text(self, key: str) -> str | None:
        v = self._get(key, lambda v: isinstance(v, str), "a string")
        return None if v is None else str(v)

    def integer(self, key: str) -> int | None:
        v = self._get(key, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
        return None if v is None else int(v)

    def number(self, key: str) -> float | None:
        v = self._get(key, _is_number, "a number")
        return None if v is None else float(v)

    def time(self, key: str) -> float | None:
        v = self._get(key, _is_time, "a number of Unix seconds (1970 to 9999)")
        return None if v is None else float(v)

    def mapping(self, key: str) -> dict[str, Any] | None:
        v = self._get(key, lambda v: isinstance(v, dict), "an object")
        return None if v is None else dict(v)

    def items(self, key: str, item: Callable[[Any, str], _T]) -> tuple[_T, ...]:
        return self.optional_items(key, item) or ()

    def optional_items(self, key: str, item: Callable[[Any, str], _T]) -> tuple[_T, ...] | None:
        v = self._get(key, lambda v: isinstance(v, list), "a list")
        if v is None:
            return None
        return tuple(item(x, f"{self.where}: {key}[{n}]") for n, x in enumerate(v))

    def extra(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k not in self.used}


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{where} must be an object, not {value!r:.60}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class SupervisorRecord:
    """The supervisor process of a run, to tell a live run from one whose supervisor died."""

    pid: int
    start_ticks: int  # the process's start time in clock ticks since boot (/proc/PID/stat)
    boot_id: str = ""  # the kernel's boot id: a reboot since means the process is gone
    host: str = ""  # whose processes these are (outputs may be shared between machines)
    pid_ns: int | None = None  # the inode of its PID namespace, whose pid `pid` is; None: older

    @classmethod
    def from_json(cls, value: Any, where: str) -> SupervisorRecord:
        """Parse run.json's `supervisor` object."""
        r = _Reader(_object(value, where), where)
        pid, ticks = r.integer("pid"), r.integer("start_ticks")
        if pid is None or ticks is None:
            raise RecordError(f"{where} needs 'pid' and 'start_ticks'")
        return cls(pid, ticks, r.text("boot_id") or "", r.text("host") or "", r.integer("pid_ns"))

    def to_json(self) -> dict[str, Any]:
        """The `supervisor` object of run.json."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class GroupRecord:
    """One group of a run as run.json records it."""

    id: str
    count: int | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    program: tuple[str, ...] | None = None  # None: the case's Python entrypoint
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Any, where: str) -> GroupRecord:
        """Parse one entry of run.json's `groups`."""
        r = _Reader(_object(value, where), where)
        gid = r.text("id")
        if gid is None:
            raise RecordError(f"{where} has no 'id'")
        program = r.optional_items("program", _program_arg)
        return cls(gid, r.integer("count"), r.mapping("params") or {}, program, r.extra())

    def to_json(self) -> dict[str, Any]:
        """The group's entry in run.json."""
        return {
            "id": self.id,
            "count": self.count,
            "params": dict(self.params),
            "program": list(self.program) if self.program is not None else None,
            **{k: v for k, v in self.extra.items() if k not in _GROUP_KEYS},
        }


def _object_item(value: Any, where: str) -> dict[str, Any]:
    return dict(_object(value, where))


def _network(value: dict[str, Any] | None, where: str) -> dict[str, Any] | None:
    """run.json's `network`, whose keys the readers use of the types they expect (kept
    whole: a runner records what it needs)."""
    if value is not None:
        r = _Reader(value, where)
        for key in ("runner", "backend", "subnet", "prefix", "namespace"):
            r.text(key)
        r.mapping("hosts")
        r.mapping("default_shape")
        r.optional_items("links", lambda item, _: item)
    return value


def _program_arg(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{where} must be a string, not {value!r:.60}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One instance of a run as run.json records it."""

    id: str  # "<group>/<group seq>"
    group: str
    group_seq: int | None = None
    global_seq: int | None = None
    role: str | None = None
    ip: str | None = None
    pid: int | None = None
    outcome: str | None = None  # "passed" or "failed" once it is known
    reason: str | None = None
    exit_code: int | None = None  # or minus the signal that ended the process
    started: float | None = None
    ended: float | None = None
    dir: str | None = None  # its output directory, relative to the run's
    restarts: int = 0  # how many times a fault started it again
    down_s: float = 0.0  # how long faults kept it down between its starts
    note: str | None = None  # what a fault did to it that did not fail it (e.g. killed, as expected)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """The instance passed."""
        return self.outcome == "passed"

    @property
    def duration_s(self) -> float | None:
        """How long its processes ran, from its first start to its last exit, when both
        are known, less the time faults kept it down between them."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started - self.down_s

    def path(self, run_dir: Path) -> Path:
        """Its output directory."""
        return run_dir / (self.dir or self.id)

    @classmethod
    def from_json(cls, value: Any, where: str) -> InstanceRecord:
        """Parse one entry of run.json's `instances`."""
        r = _Reader(_object(value, where), where)
        iid = r.text("id")
        if iid is None:
            raise RecordError(f"{where} has no 'id'")
        group = r.text("group")
        where_to = r.text("dir") or iid
        inside = Path(where_to)
        if not inside.parts or inside.is_absolute() or ".." in inside.parts:
            raise RecordError(f"{where}: its directory {where_to!r} is not inside the run's")
        return cls(
            id=iid,
            group=iid.split("/")[0] if group is None else group,
            group_seq=r.integer("group_seq"),
            global_seq=r.integer("global_seq"),
            role=r.text("role"),
            ip=r.text("ip"),
            pid=r.integer("pid"),
            outcome=r.text("outcome"),
            reason=r.text("reason"),
            exit_code=r.integer("exit_code"),
            started=r.time("started"),
            ended=r.time("ended"),
            dir=r.text("dir"),
            restarts=r.integer("restarts") or 0,
            down_s=r.number("down_s") or 0.0,
            note=r.text("note"),
            extra=r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        """The instance's entry in run.json."""
        out = {f: getattr(self, f) for f in _INSTANCE_KEYS}
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}


@dataclasses.dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as run.json records it: rewritten by the supervisor as the run goes on."""

    run_id: str
    plan: str | None = None
    case: str | None = None
    runner: str | None = None
    started: float | None = None  # Unix seconds
    ended: float | None = None  # None while the run goes on
    outcome: str | None = None  # one of OUTCOMES (older runs may hold None)
    exit_code: int | None = None
    reason: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)  # every group's
    composition: str | None = None
    timeout_s: float | None = None
    groups: tuple[GroupRecord, ...] = ()
    instances: tuple[InstanceRecord, ...] = ()
    network: dict[str, Any] | None = None  # what the runner says of the network it built
    metrics_url: str | None = None
    supervisor: SupervisorRecord | None = None
    last_seen: float | None = None  # Unix seconds the supervisor was last known alive
    sock_dir: str | None = None  # where the run's Unix sockets are
    network_events: tuple[dict[str, Any], ...] = ()  # what the network did on its own
    aborted: dict[str, Any] | None = None  # {found, found_by}: who found the supervisor dead
    # What `harness replay` needs beyond the groups, runner and timeout: where the plan is
    # (absolute), and the planned fault schedule, each fault as `Fault.to_data()` (None: a
    # run.json written before faults were recorded).
    plan_dir: str | None = None
    faults: tuple[dict[str, Any], ...] | None = None
    origin: str | None = None  # what started the run besides a person (`RunOptions.origin`)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def missing_for_replay(self) -> str | None:
        """What run.json lacks to be run again (None: nothing)."""
        missing = [k for k, v in (("plan_dir", self.plan_dir), ("faults", self.faults),
                                  ("runner", self.runner), ("timeout_s", self.timeout_s),
                                  ("groups", self.groups or None)) if v is None]  # fmt: skip
        return ", ".join(missing) or None

    @property
    def is_over(self) -> bool:
        """run.json records the run's end."""
        return self.ended is not None

    @property
    def goes_on(self) -> bool:
        """run.json says the run goes on: "running", or no outcome and no end (a damaged
        record, or one written before "running" was)."""
        return self.outcome == "running" or (self.outcome is None and not self.is_over)

    @property
    def duration_s(self) -> float | None:
        """From start to end, once the run has ended."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @classmethod
    def from_json(cls, data: Any, where: str = RUN_FILE) -> RunRecord:
        """Parse run.json's content; `where` names the file in errors."""
        if not isinstance(data, dict) or not data.keys() & _IDENTIFYING:
            raise RecordError(
                f"{where} is not a run record (a JSON object with {', '.join(sorted(_IDENTIFYING))})"
            )
        r = _Reader(data, where)
        sup = r.data.get("supervisor")
        r.used.add("supervisor")
        return cls(
            run_id=r.text("run_id") or "",
            plan=r.text("plan"),
            case=r.text("case"),
            runner=r.text("runner"),
            started=r.time("started"),
            ended=r.time("ended"),
            outcome=r.text("outcome"),
            exit_code=r.integer("exit_code"),
            reason=r.text("reason"),
            params=r.mapping("params") or {},
            composition=r.text("composition"),
            timeout_s=r.number("timeout_s"),
            groups=r.items("groups", GroupRecord.from_json),
            instances=r.items("instances", InstanceRecord.from_json),
            network=_network(r.mapping("network"), f"{where}: network"),
            metrics_url=r.text("metrics_url"),
            supervisor=None if sup is None else SupervisorRecord.from_json(sup, f"{where}: supervisor"),
            last_seen=r.time("last_seen"),
            sock_dir=r.text("sock_dir"),
            network_events=r.items("network_events", _object_item),
            aborted=r.mapping("aborted"),
            plan_dir=r.text("plan_dir"),
            faults=r.optional_items("faults", _object_item),
            origin=r.text("origin"),
            extra=r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        """run.json's content: every key this version knows, then the others it read."""
        out: dict[str, Any] = {f: getattr(self, f) for f in _RUN_KEYS}
        out["network_events"] = list(self.network_events)
        out["groups"] = [g.to_json() for g in self.groups]
        out["instances"] = [i.to_json() for i in self.instances]
        out["params"] = dict(self.params)
        out["supervisor"] = self.supervisor.to_json() if self.supervisor else None
        out["faults"] = None if self.faults is None else list(self.faults)
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}


_RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunRecord) if f.name != "extra")
_INSTANCE_KEYS = tuple(f.name for f in dataclasses.fields(InstanceRecord) if f.name != "extra")
_GROUP_KEYS = frozenset(f.name for f in dataclasses.fields(GroupRecord))
# A JSON object with none of these is something else than a run record.
_IDENTIFYING = frozenset({"run_id", "plan", "started", "instances"})


def read_run(run_dir: Path) -> RunRecord | None:
    """The run record of `run_dir`; None while a live run has not written it yet. A run
    record without a run id takes the directory's name."""
    path = run_dir / RUN_FILE
    try:
        raw = read_regular(path)
    except ReadFailed as e:
        if e.out_of_files:
            raise
        raise RecordError(f"cannot read {path}: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise RecordError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if raw is None:
        if not os.path.lexists(path):
            return None
        # a FIFO would block every command that reads runs; /dev/zero would never end
        raise RecordError(f"{path} is not a regular file")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise RecordError(f"{path} is not valid JSON: {e}") from None
    record = RunRecord.from_json(data, str(path))
    return record if record.run_id else dataclasses.replace(record, run_id=run_dir.name)


def load_run(run_dir: Path) -> RunRecord:
    """The run record of `run_dir` (run.json); a UsageError when there is none."""
    record = read_run(run_dir)
    if record is None:
        raise RecordError(f"{run_dir} has no run.json: is it a run directory?")
    return record


def write_run(run_dir: Path, record: RunRecord) -> None:
    """Write `record` as `run_dir`/run.json, atomically (readers never see half a file)."""
    write_json(run_dir / RUN_FILE, record.to_json())
