"""Roles by cumulative ranges of the global sequence number (e.g. poets=1, gateways=1, rest)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from harness._errors import UsageError


@dataclasses.dataclass(frozen=True, slots=True)
class RoleSpec:
    """A role: a fixed count (an int or the name of an int param), or the rest."""

    name: str
    count: int | str | None = None
    rest: bool = False
    min: int = 0


class RoleAllocator:
    """Gives every sequence number a role, or rejects the instance count up front.

    Roles take consecutive ranges in declaration order; the `rest` role (at most one) takes
    whatever the fixed counts leave, and must get at least its `min`.
    """

    def __init__(self, roles: Sequence[RoleSpec]) -> None:
        if sum(r.rest for r in roles) > 1:
            raise UsageError("at most one role may be the rest")
        names = [r.name for r in roles]
        if len(set(names)) != len(names):
            raise UsageError(f"role names repeat: {names}")
        self.roles = list(roles)

    def counts(self, total: int, params: Mapping[str, Any]) -> dict[str, int]:
        """How many instances get each role, for `total` instances; UsageError if none fits."""
        fixed: dict[str, int] = {}
        for r in self.roles:
            if r.rest:
                continue
            n = params.get(r.count) if isinstance(r.count, str) else r.count
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise UsageError(f"role {r.name!r}: count {r.count!r} is not a whole number >= 0")
            if n < r.min:
                raise UsageError(f"role {r.name!r} needs at least {r.min}, got {n}")
            fixed[r.name] = n
        left = total - sum(fixed.values())
        rest = [r for r in self.roles if r.rest]
        if left < 0 or (not rest and left > 0) or (rest and left < rest[0].min):
            want = " + ".join(f"{n} {name}" for name, n in fixed.items())
            if rest and rest[0].min:
                want += f" + at least {rest[0].min} {rest[0].name}"
            elif not rest:  # "need 1 leader" of 2 instances read as if 2 were plenty
                want = f"exactly {want or 0} (no role is the rest)"
            raise UsageError(f"{total} instances cannot be given roles: need {want}")
        return {r.name: (left if r.rest else fixed[r.name]) for r in self.roles}

    def assign(self, total: int, params: Mapping[str, Any]) -> list[str]:
        """The role of each global sequence number 0..total-1."""
        out: list[str] = []
        for name, n in self.counts(total, params).items():
            out += [name] * n
        return out

    def role(self, seq: int, total: int, params: Mapping[str, Any]) -> str:
        """The role of one 0-based global sequence number."""
        if not 0 <= seq < total:
            raise UsageError(f"sequence number {seq} is outside 0..{total - 1}")
        return self.assign(total, params)[seq]
