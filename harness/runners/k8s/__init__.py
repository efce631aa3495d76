"""`cluster:k8s`: a run's instances as Pods on a Kubernetes cluster (docs/k8s.md).

Rendering (`render_run`, `write_manifests`) needs no cluster and no client library; the API
path (`harness.runners.k8s._api`) needs the `k8s` extra (kr8s)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

from harness._errors import UsageError
from harness.plans import RunSpec
from harness.runners._base import Deployment
from harness.runners._registry import CLUSTER_K8S
from harness.runners.k8s._options import GroupPlacement, K8sOptions, load_options, parse_options
from harness.runners.k8s._render import RenderedRun, render_run
from harness.runners.k8s._write import manifest_text, write_manifests
from harness.sync import SyncState

__all__ = [
    "GroupPlacement",
    "K8sOptions",
    "K8sRunner",
    "RenderedRun",
    "load_options",
    "manifest_text",
    "parse_options",
    "render_run",
    "write_manifests",
]


class K8sRunner:
    """The cluster runs the instances, the sync service and the shaping; this machine
    only creates, watches, collects and deletes (`harness run` takes that path itself)."""

    name: ClassVar[str] = CLUSTER_K8S

    @asynccontextmanager
    async def deploy(
        self, spec: RunSpec, run_dir: Path, state: SyncState
    ) -> AsyncIterator[Deployment]:
        """Not in a local supervisor: a cluster:k8s run is not placed on this machine."""
        raise UsageError(f"{CLUSTER_K8S} runs on a cluster: use harness run --runner "
                         f"{CLUSTER_K8S} (or --render DIR), not a local supervisor")
        yield  # pragma: no cover
