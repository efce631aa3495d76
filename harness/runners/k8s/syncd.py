"""`python -m harness.runners.k8s.syncd RUN_JSON PORT`: a run's sync service in the cluster.

Serves the sync protocol over TCP on PORT to the run's instances (each proves itself with
its token, an HMAC under the key in $HARNESS_SYNC_KEY) and prints every event as one JSON
line on stdout, which the runner reads back as the run's events. An instance's `network`
request is published on `network/<instance>` for that instance's shaper, which applies it
in the pod and signals the request's `callback_state` itself. Once every instance has
started, it plays the run's faults with the local runs' conductor, through the pods
(`_actions.ClusterActions`); each step is an event of kind "fault", as locally."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import trio

from harness._conductor import Conductor
from harness.faults import Fault, Member
from harness.observe import JsonlWriter
from harness.runners.k8s._actions import ClusterActions, life_topic
from harness.sync import NETWORK_INITIALIZED, SyncServer, SyncState, Tokens

__all__ = ["NETWORK_TOPIC", "main", "network_topic", "serve"]

NETWORK_TOPIC = "network/{instance}"


def network_topic(instance: str) -> str:
    """Where an instance's network requests go for its shaper."""
    return NETWORK_TOPIC.format(instance=instance)


def _emit(event: dict[str, Any]) -> None:
    event.setdefault("ts", round(time.time(), 6))  # as the local event log stamps them
    sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    sys.stdout.flush()


async def serve(run: dict[str, Any], key: bytes, port: int, host: str = "0.0.0.0") -> None:
    """Serve the run's sync state, and play its faults, until cancelled."""
    # time 0 of the faults: every instance started and every pod's shaper knows every pod
    started: set[str] = set()
    shaped: set[str] = set()
    everyone = trio.Event()

    succeeded: set[str] = set()

    def record(event: dict[str, Any]) -> None:
        _emit(event)
        who = event.get("instance") or ""
        if event.get("kind") == "event" and event.get("type") == "start":
            started.add(who)
        elif event.get("kind") == "event" and event.get("type") == "success":
            succeeded.add(who)
        elif event.get("kind") == "publish" and str(event.get("topic")).startswith(LIFE):
            _life(state, str(event["topic"])[len(LIFE):], state.last_item(event["topic"]),
                  succeeded)
        elif event.get("kind") == "signal" and event.get("state") == NETWORK_INITIALIZED:
            shaped.add(who)
        if len(started) == len(shaped) == len(run["instances"]):
            everyone.set()

    state = SyncState([i["id"] for i in run["instances"]], record=record)
    if not run.get("shaped", True):  # no shaper to say it: ready as they start (local:exec)
        for inst in run["instances"]:
            state.signal_entry(NETWORK_INITIALIZED, inst["id"])
    server = SyncServer(state, tokens=Tokens(key))

    async def forward(instance: str | None, config: dict[str, Any]) -> None:
        if instance is None:
            raise ValueError("say hello with your instance id before asking for a network")
        state.publish(network_topic(instance), config, instance)

    server.network = forward
    faults = [Fault.from_data(f) for f in run.get("faults") or ()]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_tcp, (host, port))
        if faults:
            await everyone.wait()
            members = [Member(i["id"], i["group"], i.get("role") or "")
                       for i in run["instances"]]
            actions = ClusterActions(state, [m.id for m in members])
            conductor = Conductor(
                faults, members, actions, state, _emit,
                JsonlWriter(Path("/tmp/faults.jsonl")),
                lambda reason: _emit({"kind": "run-failed", "reason": reason}))
            nursery.start_soon(conductor.run)


LIFE = life_topic("")
"""What the topics start with on which each instance's agent says its process started or
exited."""


def _life(state: SyncState, instance: str, life: Any, succeeded: set[str]) -> None:
    """What an agent said on its `life_topic`, told to the state as the local supervisor
    tells it: barriers and subscriptions that can no longer be met because the instance
    ended fail at once, naming it, instead of at the run's timeout."""
    if not isinstance(life, dict):
        return
    if life.get("running"):
        state.instance_revived(instance)
        return
    code = life.get("code")
    how = life.get("by") or ("passed" if code == 0 and instance in succeeded
                             else f"exit code {code}")
    state.instance_ended(instance, str(how))


def main() -> None:
    """Entry point of the sync service's container."""
    run = orjson.loads(Path(sys.argv[1]).read_bytes())
    key = bytes.fromhex(os.environ["HARNESS_SYNC_KEY"])
    trio.run(serve, run, key, int(sys.argv[2]))


if __name__ == "__main__":
    main()
