"""Finding a run's directory and reading what the supervisor wrote there."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import orjson

from harness._errors import UsageError

RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
DEFAULT_OUTPUTS = Path("outputs")


def list_run_dirs(outputs: Path) -> list[Path]:
    """The run directories under `outputs`, oldest first (run ids sort by time)."""
    if not outputs.is_dir():
        return []
    return sorted(p for p in outputs.iterdir() if p.is_dir() and RUN_ID_RE.match(p.name))


def resolve_run(spec: str, outputs: Path = DEFAULT_OUTPUTS) -> Path:
    """The directory of run `spec`: a run id, a unique prefix of one, "latest", or a path."""
    if spec == "latest":
        runs = list_run_dirs(outputs)
        if not runs:
            raise UsageError(f"no runs under {outputs}")
        return runs[-1]
    as_path = Path(spec)
    if (as_path / "run.json").is_file() or (as_path.is_dir() and RUN_ID_RE.match(as_path.name)):
        return as_path
    matches = [p for p in list_run_dirs(outputs) if p.name.startswith(spec)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(
            f"no run {spec!r} under {outputs} (give a run id, a prefix, 'latest' or a path)"
        )
    names = ", ".join(p.name for p in matches[:5])
    raise UsageError(
        f"run prefix {spec!r} is ambiguous: {names}{', ...' if len(matches) > 5 else ''}"
    )


def load_run(run_dir: Path) -> dict[str, Any]:
    """run.json as a dict; {} while a live run has not written it yet."""
    path = run_dir / "run.json"
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except orjson.JSONDecodeError as e:
        raise UsageError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a JSON object")
    return data


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceDir:
    """One instance's id, group and output directory."""

    id: str
    group: str
    path: Path


def instance_dirs(run_dir: Path, run: dict[str, Any] | None = None) -> list[InstanceDir]:
    """The instances of a run: from run.json when it lists them, else from the directories
    `<group>/<seq>/` that exist (a live run)."""
    run = load_run(run_dir) if run is None else run
    found: dict[str, InstanceDir] = {}
    for inst in run.get("instances") or []:
        if isinstance(inst, dict) and isinstance(inst.get("id"), str):
            iid = inst["id"]
            group = str(inst.get("group") or iid.split("/")[0])
            found[iid] = InstanceDir(iid, group, run_dir / str(inst.get("dir") or iid))
    for group_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()) if run_dir.is_dir() else []:
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
        return load_run(run_dir).get("ended") is not None
    except UsageError:
        return False  # being rewritten right now
