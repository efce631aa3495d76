"""A queue with one consumer that takes everything queued at once.

Cheaper than an anyio memory stream for a flood of small items: putting one is a deque
append (and, when the consumer waits, one wake-up), and the consumer wakes once per burst.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

T = TypeVar("T")


def trio_task() -> Any:
    """The current trio task, or None when trio is not what runs this code (asyncio, or
    no event loop). Under trio, waking a task directly (`trio.lowlevel.reschedule`) is the
    same scheduling step as setting an ``anyio.Event`` it waits on (trio's ``Event.set``
    reschedules each waiter), without creating two event objects per wait."""
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        return trio.lowlevel.current_task()
    except RuntimeError:
        return None


class Mailbox(Generic[T]):
    """Items in order; `put` never blocks (beyond ``limit`` items, or once closed, an item
    is dropped, as a full send queue drops a frame); `take_all` waits for at least one."""

    def __init__(self, limit: int | None = None) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self.on_first: Callable[[], object] | None = None
        """Called, instead of waking a consumer, when an item arrives in the empty mailbox:
        for a consumer that drains many mailboxes (`take_now`) in one task."""
        self._closed = False
        self._waiter: Any = None
        """The trio task parked in `take_all` (trio only)."""
        self._wake: asyncio.Future[None] | None = None
        """What `take_all` waits on under asyncio: a future of the loop's own, not an
        ``anyio.Event`` (two objects and a look-up of the backend per wait)."""
        self._trio = True
        """False once `take_all` found it runs on another event loop (asking trio for the
        current task there raises, which costs more than the rest of a wake-up)."""
        self._consumer: Callable[[T], bool] | None = None
        """What `consume` hands each item to as it is put."""
        self._failure: Exception | None = None
        """What the consumer raised, for `consume` to raise."""

    def put(self, item: T) -> bool:
        """Queue ``item``; False when it was dropped (full or closed)."""
        items = self._items
        if self._closed or (self._limit is not None and len(items) >= self._limit):
            return False
        consumer = self._consumer
        if consumer is not None:
            self._hand(consumer, item)
            return True
        items.append(item)
        if len(items) == 1:
            if self.on_first is not None:
                self.on_first()
            else:
                self._notify()
        return True

    def _hand(self, consumer: Callable[[T], bool], item: T) -> None:
        try:
            keep = consumer(item)
        except Exception as exc:  # raised in `consume`, the consumer's own task
            self._failure, keep = exc, False
        if not keep:
            self._consumer = None
            self._notify()

    def close(self) -> None:
        """No more items; the consumer gets what is queued, then ``EndOfStream``."""
        self._closed = True
        self._notify()

    def _notify(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            sys.modules["trio"].lowlevel.reschedule(waiter)
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    @property
    def waiting(self) -> bool:
        """True while the consumer waits in `take_all`."""
        return self._waiter is not None or (self._wake is not None and not self._wake.done())

    async def take_all(self) -> list[T]:
        """Every queued item (waiting for one); ``anyio.EndOfStream`` once closed and empty."""
        while not self._items:
            if self._closed:
                raise anyio.EndOfStream
            task = trio_task() if self._trio else None
            if task is not None:
                await self._park(task)
            else:
                self._trio = False
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake
        return self.take_now()

    def take_now(self) -> list[T]:
        """Every queued item, without waiting (none: an empty list)."""
        items = list(self._items)
        self._items.clear()
        return items

    async def consume(self, handle: Callable[[T], bool]) -> None:
        """Hand every item to ``handle`` (what is queued first), until the mailbox is
        closed or ``handle`` returns False; what ``handle`` raises is raised here.

        Under trio each item is handed over inside `put`, in the putter's task, while
        the consumer stays parked: no task switch per item. Once the consumer's task is
        cancelled nothing more is handed over (the cancellation stops it at once, not when
        the task next runs). Elsewhere it takes the items as `take_all` does."""
        task = trio_task() if self._trio else None
        while task is None or self._items:
            try:
                items = await self.take_all()
            except anyio.EndOfStream:
                return
            for at, item in enumerate(items):
                keep = False
                try:
                    keep = handle(item)
                finally:
                    if not keep:  # stopped or raised: what was not handed stays queued
                        self._items.extendleft(reversed(items[at + 1 :]))
                if not keep:
                    return
        if self._closed:
            return
        self._consumer = handle
        try:
            while self._consumer is not None and not self._closed:
                await self._park(task)
        finally:
            self._consumer = None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    async def _park(self, task: Any) -> None:
        lowlevel = sys.modules["trio"].lowlevel
        self._waiter = task

        def abort(_: Any) -> Any:
            if self._waiter is task:
                self._waiter = None
                self._consumer = None  # a cancelled consumer takes nothing more
            return lowlevel.Abort.SUCCEEDED

        await lowlevel.wait_task_rescheduled(abort)
