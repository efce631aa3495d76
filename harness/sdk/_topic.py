"""Typed topics: a name and the dataclass (or JSON type) its messages carry."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
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
        """One message from its JSON form."""
        if dataclasses.is_dataclass(self.kind):
            return cast(T, self.kind(**payload))
        if not isinstance(payload, self.kind):
            raise TypeError(f"topic {self.name!r} carries {self.kind.__name__}, got {payload!r}")
        return payload

    async def publish(self, sync: SyncClient, value: T) -> int:
        """Publish one message; returns its 1-based position."""
        return await sync.publish(self.name, self.encode(value))

    @asynccontextmanager
    async def subscribe(self, sync: SyncClient) -> AsyncIterator[AsyncIterator[T]]:
        """Every message of the topic, decoded, from the first."""
        async with sync.subscribe(self.name) as sub:

            async def items() -> AsyncIterator[T]:
                async for payload in sub:
                    yield self.decode(payload)

            yield items()

    async def collect(self, sync: SyncClient, count: int) -> list[T]:
        """The first `count` messages (waits for them)."""
        out: list[T] = []
        if count <= 0:
            return out
        async with self.subscribe(sync) as items:
            async for item in items:
                out.append(item)
                if len(out) >= count:
                    break
        return out
