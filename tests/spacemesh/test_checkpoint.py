"""Checkpoint: a network restarted from the accounts and ATXs at a layer goes on from there."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import orjson
import pytest

from scenarios.spacemesh import MeshParams, NodeConfig, _cluster, memory_cluster
from scenarios.spacemesh._checkpoint import parse_checkpoint
from scenarios.spacemesh._keys import Signer
from scenarios.spacemesh._mesh import Mesh
from scenarios.spacemesh._node import Node
from scenarios.spacemesh._txs import address_of, spawn_tx, spend_tx

ALICE = Signer("alice")
A, B = address_of(ALICE.public_hex), address_of(Signer("bob").public_hex)
PARAMS = MeshParams(layers_per_epoch=3, pow_bits=4, genesis_accounts=((A, 1_000_000),))
AT = 10


def test_a_tampered_checkpoint_is_refused() -> None:
    cp = {"version": 1, "layer": 3, "state_root": "00", "accounts": {}, "atxs": [], "poets": []}
    with pytest.raises(ValueError, match="state_root does not match"):
        parse_checkpoint(cp)
    with pytest.raises(ValueError, match="version 1"):
        parse_checkpoint({"layer": 3})


@pytest.mark.anyio
async def test_network_restarted_from_a_checkpoint_keeps_its_state_and_goes_on(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with memory_cluster(miners=4, seed=8, layer_duration=2.0, params=PARAMS) as c:
        gw = c.gateways[0]
        await c.clock.sleep_until(gw.layer_start(4))
        gw.submit_tx(spawn_tx(ALICE, 0, 100))
        gw.submit_tx(spend_tx(ALICE, B, 7000, 1, 10))
        await c.clock.sleep_until(gw.layer_start(AT + 4))
        checkpoint = gw.checkpoint(AT)
        root = gw.layers()[AT].state_root
        with pytest.raises(ValueError, match="not applied"):
            gw.checkpoint(AT + 100)
        # Applied but not verified: its block may still change, so no checkpoint of it.
        status = gw.status()
        assert status["synced_layer"] > status["verified_layer"], status
        with pytest.raises(ValueError, match="not verified"):
            gw.checkpoint(status["synced_layer"])
    assert checkpoint["accounts"][A]["nonce"] == 2 and checkpoint["atxs"]
    assert checkpoint["state_root"] == root.hex()
    path = tmp_path / "checkpoint.json"
    path.write_bytes(orjson.dumps(checkpoint))

    def config(**kwargs: Any) -> NodeConfig:
        return NodeConfig(**kwargs, checkpoint=str(path))

    monkeypatch.setattr(_cluster, "NodeConfig", config)
    async with memory_cluster(miners=4, seed=8, layer_duration=2.0, params=PARAMS) as c:
        gw = c.gateways[0]
        await c.clock.sleep_until(gw.layer_start(AT + 1))
        spent = gw.submit_tx(spend_tx(ALICE, B, 500, 2, 10))
        await c.clock.sleep_until(gw.layer_start(AT + 8))
        roots = [[s.state_root for s in n.layers()[: AT + 5]] for n in c.nodes]
        accounts = [n.accounts() for n in c.nodes]
        tx_state = gw.tx_state(spent[0])
        blocks_after = [s for s in gw.layers()[AT + 1 :] if s.block is not None]
    assert all(r == roots[0] for r in roots) and len(roots[0]) == AT + 5
    assert roots[0][AT] == root  # the same state at the checkpoint's layer
    assert all(a == accounts[0] for a in accounts)
    alice = checkpoint["accounts"][A]
    assert tx_state == "applied" and accounts[0][A] == (alice["balance"] - 510, 3)
    supply = sum(x["balance"] for x in checkpoint["accounts"].values())
    assert blocks_after and sum(b for b, _ in accounts[0].values()) > supply  # it went on


@pytest.mark.anyio
async def test_miners_recovered_from_a_checkpoint_in_a_running_network_reach_its_state(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 30-instance case in small: a checkpoint at layer 4 (epoch 1) from the gateway,
    # half the miners restarted from it with no state while the others go on.
    at, path = 4, tmp_path / "checkpoint.json"
    recovering: set[str] = set()

    class Recovering(Node):
        def __init__(self, config: NodeConfig, **kwargs: Any) -> None:
            if config.listen in recovering:
                config = dataclasses.replace(config, checkpoint=str(path))
            super().__init__(config, **kwargs)

    monkeypatch.setattr(_cluster, "Node", Recovering)
    # No certificate counts (as under load, where the hare's votes differ): the tortoise
    # alone decides every layer after the checkpoint, from the votes of the ATXs it holds.
    mesh_add = Mesh.add

    def no_certificates(self: Mesh, kind: str, msg: Any) -> bool:
        return kind != "certificate" and mesh_add(self, kind, msg)

    monkeypatch.setattr(Mesh, "add", no_certificates)
    async with memory_cluster(miners=6, seed=3, layer_duration=2.0, params=PARAMS) as c:
        gw = c.gateways[0]
        while True:
            await c.clock.sleep_until(c.clock.now() + 0.5)
            if gw.status()["verified_layer"] >= at:
                break
        path.write_bytes(orjson.dumps(gw.checkpoint(at)))
        restarted = [p for p in c.node_processes() if p.role == "miner"][:3]
        for proc in restarted:
            recovering.add(_cluster_listen(proc.part))
            await c.start(proc.id)
        # Their API is polled meanwhile (as the plan's watch does): they decide and
        # execute layers while the sync still brings in what they lack.
        while c.clock.now() < gw.layer_start(at + 12):
            for n in c.nodes:
                n.layers()
            await c.clock.sleep_until(c.clock.now() + 0.05)
        states = [n.layers() for n in c.nodes]
        accounts = [n.accounts() for n in c.nodes]
    assert [p.part.config.checkpoint for p in restarted] == [str(path)] * 3
    n = min(len(s) for s in states)
    assert n > at + 8
    for s in states:
        assert [x.block_id for x in s[at:n]] == [x.block_id for x in states[0][at:n]]
        assert [x.state_root for x in s[at:n]] == [x.state_root for x in states[0][at:n]]
    assert all(a == accounts[0] for a in accounts)


def _cluster_listen(node: Any) -> str:
    assert isinstance(node, Node)
    return node.config.listen
