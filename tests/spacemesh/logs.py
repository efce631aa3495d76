"""Reading and checking the Spacemesh roles' structured logs (shared by the run tests)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

EVENTS = {
    "node started",
    "peer connected",
    "peer lost",
    "poet started",
    "poet round opened",
    "poet round closed",
    "poet proof broadcast",
    "poet challenge submitted",
    "poet unreachable",
    "poet proof received",
    "atx published",
    "atx not published",
    "layer verified",
    "layer hash changed",
    "hare timeout",
}
"""Every event the protocol code logs at info or above (documented in docs/spacemesh.md)."""


def run_logs(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each instance's log records (``<group>/<seq>/log.jsonl``), by instance id."""
    logs = {}
    for path in sorted(run_dir.glob("*/*/log.jsonl")):
        lines = path.read_text().splitlines()
        logs[f"{path.parent.parent.name}/{path.parent.name}"] = [json.loads(x) for x in lines if x]
    return logs


def check_run_logs(run_dir: Path, target: int) -> dict[str, list[dict[str, Any]]]:
    """Assert that a passed run's logs tell its story: every node started, every miner
    published an ATX, every node logged each layer up to ``target`` verified once, with the
    same hash everywhere, and each PoET closed a round and broadcast its proof."""
    run = json.loads((run_dir / "run.json").read_text())
    roles = {i["id"]: i["role"] for i in run["instances"]}
    logs = run_logs(run_dir)
    assert set(logs) == set(roles)
    hashes: dict[int, set[str]] = defaultdict(set)
    for instance, records in logs.items():
        events = [r["event"] for r in records if r.get("logger", "").startswith("spacemesh.")]
        assert set(events) <= EVENTS, (instance, set(events) - EVENTS)
        if roles[instance] == "poet":
            assert {"poet started", "poet round closed", "poet proof broadcast"} <= set(events)
            continue
        assert events.count("node started") == 1 and "peer connected" in events, instance
        if roles[instance] == "miner":
            assert "poet challenge submitted" in events and "atx published" in events, instance
        verified = [r for r in records if r["event"] == "layer verified"]
        layers = [r["layer"] for r in verified]
        assert len(layers) == len(set(layers)), instance  # once per layer
        assert set(range(target + 1)) <= set(layers), (instance, layers)
        for r in verified:
            hashes[r["layer"]].add(r["hash"])
    assert all(len(h) == 1 for h in hashes.values()), hashes
    return logs
