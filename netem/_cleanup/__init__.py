"""Finding and removing what networks left behind (owner killed, machine crashed)."""

from __future__ import annotations

import os

from netem import _build as build
from netem import _names as names
from netem._cleanup import _manifest as manifests
from netem._errors import NetworkError


def owned_namespaces(prefix: str) -> list[str]:
    """Names in /run/netns that a network with `prefix` created."""
    try:
        entries = os.listdir(names.NETNS_DIR)
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        m = names.OWNED_NETNS_RE.match(entry)
        if m and m["prefix"] == prefix:
            out.append(entry)
    return sorted(out)


def remove_network(prefix: str) -> list[str]:
    """Remove the namespaces and manifest of `prefix`; returns what was removed."""
    removed = build.remove_namespaces(owned_namespaces(prefix))
    if manifests.remove(prefix):
        removed.append(names.manifest_path(prefix))
    return removed


def cleanup(prefix: str | None = None) -> list[str]:
    """Remove leftovers: with `prefix`, everything of that network whoever owns it;
    without, every network whose owner process is dead, and namespaces with a generated
    prefix (`ht` + 6 hex) that no manifest claims; a network whose owner ran in another PID
    namespace stays (`left_alone`). Returns the names and files removed."""
    if (problem := manifests.proc_problem()) is not None:  # pids read there are not ours
        raise NetworkError(f"cannot clean up networks here: {problem}")
    if prefix is not None:
        names.check_prefix(prefix)
        return remove_network(prefix)
    # Namespaces first: a network's manifest exists before its namespaces, so every
    # namespace listed here is claimed by a manifest read below, unless it is an orphan.
    try:
        entries = os.listdir(names.NETNS_DIR)
    except FileNotFoundError:
        entries = []
    removed: list[str] = []
    claimed: set[str] = set()
    for m in manifests.read_all():
        if isinstance(m, str):
            removed += remove_network(m)
        elif m.owner_alive() is not False:  # alive, or cannot tell
            claimed.add(m.prefix)
        else:
            removed += remove_network(m.prefix)
    orphans = set()
    for entry in entries:
        found = names.OWNED_NETNS_RE.match(entry)
        generated = found is not None and names.GENERATED_PREFIX_RE.match(found["prefix"])
        if found is not None and generated and found["prefix"] not in claimed:
            orphans.add(found["prefix"])
    for orphan in sorted(orphans):
        removed += remove_network(orphan)
    return removed


def left_alone() -> list[manifests.Manifest]:
    """The networks `cleanup` leaves whatever becomes of their owner: it ran in another PID
    namespace, so this process cannot tell whether it lives."""
    return [m for m in manifests.read_all()
            if not isinstance(m, str) and m.owner_alive() is None]
