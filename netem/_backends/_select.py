"""Choosing a shaping backend by name, and the no-op backend."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import ClassVar

from netem._backends._base import Backend, BackendFailure, HostInfo, LinkStats, Pair
from netem._errors import NetworkError, RequestError
from netem._shape import LinkShape

BACKEND_NAMES = ("auto", "kernel", "userspace", "none")

_MODULES = {
    "kernel": ("netem._backends._kernel", "KernelBackend"),
    "userspace": ("netem._backends._userspace", "UserspaceBackend"),
}


class NullBackend:
    """Shapes nothing; keeps the last matrix it was given (useful in tests and dry runs)."""

    name: ClassVar[str] = "none"

    def __init__(self) -> None:
        self.hub_netns: str | None = None
        self.hosts: list[HostInfo] = []
        self.matrix: dict[Pair, LinkShape] = {}
        self.closed = False

    def attach(self, hub_netns: str, hosts: Sequence[HostInfo]) -> None:
        self.hub_netns = hub_netns
        self.hosts.extend(hosts)

    def apply(self, matrix: Mapping[Pair, LinkShape]) -> None:
        self.matrix = dict(matrix)

    def stats(self) -> Mapping[Pair, LinkStats]:
        return {}

    def failure(self) -> BackendFailure | None:
        return None

    def notes(self) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        self.closed = True


def _load(name: str) -> Backend:
    module_name, class_name = _MODULES[name]
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError) as e:
        raise NetworkError(f"the {name} shaping backend is not available ({e})") from None
    backend: Backend = cls()
    return backend


def _has_sch_netem() -> bool:
    try:
        probe = importlib.import_module("netem._probe")
    except ImportError as e:
        raise NetworkError(f"cannot tell which shaping backend works here ({e})") from None
    return bool(probe.has_sch_netem())


_BACKEND_METHODS = ("attach", "apply", "stats", "close")  # `failure` may be missing (older ones)


def check_backend_name(name: object, where: str = "") -> str:
    """`name` if it is one of BACKEND_NAMES; otherwise a one-line RequestError naming it,
    the choices and `where` it came from (e.g. an environment variable)."""
    if not isinstance(name, str) or name not in BACKEND_NAMES:
        prefix = f"{where}: " if where else ""
        raise RequestError(f"{prefix}unknown backend {name!r}; "
                           f"choose one of {', '.join(BACKEND_NAMES)}")
    return name


def select_backend(choice: Backend | str) -> Backend:
    """A backend object for `choice`: one of BACKEND_NAMES, or a backend to use as it is.
    "auto" is the kernel backend where sch_netem exists, else the userspace one."""
    if not isinstance(choice, str):
        missing = [m for m in _BACKEND_METHODS if not callable(getattr(choice, m, None))]
        if missing:
            raise RequestError(
                f"backend must be one of {', '.join(BACKEND_NAMES)} or a backend object, "
                f"not {choice!r} (it has no {', '.join(missing)})"
            )
        return choice
    if check_backend_name(choice) == "none":
        return NullBackend()
    if choice == "auto":
        choice = "kernel" if _has_sch_netem() else "userspace"
    return _load(choice)
