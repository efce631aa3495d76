"""Runners place a run's instances: on this host's loopback, or in network namespaces."""

from harness._errors import UsageError
from harness.runners._base import Deployment, Placement, Runner
from harness.runners._exec import ExecRunner
from harness.runners._process import Launch, Process, ProcessHost, signal_group


def get_runner(name: str) -> Runner:
    """The runner called `name`."""
    if name == "local:exec":
        return ExecRunner()
    if name == "local:netns":
        from harness.runners._netns import NetnsRunner

        runner: Runner = NetnsRunner()
        return runner
    raise UsageError(f"unknown runner {name!r}; known: local:exec, local:netns")


__all__ = [
    "Deployment",
    "ExecRunner",
    "Launch",
    "Placement",
    "Process",
    "ProcessHost",
    "Runner",
    "get_runner",
    "signal_group",
]
