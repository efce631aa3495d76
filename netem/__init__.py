"""Network emulation: hosts in network namespaces, shaped links, partitions.

Usable on its own; imports nothing from `harness`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from netem._backends._base import Backend, BackendFailure, HostInfo, LinkStats, Pair
from netem._errors import NetemError, NetworkError, RequestError
from netem._shape import IDENTITY, LinkShape, ShapeError

if TYPE_CHECKING:
    from netem import topology
    from netem._backends._kernel import KernelBackend
    from netem._backends._select import (
        BACKEND_NAMES,
        NullBackend,
        check_backend_name,
        select_backend,
    )
    from netem._backends._userspace import UserspaceBackend
    from netem._cleanup import cleanup
    from netem._hosts import Host
    from netem._network import DEFAULT_SUBNET, HostRef, Network, check_subnet
    from netem._policy import Policy, Request
    from netem._probe import ProbeResult, has_sch_netem, probe_all
    from netem._record._replay import replay, replay_states
    from netem._rootless import needs_userns, reexec_in_userns, rootless_problem, userns_command
    from netem.topology._matrix import PairMatrix, TopologyError, pair_matrix

# The rest is imported on first use: `netem.LinkShape` alone (as an instance's SDK needs it)
# must not cost the netlink, iptables and networkx code.
_LAZY = {
    "BACKEND_NAMES": "netem._backends._select",
    "DEFAULT_SUBNET": "netem._network",
    "Host": "netem._hosts",
    "HostRef": "netem._network",
    "KernelBackend": "netem._backends._kernel",
    "Network": "netem._network",
    "NullBackend": "netem._backends._select",
    "PairMatrix": "netem.topology._matrix",
    "Policy": "netem._policy",
    "ProbeResult": "netem._probe",
    "Request": "netem._policy",
    "TopologyError": "netem.topology._matrix",
    "UserspaceBackend": "netem._backends._userspace",
    "check_backend_name": "netem._backends._select",
    "check_subnet": "netem._network",
    "cleanup": "netem._cleanup",
    "has_sch_netem": "netem._probe",
    "needs_userns": "netem._rootless",
    "pair_matrix": "netem.topology._matrix",
    "probe_all": "netem._probe",
    "reexec_in_userns": "netem._rootless",
    "replay": "netem._record._replay",
    "replay_states": "netem._record._replay",
    "rootless_problem": "netem._rootless",
    "select_backend": "netem._backends._select",
    "topology": "netem.topology",
    "userns_command": "netem._rootless",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'netem' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "topology" else getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_SUBNET",
    "IDENTITY",
    "Backend",
    "BackendFailure",
    "Host",
    "HostInfo",
    "HostRef",
    "KernelBackend",
    "LinkShape",
    "LinkStats",
    "NetemError",
    "Network",
    "NetworkError",
    "NullBackend",
    "Pair",
    "PairMatrix",
    "Policy",
    "ProbeResult",
    "Request",
    "RequestError",
    "ShapeError",
    "TopologyError",
    "UserspaceBackend",
    "check_backend_name",
    "check_subnet",
    "cleanup",
    "has_sch_netem",
    "needs_userns",
    "pair_matrix",
    "probe_all",
    "reexec_in_userns",
    "replay",
    "replay_states",
    "rootless_problem",
    "select_backend",
    "topology",
    "userns_command",
]
