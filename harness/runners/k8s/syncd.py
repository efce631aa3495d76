"""`python -m harness.runners.k8s.syncd RUN_JSON PORT`: a run's sync service in the cluster.

Serves the sync protocol over TCP on PORT to the run's instances (each proves itself with
its token, an HMAC under the key in $HARNESS_SYNC_KEY) and prints every event as one JSON
line on stdout, which the runner reads back as the run's events. An instance's `network`
request is published on `network/<instance>` for that instance's shaper, which applies it
in the pod and signals the request's `callback_state` itself. Once every instance has
started, it plays the run's faults with the local runs' conductor, through the pods
(`_actions.ClusterActions`); each step is an event of kind "fault", as locally. Unless
the run says `"fail_fast": false` (`--no-fail-fast`), the first instance that fails (a
failure or crash it recorded, or its process ended without a fault and without passing)
ends the others `FAIL_FAST_GRACE_S` later, as the local supervisor does: each agent is told
to end its instance (SIGTERM, then SIGKILL after `STOP_GRACE_S`), in an event of kind
"phase" named "stopping" that names them, the reason and the first failure. On
`TIMEOUT_SIGNAL` (the runner's `TIMEOUT_COMMAND`, run in this container once the run's
timeout has passed) it ends every instance not over the same way, as "still running at the
run's timeout", each with where it waited, so that each agent packs its instance's outputs
before the runner collects them. On `ENDED_SIGNAL` (the runner's `ended_command`) it takes
the instances the runner failed itself, whose agents never said so (a pod that cannot
start, or was deleted), from `ENDED_FILE`: each ends as if its agent had said it exited,
so what waits on it fails at once and, unless the run says otherwise, it stops the rest.
A "stop" line there (the runner's `interrupt_command`, at a Ctrl-C) ends every instance not
over as the timeout does, as "interrupted"."""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import trio

from harness._conductor import Conductor
from harness._outcome import still_running_at_timeout
from harness.faults import Fault, Member
from harness.observe import JsonlWriter
from harness.runners.k8s._actions import ClusterActions, fault_topic, life_topic
from harness.sync import NETWORK_INITIALIZED, SyncServer, SyncState, Tokens
from harness.sync._protocol import FAILING_EVENTS

__all__ = ["NETWORK_TOPIC", "TIMEOUT_COMMAND", "ended_command", "exit_fails",
           "interrupt_command", "main", "network_topic", "serve"]

NETWORK_TOPIC = "network/{instance}"
FAIL_FAST_GRACE_S = 1.0  # the local supervisor's RunOptions.grace_s
STOP_GRACE_S = 3.0  # SIGTERM, then SIGKILL this much later: the supervisor's _KILL_AFTER_S
TIMEOUT_SIGNAL = signal.SIGUSR1
ENDED_SIGNAL = signal.SIGUSR2
ENDED_FILE = "/tmp/ended.jsonl"
"""Where `ended_command` and `interrupt_command` write, in the sync container: a JSON line
per instance the runner failed, {"instance": ID, "why": REASON}, or {"stop": REASON}."""
INTERRUPTED = "interrupted"
"""The reason of the instances a Ctrl-C of the runner ends, as locally."""


def _signal_command(sig: signal.Signals, what: str, pid: int, patience_s: float,
                    before: str = "") -> tuple[str, ...]:
    """A command that runs `before` (Python), then sends `sig` to process `pid` once it
    takes it (its handler is set: /proc's SigCgt), for up to `patience_s`: before, the
    signal's default would end it. Exits 1 saying so (`what` names the signal) if it never
    does."""
    bit = 1 << (sig.value - 1)
    script = (
        "import os, sys, time\n"
        f"{before}"
        f"end = time.monotonic() + {patience_s!r}\n"
        "while time.monotonic() < end:\n"
        f"    status = open('/proc/{pid}/status').read().split('SigCgt:')[1].split()[0]\n"
        f"    if int(status, 16) & {bit}:\n"
        f"        os.kill({pid}, {sig.value})\n"
        "        sys.exit(0)\n"
        "    time.sleep(0.05)\n"
        f"sys.exit('the sync service takes no {what} signal yet ({patience_s:g} s)')\n"
    )
    return ("python3", "-c", script)


def timeout_command(pid: int = 1, patience_s: float = 5.0) -> tuple[str, ...]:
    """What signals the service in process `pid` that the run's timeout has passed, once
    it takes the signal, for up to `patience_s` (exits 1 saying so if it never does)."""
    return _signal_command(TIMEOUT_SIGNAL, "timeout", pid, patience_s)


def ended_command(ended: dict[str, str], pid: int = 1, patience_s: float = 5.0,
                  path: str = ENDED_FILE) -> tuple[str, ...]:
    """What tells the service in process `pid` that the runner failed these instances
    (instance: why) itself: appended to `path`, then `ENDED_SIGNAL`, as `timeout_command`
    sends its signal."""
    return _told_command([{"instance": i, "why": why} for i, why in ended.items()], pid,
                         patience_s, path)


