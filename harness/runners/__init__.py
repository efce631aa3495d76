"""Runners place a run's instances: on this host's loopback, or in network namespaces."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness._lazy import lazy_attributes

if TYPE_CHECKING:
    from harness.runners._base import Deployment, NetworkFaults, Placement, Runner
    from harness.runners._exec import ExecRunner
    from harness.runners._fallback import runnable_here
    from harness.runners._netns import BACKEND_ENV, netns_backend
    from harness.runners._process import Launch, Process, ProcessHost, signal_group
    from harness.runners._registry import (
        CLUSTER_K8S,
        DEFAULT_RUNNER,
        LOCAL_EXEC,
        LOCAL_NETNS,
        RUNNERS,
        check_runner_name,
        get_runner,
    )

# Imported on first use: the plan loader (which instances import too) checks runner names
# here, and must not pay for the runners themselves.
_WHERE = {
    "BACKEND_ENV": "harness.runners._netns",
    "CLUSTER_K8S": "harness.runners._registry",
    "DEFAULT_RUNNER": "harness.runners._registry",
    "LOCAL_EXEC": "harness.runners._registry",
    "LOCAL_NETNS": "harness.runners._registry",
    "RUNNERS": "harness.runners._registry",
    "Deployment": "harness.runners._base",
    "ExecRunner": "harness.runners._exec",
    "Launch": "harness.runners._process",
    "NetworkFaults": "harness.runners._base",
    "Placement": "harness.runners._base",
    "Process": "harness.runners._process",
    "ProcessHost": "harness.runners._process",
    "Runner": "harness.runners._base",
    "check_runner_name": "harness.runners._registry",
    "get_runner": "harness.runners._registry",
    "netns_backend": "harness.runners._netns",
    "runnable_here": "harness.runners._fallback",
    "signal_group": "harness.runners._process",
}

__all__ = [
    "BACKEND_ENV",
    "CLUSTER_K8S",
    "DEFAULT_RUNNER",
    "LOCAL_EXEC",
    "LOCAL_NETNS",
    "RUNNERS",
    "Deployment",
    "ExecRunner",
    "Launch",
    "NetworkFaults",
    "Placement",
    "Process",
    "ProcessHost",
    "Runner",
    "check_runner_name",
    "get_runner",
    "netns_backend",
    "runnable_here",
    "signal_group",
]


__getattr__ = lazy_attributes(__name__, _WHERE, globals())
