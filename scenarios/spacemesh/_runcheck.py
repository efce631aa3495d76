"""What a Spacemesh run's params must satisfy together, checked before anything starts
(the manifest's `check`, harness.plans._plancheck) and again by every instance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.faults import FaultSchedule


def check(p: Mapping[str, Any], instances: int, timeout_s: float | None = None) -> None:
    """ValueError naming the first param the run's `instances` cannot satisfy: a fault
    schedule that is malformed or names nodes the network lacks, more late miners or
    dishonest nodes than there are (they would be bent silently), a `shared_keys` that makes
    no pair; or params that cannot hold together: late miners that start after the last
    layer to verify (the run would wait for its timeout), a checkpoint past it (no node
    applies that layer), `layers` within the first epoch (no layer can have a block, and
    the ATXs may not have come), a `min_blocks` above the layers that can have one, or more
    layers (or a `judge_after`) than the run's `timeout_s` leaves time for (it would wait
    for that timeout, then fail)."""
    nodes = instances - int(p["poets"])
    schedule = str(p.get("schedule") or "")
    if schedule:
        FaultSchedule.from_json(schedule).check(nodes)  # FaultScheduleError: a ValueError
    miners = nodes - int(p["gateways"])
    if int(p.get("late", 0)) > miners:
        raise ValueError(f"late={p['late']}: the network has only {miners} miners")
    shared = float(p.get("shared_keys", 0))
    if shared and not equivocator_pairs(miners, shared):
        raise ValueError(f"shared_keys={shared:g}: {shared:g}% of the network's {miners} miners "
                         f"makes no pair sharing a key: nothing to detect (run more miners)")
    if int(p.get("dishonest", 0)) > nodes:
        raise ValueError(f"dishonest={p['dishonest']}: the network has only {nodes} nodes")
    layers = int(p["layers"])
    if layers < int(p["layers_per_epoch"]):
        # Epoch 0 has no ATXs, so no proposals; its miners' first ATXs come once its PoET
        # round ends. The same rule as the simulation's `--layers`.
        raise ValueError(f"layers={layers}: must reach past the first epoch "
                         f"(layers_per_epoch={p['layers_per_epoch']}): no layer before can "
                         f"have a block, and the ATX check would fail")
    can_have = layers - int(p["layers_per_epoch"]) + 1  # epoch 1's first to the target
    if int(p.get("min_blocks", 0)) > can_have:  # (it ran the whole case, then failed)
        raise ValueError(f"min_blocks={p['min_blocks']}: only {can_have} layers can have a "
                         f"block (layers {p['layers_per_epoch']}-{layers})")
    if int(p.get("late", 0)) and int(p.get("late_layers", 0)) >= layers:
        raise ValueError(f"late_layers={p['late_layers']}: the late miners must start before "
                         f"the last layer to verify (layers={layers})")
    if int(p.get("checkpoint_layer", 0)) > layers:
        raise ValueError(f"checkpoint_layer={p['checkpoint_layer']}: past the last layer to "
                         f"verify (layers={layers})")
    if timeout_s is not None:
        # No node can have verified the last layer before it has ended: a lower bound, so
        # a run refused here could never have passed.
        offset, length = float(p["genesis_offset"]), float(p["layer_duration"])
        least = offset + (layers + 1) * length
        judge_after = float(p.get("judge_after", 0))
        if offset + judge_after > timeout_s:  # no node is judged before it
            raise ValueError(f"judge_after={judge_after:g}s: with genesis_offset={offset:g}s, "
                             f"past the run's timeout of {timeout_s:g}s (raise --timeout, or "
                             "judge earlier)")
        if least > timeout_s:
            raise ValueError(
                f"layers={layers}: the last one ends {least:g}s after the instances start "
                f"(genesis_offset={offset:g}s, then {layers + 1} layers of {length:g}s), past "
                f"the run's timeout of {timeout_s:g}s (raise --timeout, or run fewer layers)")


def equivocator_pairs(miners: int, shared_keys: float) -> int:
    """How many pairs of `miners` share a key at `shared_keys` percent of them."""
    return int(miners * shared_keys / 100) // 2
