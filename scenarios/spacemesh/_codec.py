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


def hash_json(value: Json) -> str:
    """Hex id of a JSON value: the SHA-256 of its canonical encoding."""
    return hashlib.sha256(canonical(value)).hexdigest()
