"""Rendered objects to files, for review or `kubectl apply -f`."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from harness._errors import UsageError
from harness.runners.k8s._render import RenderedRun


def manifest_text(run: RenderedRun) -> str:
    """Every object as one multi-document YAML stream (each document in JSON, which YAML
    reads as it is: no YAML library needed, nothing reformatted)."""
    docs = [orjson.dumps(o, option=orjson.OPT_INDENT_2).decode() for o in run.objects]
    return "".join(f"---\n{d}\n" for d in docs)


def write_manifests(run: RenderedRun, directory: Path) -> Path:
    """Write `<directory>/<run id>.yaml` (creating the directory), readable by its owner
    only: it holds the run's sync key (in the Secret, or inline); its path."""
    if directory.exists() and not directory.is_dir():  # mkdir would say only "File exists"
        raise UsageError(f"--render {directory}: not a directory (the manifests go in one)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{run.run_id}.yaml"
        write_private(path, manifest_text(run))
    except OSError as e:
        raise UsageError(f"--render {directory}: {e.strerror or e}") from None
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, never wider at any moment (a file there
    already is truncated and narrowed first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "w") as out:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is not applied to a file that existed
        out.write(text)