def interrupt_command(pid: int = 1, patience_s: float = 5.0,
                      path: str = ENDED_FILE) -> tuple[str, ...]:
    """What tells the service in process `pid` that the run was interrupted: it ends every
    instance not over through its agent (which packs its outputs), as at the timeout."""
    return _told_command([{"stop": INTERRUPTED}], pid, patience_s, path)


def _told_command(lines: list[dict[str, str]], pid: int, patience_s: float,
                  path: str) -> tuple[str, ...]:
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    before = f"with open({path!r}, 'ab') as f:\n    f.write({data!r})\n"
    return _signal_command(ENDED_SIGNAL, "instance-ended", pid, patience_s, before)


TIMEOUT_COMMAND = timeout_command()
"""What the runner runs in the sync container at the run's timeout: the service is that
container's first process (its command; an init in front of it passes the signal on)."""


def network_topic(instance: str) -> str:
    """Where an instance's network requests go for its shaper."""
    return NETWORK_TOPIC.format(instance=instance)


def _emit(event: dict[str, Any]) -> None:
    event.setdefault("ts", round(time.time(), 6))  # as the local event log stamps them
    sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    sys.stdout.flush()


async def serve(run: dict[str, Any], key: bytes, port: int, host: str = "0.0.0.0",
                ended_file: str = ENDED_FILE) -> None:
    """Serve the run's sync state, and play its faults, until cancelled; what the runner
    says ended comes from `ended_file`."""
    # time 0 of the faults: every instance started and every pod's shaper knows every pod
    started: set[str] = set()
    shaped: set[str] = set()
    everyone = trio.Event()

    succeeded: set[str] = set()
    failures: list[str] = []  # the instances that failed, in order: the first stops the rest
    failed = trio.Event()

    def failing(instance: str) -> None:
        if instance not in failures:
            failures.append(instance)
            failed.set()

    def record(event: dict[str, Any]) -> None:
        _emit(event)
        who = event.get("instance") or ""
        if event.get("kind") == "event" and event.get("type") == "start":
            started.add(who)
        elif event.get("kind") == "event" and event.get("type") == "success":
            succeeded.add(who)
        elif event.get("kind") == "event" and event.get("type") in FAILING_EVENTS:
            failing(who)
        elif event.get("kind") == "publish" and str(event.get("topic")).startswith(LIFE):
            instance = str(event["topic"])[len(LIFE):]
            if _life(state, instance, state.last_item(event["topic"]), succeeded):
                failing(instance)
        elif event.get("kind") == "signal" and event.get("state") == NETWORK_INITIALIZED:
            shaped.add(who)
        if len(started) == len(shaped) == len(run["instances"]):
            everyone.set()

    state = SyncState([i["id"] for i in run["instances"]], record=record,
                      roles={i["id"]: i.get("role") or "" for i in run["instances"]})
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
        await nursery.start(_stop_at_timeout, state, run, failures)
        await nursery.start(_take_ended, state, run, failures, Path(ended_file))
        nursery.start_soon(server.serve_tcp, (host, port))
        if run.get("fail_fast", True):

            async def stop_after_failure() -> None:
                await failed.wait()
                await trio.sleep(FAIL_FAST_GRACE_S)
                first = failures[0]
                stop_all(state, [i["id"] for i in run["instances"]],
                         f"stopped after {first} failed", first)

            nursery.start_soon(stop_after_failure)
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


def _life(state: SyncState, instance: str, life: Any, succeeded: set[str]) -> bool:
    """What an agent said on its `life_topic`, told to the state as the local supervisor
    tells it: barriers and subscriptions that can no longer be met because the instance
    ended fail at once, naming it, instead of at the run's timeout; and logged as the local
    supervisor logs it, an event of kind "instance", "started" or "exited" with the
    process's own exit status (the pod's is the agent's, 0 or 1). Whether the instance
    failed: its process ended, not by a fault, without passing."""
    if not isinstance(life, dict):
        return False
    if life.get("running"):
        state.instance_revived(instance)
        _emit({"kind": "instance", "instance": instance, "status": "started"})
        return False
    code, by, why = life.get("code"), life.get("by"), life.get("why")
    _emit({"kind": "instance", "instance": instance, "status": "exited", "exit_code": code,
           "by": by, **({"why": why} if why else {})})
    passed = code == 0 and instance in succeeded
    state.instance_ended(instance, str(why or by or ("passed" if passed else
                                                     f"exit code {code}")))
    return exit_fails(code, by, instance in succeeded)


def exit_fails(code: Any, by: Any, succeeded: bool) -> bool:
    """Whether an instance whose process exited with `code` (ended by the fault `by`, if
    one did; after recording success or not) failed by it: not ended by a fault, and not
    exit code 0 after success. The runner orders the run's failures by it too."""
    return not by and not (code == 0 and succeeded)


