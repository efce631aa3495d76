"""The instance agent in a pod: the faults it hears on its instance's topic act on the
instance's real process tree (here children of the test)."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import trio

from harness._runparams import RunParams
from harness.runners.k8s._actions import ClusterActions, fault_topic, life_topic
from harness.runners.k8s.agent import _run_once, supervise
from harness.runners.k8s.shaper import HOSTS_TOPIC, shape
from harness.sdk import connect
from harness.sync import SyncServer, SyncState, Tokens, connect_tcp
from tests.conftest import alive
from tests.sync._util import not_yet

# The instance starts a child of its own: faults must reach both (its whole tree).
INSTANCE = [sys.executable, "-c",
            "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)']); time.sleep(60)"]  # fmt: skip


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name: state, ppid, pgrp, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(ppid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(_stat(int(stat.parent.name))[1]) == ppid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return out


def _dies_within(pid: int, seconds: float) -> bool:
    """Whether `pid` is gone (or a zombie) within `seconds`: a SIGKILL is delivered at
    once, but a busy machine may run the process's exit a moment later."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_pause_resume_and_kill_reach_the_instances_whole_process_group() -> None:
    states: list[tuple[str, ...]] = []
    tree: list[int] = []

    async def main() -> tuple[int, dict[str, Any] | None]:
        send, receive = trio.open_memory_channel[dict[str, Any]](4)
        result: list[tuple[int, dict[str, Any] | None]] = []
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                result.append(await _run_once(INSTANCE, dict(os.environ), receive))

            nursery.start_soon(run)
            with trio.fail_after(20):
                while len(tree) < 2:  # the instance (a child of ours) and its own child
                    await trio.sleep(0.1)
                    tree[:] = [p for c in _children(os.getpid()) if _stat(c)[2] == str(c)
                               for p in (c, *_children(c))]  # fmt: skip
            for pause in (True, False):
                await send.send({"pause": pause})
                # Until it shows, or 5 s: a process in uninterruptible sleep ("D": a read
                # under load) stops only when that read is done.
                with trio.move_on_after(5):
                    while True:
                        await trio.sleep(0.1)
                        now = tuple(_stat(p)[0] for p in tree)
                        if (set(now) == {"T"}) if pause else ("T" not in now):
                            break
                states.append(now)
            await send.send({"end": "killed", "grace": None})
        return result[0]

    code, ended = trio.run(main)
    assert states[0] == ("T", "T")  # both stopped
    assert "T" not in states[1]  # both going again
    assert ended is not None and ended["end"] == "killed" and code != 0
    assert _dies_within(tree[1], 5)  # the kill took the instance's child too (else: 60 s)


def _pod_params(tmp_path: Path, sync_tcp: str, tokens: Tokens, **more: Any) -> RunParams:
    """Instance g/0 of a one-instance run, reaching its sync service over TCP, as a pod's."""
    return RunParams(
        plan="p", case="c", run_id="r", instance_count=1, group_id="g",
        group_instance_count=1, global_seq=0, group_seq=0, instance_id="g/0", params={},
        outputs_path=tmp_path, sync_tcp=sync_tcp, sync_token=tokens.for_instance("g/0"),
        **more)


def _supervised(tmp_path: Path, faults: Callable[[SyncState, list[Any]], Awaitable[None]]
                ) -> tuple[int, list[Any], SyncState]:
    """An agent over TCP, as in a pod, supervising a sleeper while `faults(state, lives)`
    plays (once it has started): its exit code, what it said on its life topic, the state."""
    tokens = Tokens()
    lives: list[Any] = []
    started = trio.Event()

    def record(event: dict[str, Any]) -> None:
        if event.get("kind") == "publish" and event["topic"] == life_topic("g/0"):
            lives.append(state.last_item(life_topic("g/0")))
            started.set()

    state = SyncState(["g/0"], record=record)

    async def main() -> int:
        server = SyncServer(state, tokens=tokens)
        async with trio.open_nursery() as n:
            host, port = await n.start(server.serve_tcp, ("127.0.0.1", 0))
            params = _pod_params(tmp_path, f"{host}:{port}", tokens)

            async def once_started() -> None:
                await started.wait()
                await faults(state, lives)

            n.start_soon(once_started)
            with trio.fail_after(20):
                code = await supervise([sys.executable, "-c", "import time; time.sleep(60)"],
                                       params)
            n.cancel_scope.cancel()
        return code

    return trio.run(main), lives, state


