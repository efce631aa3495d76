"""Typed topics: a name and the dataclass (or JSON type) its messages carry."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar, cast

from harness.sync import SyncClient

T = TypeVar("T")


class Topic(Generic[T]):
    """`Topic("addrs", PeerAddr)`: publish and receive PeerAddr objects, not raw JSON."""

    def __init__(self, name: str, kind: type[T]) -> None:
        self.name = name
        self.kind = kind

    def encode(self, value: T) -> Any:
        """The JSON form of one message."""
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return value

    def decode(self, payload: Any) -> T:
        """One message from its JSON form; TypeError naming the topic for one that is not
        of its kind (JSON has one kind of number: an int is a float's too, a bool is no
        int)."""
        kind = self.kind
        if dataclasses.is_dataclass(kind):
            try:
                return cast(T, kind(**payload))
            except TypeError as e:  # not a mapping, or not the dataclass's fields
                raise TypeError(f"topic {self.name!r} carries {kind.__name__}, got "
                                f"{payload!r:.200}: {e}") from None
        if kind is float and isinstance(payload, int) and not isinstance(payload, bool):
            return cast(T, float(payload))
        if not isinstance(payload, kind) or (isinstance(payload, bool) and kind is not bool):
            raise TypeError(f"topic {self.name!r} carries {kind.__name__}, got {payload!r:.200}")
        return payload

    async def publish(self, sync: SyncClient, value: T) -> int:
        """Publish one message; returns its 1-based position."""
        return await sync.publish(self.name, self.encode(value))

    @asynccontextmanager
    async def subscribe(
        self, sync: SyncClient, *, expect: int | None = None, roles: Sequence[str] | None = None
    ) -> AsyncIterator[AsyncIterator[T]]:
        """Every message of the topic, decoded, from the first; `expect` and `roles` as in
        `SyncClient.subscribe`."""
        async with sync.subscribe(self.name, expect=expect, roles=roles) as sub:

            async def items() -> AsyncIterator[T]:
                async for payload in sub:
                    yield self.decode(payload)

            yield items()

    async def collect(
        self, sync: SyncClient, count: int, *, one_per_instance: bool = False,
        roles: Sequence[str] | None = None,
    ) -> list[T]:
        """The first `count` messages (waits for them).

        `one_per_instance`: each instance publishes at most one message here, so waiting
        fails with SubscriptionFailed, naming the instances that ended without publishing,
        as soon as too few are left to make up `count`. `roles` (with it): only instances
        of these roles publish here (a server that collects its clients' results)."""
        if roles is not None and not one_per_instance:
            raise ValueError("collect: roles counts the instances that publish once; give "
                             "one_per_instance=True too")
        out: list[T] = []
        if count <= 0:
            return out
        expect = count if one_per_instance else None
        async with self.subscribe(sync, expect=expect, roles=roles) as items:
            async for item in items:
                out.append(item)
                if len(out) >= count:
                    break
        return out
