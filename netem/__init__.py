"""Network emulation: hosts in network namespaces, shaped links, partitions.

Usable on its own; imports nothing from `harness`.
"""

from netem import topology
from netem._backend import Backend, HostInfo, LinkStats, Pair
from netem._build_errors import NetemError, NetworkError, RequestError
from netem._cleanup import cleanup
from netem._hosts import Host
from netem._hosts_policy import Policy, Request
from netem._kernel import KernelBackend
from netem._network import DEFAULT_SUBNET, HostRef, Network
from netem._probe import ProbeResult, has_sch_netem, probe_all
from netem._record_replay import replay, replay_states
from netem._rootless import needs_userns, reexec_in_userns, rootless_problem, userns_command
from netem._select import BACKEND_NAMES, NullBackend, select_backend
from netem._shape import IDENTITY, LinkShape, ShapeError
from netem._topology import PairMatrix, TopologyError, pair_matrix
from netem._userspace_backend import UserspaceBackend

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_SUBNET",
    "IDENTITY",
    "Backend",
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
