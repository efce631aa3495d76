"""A cluster:k8s run on a cluster through its API (filled in by the API-client commit)."""

from __future__ import annotations

from pathlib import Path

from harness._errors import EnvironmentProblem
from harness.plans import RunSpec
from harness.runners.k8s._options import K8sOptions


def run_on_cluster(spec: RunSpec, options: K8sOptions, outputs: Path, *, quiet: bool) -> int:
    """Run `spec` on the cluster; the run's exit code."""
    raise EnvironmentProblem("cluster:k8s: the API path is not in this build; use --render DIR")
