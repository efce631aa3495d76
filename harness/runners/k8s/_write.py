"""Rendered objects to files, for review or `kubectl apply -f`."""

from __future__ import annotations

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
    """Write `<directory>/<run id>.yaml` (creating the directory); its path."""
    if directory.exists() and not directory.is_dir():  # mkdir would say only "File exists"
        raise UsageError(f"--render {directory}: not a directory (the manifests go in one)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{run.run_id}.yaml"
        path.write_text(manifest_text(run))
    except OSError as e:
        raise UsageError(f"--render {directory}: {e.strerror or e}") from None
    return path
