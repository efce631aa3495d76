"""Errors of building and changing an emulated network."""

from __future__ import annotations


class NetemError(Exception):
    """Base of every error netem raises on purpose; its message is one readable line."""


class RequestError(NetemError, ValueError):
    """A change that cannot be applied as asked (bad value, unknown host); nothing changed."""


class NetworkError(NetemError, RuntimeError):
    """The machine cannot do what was asked (a privilege, a kernel feature, a program)."""
