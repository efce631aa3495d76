"""What a NATS run's params must satisfy, checked before anything starts (the manifest's
`check`, harness.plans._plancheck)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
"""NATS's advice for a stream's name: it names a subject and a directory of every server,
so letters, digits, '_' and '-', under 32 characters (docs.nats.io, "Naming Streams")."""


def check(p: Mapping[str, Any], instances: int) -> None:
    """ValueError naming a stream name NATS would refuse or its servers could not store (an
    instance found it only after the network was built, and a long one hung the clients
    until the run's timeout). `instances` is not needed: the roles check the run's size."""
    stream = str(p["stream"])
    if not STREAM_NAME.fullmatch(stream):
        raise ValueError(f"stream={stream!r}: a stream's name is 1 to 32 letters, digits, "
                         "'_' or '-'")
