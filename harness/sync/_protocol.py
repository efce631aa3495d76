"""The sync service's wire format: newline-delimited JSON frames (docs/contracts.md, 4)."""

from __future__ import annotations

import enum
from typing import Any

import orjson

MAX_FRAME = 16 * 1024 * 1024
"""The longest frame either side accepts, in bytes (a frame is one line)."""

MAX_QUEUED = 8 * 1024 * 1024
"""The most bytes of replies the service holds for one connection that does not read them,
beyond the batch it is writing to it and the largest frame waiting (which may be of any
size); past it, the connection is dropped with a last `{"id": null, "error": ..., "closed": true}`
frame saying why."""

OPS = frozenset(
    {
        "hello",
        "signal_entry",
        "barrier",
        "signal_and_wait",
        "publish",
        "subscribe",
        "cancel",
        "signal_event",
        "network",
        "fault",
    }
)

CONTROL = "harness:control"
"""The identity of the run's operator on the sync service: a connection that says `hello`
with it and the run's control token (`Tokens.control`, in the run directory's
`control.token`) may send `fault` requests, and nothing else. No instance id has this form
(they are `<group>/<seq>`)."""

MAX_ASKED_BY = 200
"""The longest `by` label a `fault` request may carry (who asked, for the record)."""


class EventType(enum.StrEnum):
    """What an instance reports with `signal_event` (`{"type": ..., ...}`)."""

    START = "start"
    MESSAGE = "message"  # "message": str
    SUCCESS = "success"
    FAILURE = "failure"  # "error": str
    CRASH = "crash"  # "error": str, "stacktrace": str
    METRIC = "metric"  # "name", "value", "kind"


EVENT_TYPES = frozenset(EventType)
OUTCOME_EVENTS = frozenset({EventType.SUCCESS, EventType.FAILURE, EventType.CRASH})
"""The events that settle an instance's outcome (with how its process exits)."""
FAILING_EVENTS = frozenset({EventType.FAILURE, EventType.CRASH})
"""The events that fail an instance, whatever else it records."""

NETWORK_INITIALIZED = "network-initialized"
"""The state the runner signals once for each instance whose network is up."""
HARNESS_TOPIC_PREFIX = "harness:"
"""Topics whose names start with this are the harness's own."""
METRICS_TOPIC = f"{HARNESS_TOPIC_PREFIX}metrics"
"""Where instances announce their metrics endpoints ({"instance", "url"}), for the
supervisor to scrape."""


class ProtocolError(ValueError):
    """A frame that is not a valid request; `request_id` is echoed in the error reply."""

    def __init__(self, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.request_id = request_id


def encode(frame: dict[str, Any]) -> bytes:
    """One frame, newline-terminated."""
    return orjson.dumps(frame) + b"\n"


def decode_request(line: bytes) -> dict[str, Any]:
    """Parse and check one request frame; raise ProtocolError naming what is wrong."""
    try:
        frame = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise ProtocolError(f"frame is not JSON: {e}") from None
    if not isinstance(frame, dict):
        raise ProtocolError("frame is not a JSON object")
    request_id = frame.get("id")
    if request_id is None:
        raise ProtocolError("frame has no 'id' (an integer or a string)", None)
    if isinstance(request_id, bool | list | dict | float):
        # (a float too: orjson reads an integer beyond 64 bits as one)
        raise ProtocolError(f"frame's 'id' is {type(request_id).__name__}, not an integer "
                            "(64 bits) or a string", None)
    op = frame.get("op")
    if op not in OPS:
        raise ProtocolError(f"unknown op {op!r}; known: {', '.join(sorted(OPS))}", request_id)
    _check_fields(frame, op, request_id)
    return frame


def _require(frame: dict[str, Any], key: str, kind: type | tuple[type, ...], rid: Any) -> None:
    value = frame.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProtocolError(f"{frame['op']}: field {key!r} is missing or of the wrong type", rid)


def _check_fields(frame: dict[str, Any], op: str, rid: Any) -> None:
    if op in ("signal_entry", "barrier", "signal_and_wait"):
        _require(frame, "state", str, rid)
    if op in ("barrier", "signal_and_wait"):
        _require(frame, "target", int, rid)
        if frame["target"] < 0:
            raise ProtocolError(f"{op}: target must be >= 0", rid)
    if op == "barrier" and not isinstance(frame.get("watch", False), bool):
        raise ProtocolError("barrier: field 'watch' must be true or false", rid)
    if op in ("publish", "subscribe"):
        _require(frame, "topic", str, rid)
    if op == "subscribe" and frame.get("expect") is not None:
        _require(frame, "expect", int, rid)
        if frame["expect"] < 0:
            raise ProtocolError("subscribe: expect must be >= 0", rid)
    if op == "subscribe" and frame.get("roles") is not None:
        roles = frame["roles"]
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
            raise ProtocolError("subscribe: field 'roles' must be a non-empty list of role "
                                "names", rid)
        if frame.get("expect") is None:
            raise ProtocolError("subscribe: field 'roles' says who publishes what 'expect' "
                                "counts, and needs it", rid)
    if op == "publish" and "payload" not in frame:
        raise ProtocolError("publish: field 'payload' is missing", rid)
    if op == "cancel":
        target = frame.get("target")
        if target is None or isinstance(target, bool | list | dict | float):
            raise ProtocolError("cancel: field 'target' (a request id) is missing", rid)
    if op == "hello":
        _require(frame, "instance", str, rid)
        if frame.get("token") is not None:
            _require(frame, "token", str, rid)
    if op == "signal_event":
        event = frame.get("event")
        if not isinstance(event, dict) or event.get("type") not in EVENT_TYPES:
            raise ProtocolError(
                f"signal_event: 'event' must be an object whose type is one of "
                f"{', '.join(sorted(EVENT_TYPES))}",
                rid,
            )
        if not isinstance(event.get("error", ""), str):
            raise ProtocolError("signal_event: 'error' must be a string", rid)
    if op == "network":
        _require(frame, "config", dict, rid)
    if op == "fault":
        _require(frame, "fault", dict, rid)
        by = frame.get("by")
        if by is not None and (not isinstance(by, str) or not 0 < len(by) <= MAX_ASKED_BY):
            raise ProtocolError(f"fault: 'by' must be a label of 1 to {MAX_ASKED_BY} "
                                "characters", rid)
