"""Finding run directories (by id, prefix, "latest" or path) and their instances' directories."""

from __future__ import annotations

import dataclasses
import errno
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from harness._errors import UsageError
from harness._runid import is_run_id
from harness.observe._runrecord import RUN_FILE, RecordError, RunRecord, read_run

DEFAULT_OUTPUTS = Path("outputs")
T = TypeVar("T")


def list_run_dirs(outputs: Path) -> list[Path]:
    """The run directories under `outputs`, oldest first (run ids sort by time)."""
    if not outputs.is_dir():
        return []
    return sorted(p for p in outputs.iterdir() if p.is_dir() and is_run_id(p.name))


def resolve_run(spec: str, outputs: Path = DEFAULT_OUTPUTS) -> Path:
    """The directory of run `spec`: a run id, a unique prefix of one, "latest", or a path."""
    if not spec:  # as a path, the current directory; as a prefix, any run
        raise UsageError("an empty run names none (give a run id, a prefix, 'latest' or a path)")
    if spec == "latest":
        runs = list_run_dirs(outputs)
        if not runs:
            raise UsageError(f"no runs under {outputs}")
        # runs started within the same second sort by their ids' random part: by start then
        second = runs[-1].name.rpartition("-")[0]
        return max((r for r in runs if r.name.rpartition("-")[0] == second), key=_started)
    as_path = Path(spec)
    try:
        is_dir = as_path.is_dir()
        if (as_path / RUN_FILE).is_file() or (is_dir and is_run_id(as_path.name)):
            return as_path
    except OSError as e:  # e.g. a name longer than the file system allows
        raise UsageError(f"no run {spec!r}: {e.strerror}") from None
    matches = [p for p in list_run_dirs(outputs) if p.name.startswith(spec)]
    if len(matches) == 1:
        return matches[0]
    if not matches and is_dir:
        raise UsageError(f"{as_path} is not a run directory (it has no {RUN_FILE} file)")
    if not matches:
        raise UsageError(
            f"no run {spec!r} under {outputs} (give a run id, a prefix, 'latest' or a path)"
        )
    names = ", ".join(p.name for p in matches[:5])
    raise UsageError(
        f"run prefix {spec!r} is ambiguous: {names}{', ...' if len(matches) > 5 else ''}"
    )


def _started(run_dir: Path) -> float:
    """When the run started, as its record says; else when its directory last changed."""
    try:
        run = read_run(run_dir)
    except (RecordError, OSError):
        run = None
    if run is not None and run.started is not None:
        return run.started
    try:
        return run_dir.stat().st_mtime
    except OSError:
        return 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceDir:
    """One instance's id, group and output directory."""

    id: str
    group: str
    path: Path


def instance_dirs(run_dir: Path, run: RunRecord | None = None) -> list[InstanceDir]:
    """The instances of a run: from run.json when it lists them, plus the directories
    `<group>/<seq>/` that exist (a live run) in the groups it names (in any group where it
    names none: another directory, such as `notes/1`, is no instance). `run` is run_dir's
    record if already read."""
    run = read_run(run_dir) if run is None else run
    found: dict[str, InstanceDir] = {}
    for inst in run.instances if run else ():
        found[inst.id] = InstanceDir(inst.id, inst.group, inst.path(run_dir))
    groups = {i.group for i in found.values()}
    for group_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()) if run_dir.is_dir() else []:
        if groups and group_dir.name not in groups:
            continue
        for d in group_dir.iterdir():
            if d.is_dir() and d.name.isdigit():
                iid = f"{group_dir.name}/{d.name}"
                found.setdefault(iid, InstanceDir(iid, group_dir.name, d))
    return sorted(found.values(), key=_instance_sort_key)


def _instance_sort_key(i: InstanceDir) -> tuple[str, int, str]:
    group, _, seq = i.id.rpartition("/")
    return (group, int(seq) if seq.isdigit() else -1, i.id)


def run_ended(run_dir: Path) -> bool:
    """True once run.json records the run's end."""
    try:
        run = read_run(run_dir)
    except RecordError:
        return False  # being rewritten right now
    return run is not None and run.is_over


def follow_run(
    run_dir: Path,
    read: Callable[[bool], Iterable[T]],
    *,
    ended: Callable[[Path], bool] = run_ended,
    poll: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[T]:
    """What `read(False)` gives, again every `poll` seconds, until `ended(run_dir)`: what
    was written before the end is read once more after it, by `read(True)` (the writers are
    done: a last line without its newline is complete), so nothing is missed.
    FileNotFoundError once `run_dir` is gone (removed meanwhile: its end would never come)."""
    while True:
        if not run_dir.is_dir():
            raise FileNotFoundError(errno.ENOENT, "the run's directory was removed while it "
                                    "was followed", str(run_dir))
        over = ended(run_dir)  # before reading, so no line written before the end is missed
        yield from read(over)
        if over:
            return
        sleep(poll)
