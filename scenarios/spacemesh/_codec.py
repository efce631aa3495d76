"""Canonical encoding and hashing shared by every message of the protocol."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

Json = Any
"""A JSON value as decoded by orjson (dict, list, str, int, float, bool, None)."""


def canonical(value: Json) -> bytes:
    """The one byte encoding of a JSON value that every node hashes and signs."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def decode(data: bytes) -> Json:
    """Decode a JSON value; raises ``orjson.JSONDecodeError`` (a ``ValueError``)."""
    return orjson.loads(data)


def h(*parts: bytes | str | int) -> bytes:
    """SHA-256 over the parts, each length-prefixed so that concatenations cannot collide."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, int):
            raw = part.to_bytes(8, "big", signed=True)
        elif isinstance(part, str):
            raw = part.encode()
        else:
            raw = part
        digest.update(len(raw).to_bytes(4, "big"))
        digest.update(raw)
    return digest.digest()


_SHARED: dict[int, list[Any]] = {}
"""Values declared `share`d, by their ``id()``: [the value (kept alive, so that its id
names no other object), its hash once computed]."""
_SHARED_LIMIT = 8192


def share(value: Json) -> Json:
    """Declare ``value`` (a decoded message) held by many and never changed again, so that
    `hash_json` hashes it once for all of them: the nodes of a simulation are each handed
    the very same decoded message, and each hashed it to check and to store it."""
    if isinstance(value, dict | list):
        if len(_SHARED) >= _SHARED_LIMIT:
            _SHARED.clear()
        _SHARED.setdefault(id(value), [value, None])
    return value


def hash_json(value: Json) -> str:
    """Hex id of a JSON value: the SHA-256 of its canonical encoding."""
    entry = _SHARED.get(id(value))
    if entry is None or entry[0] is not value:
        return hashlib.sha256(canonical(value)).hexdigest()
    if entry[1] is None:
        entry[1] = hashlib.sha256(canonical(value)).hexdigest()
    return str(entry[1])