def stop_all(state: SyncState, instances: list[str], reason: str, first: str,
             **detail: Any) -> list[str]:
    """Have the agents end every instance that has not ended for good (whose process runs,
    has not started yet, or is to start again after a fault), for `reason` (`first` is the
    instance the run's reason names); recorded as an event of kind "phase" named
    "stopping", with `detail`, as locally. Those it ends."""
    ending = not_over(state, instances)
    for instance in ending:
        end_through_agent(state, instance, reason)
    if ending:
        _emit({"kind": "phase", "name": "stopping", "reason": reason, "first": first,
               "instances": ending, **detail})
    return ending


def end_through_agent(state: SyncState, instance: str, reason: str) -> None:
    """Have the instance's agent end it for good for `reason` (SIGTERM, then SIGKILL
    `STOP_GRACE_S` later); an agent that starts later ends it at once."""
    state.publish(fault_topic(instance), {"end": reason, "grace": STOP_GRACE_S,
                                          "comeback": None})


def not_over(state: SyncState, instances: list[str]) -> list[str]:
    """The instances that may still run, as their agents last said (`_not_over`)."""
    return [i for i in instances if _not_over(state.last_item(life_topic(i)))]


POD_TOPICS = (fault_topic(""), life_topic(""), NETWORK_TOPIC.format(instance=""), "k8s/")
"""What the topics of a pod's own agent and shaper start with (the shaper's HOSTS_TOPIC
too): a subscription to one is not where its instance waits."""


def stop_at_timeout(state: SyncState, run: dict[str, Any], failures: list[str]) -> list[str]:
    """End every instance not over because the run's timeout passed, as the local
    supervisor does: the event's "waiting" says where each waited, and its "first" is the
    first that failed before, else one that waited on no other (the likelier cause)."""
    instances = [i["id"] for i in run["instances"]]
    ending = not_over(state, instances)
    if not ending:
        return []
    waiting = {i: at for i in ending
               if (at := state.waiting_at(i, lambda topic: topic.startswith(POD_TOPICS)))}
    first = failures[0] if failures else next((i for i in ending if i not in waiting),
                                              ending[0])
    timeout_s = run.get("timeout_s")
    reason = still_running_at_timeout(math.inf if timeout_s is None else timeout_s)
    return stop_all(state, instances, reason, first, timeout=True, waiting=waiting)


async def _stop_at_timeout(state: SyncState, run: dict[str, Any], failures: list[str], *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                           ) -> None:
    """`stop_at_timeout` at the first TIMEOUT_SIGNAL; one sent again is ignored. Handled
    from before the service listens to its end: the signal's default ends this process."""
    with trio.open_signal_receiver(TIMEOUT_SIGNAL) as signals:
        task_status.started()
        told = False
        async for _ in signals:
            if not told:
                stop_at_timeout(state, run, failures)
            told = True


async def _take_ended(state: SyncState, run: dict[str, Any], failures: list[str],
                      path: Path, *,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """At each `ENDED_SIGNAL`, the lines `path` gained: each instance named there that may
    still run ends, as its agent would say it on its life topic (with no exit code, and
    the runner's reason): its waiters fail at once, and it counts as a failure; its agent,
    should it run, is told to end it. A "stop" ends every instance not over through its
    agent for that reason (`stop_all`, with `"interrupted": true`)."""
    ids = [i["id"] for i in run["instances"]]
    instances = set(ids)
    read = 0
    with trio.open_signal_receiver(ENDED_SIGNAL) as signals:
        task_status.started()
        async for _ in signals:
            try:
                data = await trio.Path(path).read_bytes()
            except OSError:
                continue
            whole = data.rfind(b"\n") + 1  # a line still being written waits for its end
            lines, read = data[read:whole].splitlines(), max(read, whole)
            for line in lines:
                try:
                    told = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(told, dict):
                    continue
                if isinstance(told.get("stop"), str):
                    stop_all(state, ids, told["stop"], failures[0] if failures else "",
                             interrupted=True)
                    continue
                iid = told.get("instance")
                if (isinstance(iid, str) and iid in instances
                        and _not_over(state.last_item(life_topic(iid)))):
                    why = str(told.get("why"))
                    state.publish(life_topic(iid), {"running": False, "code": None,
                                                    "by": None, "why": why})
                    # its agent, if it runs (a failed shaper) or starts late (a pod
                    # scheduled after all), ends its process at once
                    end_through_agent(state, iid, why)


def _not_over(life: Any) -> bool:
    """Whether an instance whose agent last said `life` may still run (its process
    runs, has not started yet, or is down for a fault that starts it again)."""
    return (not isinstance(life, dict) or bool(life.get("running"))
            or life.get("comeback") in ("now", "later"))


def main() -> None:
    """Entry point of the sync service's container."""
    run = orjson.loads(Path(sys.argv[1]).read_bytes())
    key = bytes.fromhex(os.environ["HARNESS_SYNC_KEY"])
    trio.run(serve, run, key, int(sys.argv[2]))


if __name__ == "__main__":
    main()
