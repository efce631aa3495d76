"""Where a run can go on this machine: local:netns without root re-executes the program into
a user namespace, or falls back to local:exec. The CLI and `harness.run()` both pass here."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Mapping

import netem
from harness import _listen as listen
from harness._errors import EnvironmentProblem
from harness._tell import tell
from harness.plans import RunSpec
from harness.runners._netns import netns_backend, netns_subnet
from harness.runners._registry import LOCAL_EXEC, LOCAL_NETNS, NOT_PLAYED


def runnable_here(
    spec: RunSpec,
    sockets: Callable[[], Mapping[str, socket.socket]] = dict,
) -> RunSpec:
    """`spec`, or the spec to run in its place on this machine.

    local:netns needs root. Without it, and where user namespaces work, this process is
    replaced by the same program run as root of a new user namespace (`netem.reexec_in_userns`:
    this call does not return); `sockets()` is called just before, and what it returns is
    handed over to the new program (`harness._listen.inherited`), since a socket bound in
    there would not be on the user's network. Where user namespaces do not work, the run
    goes on local:exec (unshaped) with a note on stderr, unless `spec.runner_pinned` or a
    planned fault shapes or cuts links: then an EnvironmentProblem says why. A bad
    $HARNESS_NETEM_BACKEND or $HARNESS_DATA_SUBNET is a UsageError first.
    """
    if spec.runner != LOCAL_NETNS:
        return spec
    netns_backend()  # a bad $HARNESS_NETEM_BACKEND is refused before anything starts
    netns_subnet(spec.total)  # as is a bad $HARNESS_DATA_SUBNET
    if not netem.needs_userns():
        return spec
    problem = netem.rootless_problem()
    if problem is None:
        handed = sockets()  # held here: a socket collected before the exec closes its fd
        listen.hand_over(handed)
        netem.reexec_in_userns()  # the same program, as root of a new user namespace
    linked = [f.action for f in spec.faults if f.action in NOT_PLAYED[LOCAL_EXEC]]
    if spec.runner_pinned or linked:
        why = f" (the run's {linked[0]} fault cannot be played on {LOCAL_EXEC})" if linked else ""
        raise EnvironmentProblem(f"{LOCAL_NETNS} needs root or user namespaces: {problem}{why}")
    tell(f"harness: note: running on {LOCAL_EXEC} (no shaping): {LOCAL_NETNS} needs root "
         f"or user namespaces ({problem})")
    return dataclasses.replace(spec, runner=LOCAL_EXEC)
