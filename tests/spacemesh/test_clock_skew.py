"""A clock fault reaches the Spacemesh node: under the harness its protocol reads the SDK's
clock (skewed by the supervisor's clock file), in the simulation the event loop's."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness import sdk
from harness._clock import InstanceClock
from scenarios.spacemesh import HarnessClock, Node, NodeConfig, WallClock
from scenarios.spacemesh._memnet import MemoryNetwork


def _node(clock: HarnessClock | WallClock, genesis: float) -> Node:
    config = NodeConfig(identity="n0", listen="n0:1", genesis=genesis, layer_duration=2.0)
    return Node(config, transport=MemoryNetwork().transport(config.listen), clock=clock,
                poets=[])  # fmt: skip


def test_the_nodes_layer_follows_its_instances_clock_skew(tmp_path: Path) -> None:
    supervisor = InstanceClock(tmp_path, "sm-0")
    genesis = time.time()
    node = _node(HarnessClock(sdk.Clock(supervisor.path, check_every=0)), genesis)
    assert node.current_layer() == 0
    supervisor.set(21.0)  # ten layers and a half ahead
    assert node.current_layer() == 10
    supervisor.set(0.0)
    assert node.current_layer() == 0
    assert _node(WallClock(), genesis).current_layer() == 0  # the real clock: no skew


def test_a_real_process_takes_its_clock_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = InstanceClock(tmp_path, "sm-0")
    supervisor.set(-3600.0)
    monkeypatch.setenv("TEST_CLOCK_FILE", str(supervisor.path))
    assert HarnessClock.from_environ().now() == pytest.approx(time.time() - 3600, abs=1)
    monkeypatch.delenv("TEST_CLOCK_FILE")
    assert HarnessClock.from_environ().now() == pytest.approx(time.time(), abs=1)
    assert "TEST_CLOCK_FILE" not in os.environ