def test_the_agent_says_when_its_instance_starts_and_exits(tmp_path: Path) -> None:
    """Over TCP, as in a pod: started, killed by a fault (for good), exit status on record;
    the cluster's conductor then no longer counts it as running."""

    async def kill(state: SyncState, lives: list[Any]) -> None:
        state.publish(fault_topic("g/0"), {"end": "killed", "grace": None,
                                           "comeback": None, "expect": "fail"})

    code, lives, state = _supervised(tmp_path, kill)
    assert lives == [{"running": True},
                     {"running": False, "code": code, "by": "killed", "comeback": None}]
    assert code != 0
    assert ClusterActions(state, ["g/0"]).running() == set()


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds; fail after 10 s."""
    with trio.fail_after(10):
        for _ in itertools.count():
            if condition():
                return
            await trio.sleep(0.01)


def test_an_agent_gone_without_a_word_no_longer_counts_as_running() -> None:
    """Over TCP: an agent that said its process runs and then lost its connection (its pod
    evicted) is not drawn by faults any more; one still connected is."""
    tokens = Tokens()
    state = SyncState(["g/0", "g/1"])
    actions = ClusterActions(state, ["g/0", "g/1"])

    async def main() -> None:
        server = SyncServer(state, tokens=tokens)
        async with trio.open_nursery() as n:
            host, port = await n.start(server.serve_tcp, ("127.0.0.1", 0))

            async def agent(instance: str, leave: trio.Event) -> None:
                async with connect_tcp(host, port, instance, tokens.for_instance(instance)) \
                        as client, client.subscribe(fault_topic(instance)):
                    await client.publish(life_topic(instance), {"running": True})
                    await leave.wait()

            stay, go = trio.Event(), trio.Event()
            n.start_soon(agent, "g/0", stay)
            n.start_soon(agent, "g/1", go)
            await _until(lambda: state.last_item(life_topic("g/1")) is not None)
            assert actions.running() == {"g/0", "g/1"}
            go.set()  # g/1's connection closes with no exit said
            await _until(lambda: actions.running() == {"g/0"})
            assert state.last_item(life_topic("g/1")) == {"running": True}
            n.cancel_scope.cancel()

    trio.run(main)


def test_the_sdk_agent_and_shaper_wait_for_a_sync_service_not_up_yet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod may start before its run's sync service resolves or listens: each of its
    clients tries again (here: a name that does not resolve, then two refusals)."""
    tokens = Tokens()
    state = SyncState(["g/0"])
    (tmp_path / "ended").write_text("0")  # the shaper serves until the instance has ended
    tries = {}

    async def main() -> None:
        server = SyncServer(state, tokens=tokens)
        async with trio.open_nursery() as n:
            host, port = await n.start(server.serve_tcp, ("127.0.0.1", 0))
            params = _pod_params(tmp_path, f"{host}:{port}", tokens, data_ip="10.1.2.3")
            with trio.fail_after(30):
                tries["sdk"] = not_yet(monkeypatch, 3)
                async with connect(params) as client:
                    await client.publish("sdk", "here")
                tries["agent"] = not_yet(monkeypatch, 3)
                assert await supervise([sys.executable, "-c", "pass"], params) == 0
                tries["shaper"] = not_yet(monkeypatch, 3)
                await shape(params, tmp_path / "ended", FakeEgress(IPv4Address("10.1.2.3")))
            n.cancel_scope.cancel()

    trio.run(main)
    assert {who: t.tries for who, t in tries.items()} == {"sdk": 4, "agent": 4, "shaper": 4}
    assert state.last_item("sdk") == "here"
    assert state.last_item(life_topic("g/0")) == {"running": False, "code": 0}
    assert state.last_item(HOSTS_TOPIC) == {"ip": "10.1.2.3", "seq": 0, "instance": "g/0"}


class FakeEgress:
    """A pod's egress that shapes nothing (the shaper's connection is what is tested)."""

    def __init__(self, me: IPv4Address) -> None:
        self.me = me
        self.hosts: dict[IPv4Address, int] = {}
        self.cut_from: set[IPv4Address] = set()

    def apply(self) -> None:
        pass

    def request(self, config: dict[str, Any]) -> None:
        pass


def test_an_instance_down_for_a_fault_is_ended_for_good_by_the_runs_stop(
        tmp_path: Path) -> None:
    """Killed by a fault that starts it again later, then the run stops (fail-fast): the
    agent ends, instead of waiting for a start that never comes (until the pod's deadline)."""

    async def kill_then_stop(state: SyncState, lives: list[Any]) -> None:
        state.publish(fault_topic("g/0"), {"end": "killed", "grace": None,
                                           "comeback": "later", "expect": "recover"})
        await _until(lambda: len(lives) == 2)
        state.publish(fault_topic("g/0"), {"end": "stopped after g/1 failed",
                                           "grace": 3.0, "comeback": None})

    code, lives, _ = _supervised(tmp_path, kill_then_stop)
    assert code != 0
    assert lives == [{"running": True},
                     {"running": False, "code": code, "by": "killed", "comeback": "later"}]
