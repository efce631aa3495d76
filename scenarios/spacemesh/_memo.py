"""Results of pure functions kept per process, bounded.

A simulation runs every node in one process: what is a pure function of a message (a
signature's verdict, an ATX's proofs) or of a state (its root) is then computed once for
all of them. A real node pays one lookup for its own cache.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def once(cache: dict[K, V], key: K, compute: Callable[[], V], limit: int) -> V:
    """`compute()`'s result for `key`, computed once while it is kept (`cache` is emptied
    when it holds `limit` results)."""
    known = cache.get(key)
    if known is None:
        if len(cache) >= limit:
            cache.clear()
        known = cache[key] = compute()
    return known
