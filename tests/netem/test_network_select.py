"""Choosing a backend by name; a missing one is a one-line error."""

from __future__ import annotations

import sys
import types

import pytest

from netem import NetworkError, NullBackend, RequestError, select_backend
from netem._backends import _select


def test_none_gives_null_backend() -> None:
    assert isinstance(select_backend("none"), NullBackend)


def test_object_passes_through() -> None:
    backend = NullBackend()
    assert select_backend(backend) is backend


@pytest.mark.parametrize("choice", [None, 3, object()])
def test_what_is_no_backend_is_refused_in_one_line(choice: object) -> None:
    """Not a name and not a backend (e.g. None): refused before anything is built, where
    it used to pass through and fail in `build` with an AttributeError."""
    with pytest.raises(RequestError, match="backend must be one of auto, kernel") as info:
        select_backend(choice)  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and "no attach, apply" in str(info.value)


def test_unknown_name() -> None:
    with pytest.raises(RequestError, match="unknown backend 'tc'; choose one of auto, kernel"):
        select_backend("tc")


def test_missing_backend_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_select._MODULES, "kernel", ("netem._no_such_module", "KernelBackend"))
    with pytest.raises(NetworkError, match="the kernel shaping backend is not available") as info:
        select_backend("kernel")
    assert "\n" not in str(info.value)


def test_missing_class(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("netem._fake_userspace")
    monkeypatch.setitem(sys.modules, "netem._fake_userspace", fake)
    monkeypatch.setitem(
        _select._MODULES, "userspace", ("netem._fake_userspace", "UserspaceBackend")
    )
    with pytest.raises(NetworkError, match="userspace shaping backend is not available"):
        select_backend("userspace")


@pytest.mark.parametrize(("has_netem", "expected"), [(True, "kernel"), (False, "userspace")])
def test_auto_follows_the_probe(
    monkeypatch: pytest.MonkeyPatch, has_netem: bool, expected: str
) -> None:
    probe = types.ModuleType("netem._probe_fake")
    probe.has_sch_netem = lambda: has_netem  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "netem._probe", probe)
    made = {}
    for name in ("kernel", "userspace"):
        module = types.ModuleType(f"netem._fake_{name}")

        class Fake(NullBackend):
            kind = name

        module.Backend = Fake  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(_select._MODULES, name, (module.__name__, "Backend"))
        made[name] = Fake
    backend = select_backend("auto")
    assert type(backend) is made[expected]
