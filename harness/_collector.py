"""Fewer walks of the cycle collector for a process whose heap is large and long-lived."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_open: list[int] = []
"""The `young` of every block open now, in any order (simulated clusters may overlap)."""
_given = [700, 10, 10]
"""The thresholds before the first open block, to give back when the last one ends (kept
in place: an object replaced here might have been frozen by the program)."""
_froze = False


@contextlib.contextmanager
def fewer_collections(young: int = 10_000) -> Iterator[None]:
    """While the block runs, what exists at its start (the modules, their functions and
    constants) is left out of the cycle collector's walks, and a young collection comes every
    `young` allocations (or more) instead of 700; both are given back when the last such
    block ends, however it ends.

    CPython's collector walks every object of the generations it collects. A process that
    keeps much (a supervisor of 1,000 instances, a simulated network of 100 nodes) pays
    for walks that find almost nothing: 0.5 to 0.7 s of the supervisor's CPU at 1,000
    instances, a quarter to a third of a 100-node simulation's. Cycles are still collected,
    only less often."""
    global _froze
    if not _open:
        _given[:] = gc.get_threshold()
        _froze = gc.get_freeze_count() == 0  # a program that froze objects keeps them so
        if _froze:
            gc.freeze()
    _open.append(young)
    _apply()
    try:
        yield
    finally:
        _open.remove(young)
        _apply()
        if not _open and _froze:
            gc.unfreeze()


def _apply() -> None:
    gc.set_threshold(max([*_open, _given[0]]), *_given[1:])
