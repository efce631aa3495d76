"""The runners by name: the one list that manifests, compositions, the CLI and `get_runner`
check names against."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from harness._errors import UsageError

if TYPE_CHECKING:
    from harness.runners._base import Runner

LOCAL_EXEC = "local:exec"
"""Plain processes on this host's loopback; needs no privilege; cannot shape links."""
LOCAL_NETNS = "local:netns"
"""One network namespace per instance on an emulated network; needs root or a user namespace."""
CLUSTER_K8S = "cluster:k8s"
"""One Pod per instance on a Kubernetes cluster (docs/k8s.md)."""
DEFAULT_RUNNER = LOCAL_NETNS
"""A plan's runner when its manifest names none."""
NOT_PLAYED: Mapping[str, tuple[str, ...]] = MappingProxyType({
    LOCAL_EXEC: ("shape", "partition", "isolate"),  # no links to shape or cut
    CLUSTER_K8S: ("shape", "skew", "limit", "hog"),  # not done there yet (docs/k8s.md)
})
"""The fault actions a runner cannot play, refused before a run that plans one starts."""


def cluster_clean_command(run_id: str, namespace: str | None) -> str:
    """The command that deletes what a cluster:k8s run left on its cluster."""
    return (f"harness clean --runner {CLUSTER_K8S} --run {run_id}"
            + (f" --k8s namespace={namespace}" if namespace else ""))

RUNNERS: Mapping[str, str] = MappingProxyType({
    LOCAL_EXEC: "harness.runners._exec:ExecRunner",
    LOCAL_NETNS: "harness.runners._netns:NetnsRunner",
    CLUSTER_K8S: "harness.runners.k8s:K8sRunner",
})
"""Every runner's name and the class that implements it (imported on first use)."""


def check_runner_name(name: Any, where: str = "") -> str:
    """`name` if a runner has it; otherwise a UsageError listing the known names."""
    if not isinstance(name, str) or name not in RUNNERS:
        prefix = f"{where}: " if where else ""
        raise UsageError(f"{prefix}unknown runner {name!r}; known: {', '.join(RUNNERS)}")
    return name


def get_runner(name: str) -> Runner:
    """The runner called `name`."""
    module, _, cls = RUNNERS[check_runner_name(name)].partition(":")
    runner: Runner = getattr(importlib.import_module(module), cls)()
    return runner
