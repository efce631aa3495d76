"""The node's log never lags its API: whatever the API reports verified is already logged."""

from __future__ import annotations

import time
from typing import Any

from scenarios.spacemesh import Node, NodeConfig
from scenarios.spacemesh._memnet import MemoryNetwork

from .clocks import FixedClock


def test_a_layer_the_api_reports_verified_is_logged_before_the_reply(
    logs: list[dict[str, Any]],
) -> None:
    genesis = time.time() - 100
    clock = FixedClock(genesis + 3 * 2.0 + 0.5)
    config = NodeConfig(identity="n0", listen="n0:1", genesis=genesis, layer_duration=2.0)
    node = Node(config, transport=MemoryNetwork().transport(config.listen), clock=clock,
                poets=[])  # fmt: skip
    for layers_later in (0, 4, 9):  # the API asked between layer starts, no layer loop
        clock.t += layers_later * 2.0
        verified = node.status()["verified_layer"]
        logged = [r["layer"] for r in logs if r["event"] == "layer verified"]
        assert verified > 0 and set(range(verified + 1)) <= set(logged), (verified, logged)
    assert len(logged) == len(set(logged))  # once per layer
