"""A queue with one consumer that takes everything queued at once.

Cheaper than an anyio memory stream for a flood of small items: putting one is a deque
append (and, when the box was empty, one event set), and the consumer wakes once per burst.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class Mailbox(Generic[T]):
    """Items in order; `put` never blocks (beyond ``limit`` items, or once closed, an item
    is dropped, as a full send queue drops a frame); `take_all` waits for at least one."""

    def __init__(self, limit: int | None = None) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self._wake = anyio.Event()
        self._closed = False

    def put(self, item: T) -> bool:
        """Queue ``item``; False when it was dropped (full or closed)."""
        if self._closed or (self._limit is not None and len(self._items) >= self._limit):
            return False
        self._items.append(item)
        if len(self._items) == 1:
            self._wake.set()
        return True

    def close(self) -> None:
        """No more items; the consumer gets what is queued, then ``EndOfStream``."""
        self._closed = True
        self._wake.set()

    async def take_all(self) -> list[T]:
        """Every queued item (waiting for one); ``anyio.EndOfStream`` once closed and empty."""
        while not self._items:
            if self._closed:
                raise anyio.EndOfStream
            self._wake = anyio.Event()
            await self._wake.wait()
        items = list(self._items)
        self._items.clear()
        return items
