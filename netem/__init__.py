"""Network emulation: hosts in network namespaces, shaped links, partitions.

Usable on its own; imports nothing from `harness`.
"""

from netem._backend import Backend, HostInfo, LinkStats, Pair
from netem._build_errors import NetemError, NetworkError, RequestError
from netem._cleanup import cleanup
from netem._hosts import Host
from netem._hosts_policy import Policy, Request
from netem._network import DEFAULT_SUBNET, HostRef, Network
from netem._record_replay import replay
from netem._rootless import needs_userns, reexec_in_userns, rootless_problem
from netem._select import BACKEND_NAMES, NullBackend, select_backend
from netem._shape import IDENTITY, LinkShape, ShapeError

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_SUBNET",
    "IDENTITY",
    "Backend",
    "Host",
    "HostInfo",
    "HostRef",
    "LinkShape",
    "LinkStats",
    "NetemError",
    "Network",
    "NetworkError",
    "NullBackend",
    "Pair",
    "Policy",
    "Request",
    "RequestError",
    "ShapeError",
    "cleanup",
    "needs_userns",
    "reexec_in_userns",
    "replay",
    "rootless_problem",
    "select_backend",
]
