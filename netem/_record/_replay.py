"""`replay`: a network rebuilt from its record, with the same hosts and final policy."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netem._backends._base import Backend, Pair
from netem._errors import RequestError
from netem._shape import LinkShape

if TYPE_CHECKING:
    from netem._network import Network


def _shape(raw: Any) -> LinkShape | None:
    return None if raw is None else LinkShape.from_dict(raw)


def read_record(path: Path | str) -> list[dict[str, Any]]:
    """The record's lines, checked to be JSON objects with an `op`."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError as e:
                raise RequestError(f"{path}:{number}: not JSON ({e})") from None
            if not isinstance(line, dict) or not isinstance(line.get("op"), str):
                raise RequestError(f"{path}:{number}: a record line needs an op")
            lines.append(line)
    return lines


def replay(
    record: Path | str,
    *,
    prefix: str | None = None,
    backend: Backend | str = "none",
    dry_run: bool = False,
) -> Network:
    """Build a new network like the recorded one and apply its changes in order.

    The new network has its own prefix (the recorded one may still be alive), the recorded
    subnet and host numbers, hence the same addresses, and ends with the same matrix and
    drops. The caller closes it. `dry_run=True` rebuilds the state without namespaces.
    """
    from netem._network import Network

    lines = read_record(record)
    builds = [ln for ln in lines if ln["op"] == "build"]
    if not builds:
        raise RequestError(f"{record}: the record has no build line")
    subnet = builds[0]["applied"]["subnet"]
    net = Network(prefix=prefix, subnet=subnet, backend=backend, dry_run=dry_run)
    try:
        for number, line in enumerate(lines, 1):
            try:
                _apply(net, line)
            except (KeyError, TypeError, ValueError) as e:
                if isinstance(e, RequestError):
                    raise RequestError(f"{record}:{number}: {e}") from None
                raise RequestError(
                    f"{record}:{number}: malformed {line['op']} line ({e!r})"
                ) from None
    except BaseException:
        net.close()
        raise
    return net


def replay_states(
    lines: Iterable[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], dict[Pair, LinkShape], frozenset[Pair]]]:
    """Each line of a record with the network's state right after it: its matrix (shape
    per direction) and its drops. Rebuilt without namespaces; lines before the build line,
    and lines that do not apply, are passed over."""
    from netem._network import Network

    net: Network | None = None
    try:
        for line in lines:
            if line.get("op") == "build" and net is None:
                net = Network(subnet=line["applied"]["subnet"], backend="none", dry_run=True)
            if net is None:
                continue
            try:
                _apply(net, line)
            except (KeyError, TypeError, ValueError):
                continue
            yield line, net.matrix(), net.drops()
    finally:
        if net is not None:
            net.close()


def _apply(net: Network, line: dict[str, Any]) -> None:
    op, asked, who = line["op"], line.get("asked") or {}, line.get("asked_by", "replay")
    if op == "build":
        net.build(int(asked["count"]), asked_by=who)
    elif op == "default":
        net.set_default(asked["host"], _shape(asked["shape"]), asked_by=who)
    elif op == "rule":
        net.set_rule(asked["src"], asked["dst"], _shape(asked["shape"]), asked_by=who)
    elif op == "partition":
        net.partition(set(asked["a"]), set(asked["b"]), oneway=bool(asked["oneway"]), asked_by=who)
    elif op == "heal":
        a, b = asked.get("a"), asked.get("b")
        net.heal(None if a is None else set(a), None if b is None else set(b), asked_by=who)
    elif op == "cut":
        net.cut([tuple(p) for p in asked["pairs"]], asked_by=who)
    elif op == "uncut":
        net.uncut([tuple(p) for p in asked["pairs"]], asked_by=who)
    elif op == "override":
        net.override({(a, b): _shape(s) for a, b, s in asked["shapes"]}, asked_by=who)
    elif op == "request":
        net.apply_request(asked["host"], asked["config"], asked_by=who)
    elif op in ("close", "backend-failed", "backend-note"):  # no change of the policy
        pass
    else:
        raise RequestError(f"unknown op {op!r}")
