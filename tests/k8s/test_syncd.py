"""The run's sync service in the cluster, over TCP on this host's loopback."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
import pytest
import trio

from harness.runners.k8s import syncd
from harness.runners.k8s._actions import fault_topic, life_topic
from harness.runners.k8s.syncd import serve
from harness.sync import NETWORK_INITIALIZED, SyncClient, SyncError, Tokens, connect_tcp

KEY = bytes(range(32))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _listening(port: int) -> None:
    """Until the service started in the background listens on `port`."""
    with trio.fail_after(10):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


@asynccontextmanager
async def _serving(run: dict[str, Any], port: int, ended_file: str = syncd.ENDED_FILE
                   ) -> AsyncIterator[None]:
    """The run's sync service on this host's loopback `port`, listening, until the block
    ends (then cancelled)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, run, KEY, port, "127.0.0.1", ended_file)
        await _listening(port)
        yield
        nursery.cancel_scope.cancel()


async def _run_in_container(command: tuple[str, ...]) -> None:
    """Run a command the runner execs in the sync container (python3 there), here."""
    done = await trio.run_process([sys.executable, *command[1:]], capture_stderr=True,
                                  check=False)
    assert done.returncode == 0, done.stderr


def _client(port: int, instance: str) -> AbstractAsyncContextManager[SyncClient]:
    return connect_tcp("127.0.0.1", port, instance, Tokens(KEY).for_instance(instance))


def test_without_shapers_every_instance_is_ready_as_it_starts() -> None:
    """shaping = off: no shaper signals network-initialized, so the service does, as
    local:exec does (every plan that waits on it waited for the run's timeout)."""
    run = {"shaped": False, "faults": [],
           "instances": [{"id": f"g/{n}", "group": "g", "role": ""} for n in range(2)]}
    port = _free_port()

    async def main() -> None:
        async with _serving(run, port):
            with trio.fail_after(10):
                async with _client(port, "g/0") as c:
                    await c.barrier(NETWORK_INITIALIZED, 2)

    trio.run(main)


def test_an_instance_whose_agent_says_it_ended_fails_what_waits_for_it_at_once(
        capfd: pytest.CaptureFixture[str]) -> None:
    """The service never heard that an instance ended: a run whose instance crashed at
    once waited for the run's timeout (106 s under kube play, 3 s on local:exec), its
    other instances saying only that the timeout had passed. It logs the process's start
    and its own exit code, as the local supervisor does (the pod's is the agent's)."""
    run = {"shaped": False, "faults": [],
           "instances": [{"id": f"g/{n}", "group": "g", "role": ""} for n in range(2)]}
    port = _free_port()
    reasons: list[str] = []

    async def main() -> None:
        async with _serving(run, port):
            with trio.fail_after(10):
                async with _client(port, "g/0") as w, _client(port, "g/1") as agent:
                    await agent.publish(life_topic("g/1"), {"running": True})
                    await agent.publish(life_topic("g/1"), {"running": False, "code": 3})
                    try:
                        await w.barrier("both-done", 2)
                    except SyncError as e:
                        reasons.append(str(e))

    trio.run(main)
    assert len(reasons) == 1 and "g/1 (exit code 3)" in reasons[0], reasons
    lives = [{k: e[k] for k in e if k != "ts"}
             for e in map(orjson.loads, capfd.readouterr().out.splitlines())
             if e["kind"] == "instance"]
    assert lives == [{"kind": "instance", "instance": "g/1", "status": "started"},
                     {"kind": "instance", "instance": "g/1", "status": "exited",
                      "exit_code": 3, "by": None}]


@pytest.mark.parametrize("fail_fast,how", [(True, "event"), (True, "exit"),
                                           (False, "event")])
def test_the_first_failure_ends_every_instance_not_over_unless_no_fail_fast(
        fail_fast: bool, how: str, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """As the local supervisor's fail-fast: g/0 records a failure (or its process exits 3);
    g/1 runs, g/2 is down for a fault that starts it again, g/3 was killed for good, g/4's
    agent has said nothing yet: the agents of g/1, g/2, g/4 (and g/0, if it runs on) are
    told to end it."""
    monkeypatch.setattr(syncd, "FAIL_FAST_GRACE_S", 0.0)
    ids = [f"g/{n}" for n in range(5)]
    run = {"shaped": False, "faults": [], "fail_fast": fail_fast,
           "instances": [{"id": i, "group": "g", "role": ""} for i in ids]}
    port = _free_port()
    lives: dict[str, dict[str, Any]] = {
        "g/0": {"running": True}, "g/1": {"running": True},
        "g/2": {"running": False, "code": -9, "by": "killed by fault 1", "comeback": "later"},
        "g/3": {"running": False, "code": -9, "by": "killed by fault 2", "comeback": None}}
    ending = ["g/0", "g/1", "g/2", "g/4"] if how == "event" else ["g/1", "g/2", "g/4"]
    told: dict[str, Any] = {}

    async def main() -> None:
        async with _serving(run, port):
            with trio.fail_after(10):
                async with _client(port, "g/0") as c:
                    for iid, life in lives.items():
                        await c.publish(life_topic(iid), life)
                    if how == "event":
                        await c.signal_event({"type": "failure", "error": "boom"})
                    else:
                        await c.publish(life_topic("g/0"), {"running": False, "code": 3})
                    if not fail_fast:
                        await trio.sleep(0.5)  # what fail-fast would have done by now
                    for iid in ids:
                        async with c.subscribe(fault_topic(iid)) as sub:
                            with trio.move_on_after(10 if fail_fast and iid in ending else 0):
                                told[iid] = await sub.__anext__()

    trio.run(main)
    phases = [e for e in map(orjson.loads, capfd.readouterr().out.splitlines())
              if e["kind"] == "phase"]
    if not fail_fast:
        assert told == {} and phases == []
        return
    end = {"end": "stopped after g/0 failed", "grace": syncd.STOP_GRACE_S, "comeback": None}
    assert told == dict.fromkeys(ending, end)
    assert [{k: e[k] for k in ("name", "reason", "first", "instances")} for e in phases] == [
        {"name": "stopping", "reason": "stopped after g/0 failed", "first": "g/0",
         "instances": ending}]


def test_fail_fast_waits_and_stops_as_the_local_supervisor_does() -> None:
    from harness._supervisor import _KILL_AFTER_S, RunOptions

    assert RunOptions().grace_s == syncd.FAIL_FAST_GRACE_S
    assert _KILL_AFTER_S == syncd.STOP_GRACE_S


def test_at_the_runs_timeout_every_instance_not_over_is_ended_saying_where_it_waited(
        capfd: pytest.CaptureFixture[str]) -> None:
    """The runner's TIMEOUT_COMMAND signals the service: g/0 waits at a barrier, g/1 only
    holds what its pod's agent and shaper hold (no wait of its own), g/2 has passed and
    exited. The agents of g/0 and g/1 are told to end them, as locally at the timeout;
    g/1, which waited on no other, is named first."""
    ids = ["g/0", "g/1", "g/2"]
    run = {"shaped": False, "faults": [], "timeout_s": 90,
           "instances": [{"id": i, "group": "g", "role": ""} for i in ids]}
    port = _free_port()
    told: dict[str, Any] = {}

    async def main() -> None:
        async with _serving(run, port):
            assert signal.getsignal(syncd.TIMEOUT_SIGNAL) not in (signal.SIG_DFL,
                                                                   signal.SIG_IGN)
            with trio.fail_after(10):
                async with _client(port, "g/0") as g0, _client(port, "g/1") as g1, \
                        _client(port, "g/2") as g2, g1.subscribe(fault_topic("g/1")), \
                        g1.subscribe("k8s/hosts"), trio.open_nursery() as waits:
                    waits.start_soon(g0.barrier, "both", 2)
                    for client, iid in ((g0, "g/0"), (g1, "g/1"), (g2, "g/2")):
                        await client.publish(life_topic(iid), {"running": True})
                    await g2.signal_event({"type": "success"})
                    await g2.publish(life_topic("g/2"), {"running": False, "code": 0})
                    # g/0 at its barrier: the service's log says it, no event does
                    while not syncd_waits(capfd):  # noqa: ASYNC110
                        await trio.sleep(0.01)
                    os.kill(os.getpid(), syncd.TIMEOUT_SIGNAL)
                    for iid in ids:
                        async with g2.subscribe(fault_topic(iid)) as sub:
                            with trio.move_on_after(10 if iid != "g/2" else 0.2):
                                told[iid] = await sub.__anext__()
                    waits.cancel_scope.cancel()

    lines: list[str] = []

    def syncd_waits(capfd: pytest.CaptureFixture[str]) -> bool:
        lines.extend(capfd.readouterr().out.splitlines())
        return any('"kind":"barrier"' in line for line in lines)

    trio.run(main)
    lines.extend(capfd.readouterr().out.splitlines())
    reason = "still running at the run's timeout (90s)"
    end = {"end": reason, "grace": syncd.STOP_GRACE_S, "comeback": None}
    assert told == {"g/0": end, "g/1": end}
    phases = [e for e in map(orjson.loads, lines) if e["kind"] == "phase"]
    assert [{k: v for k, v in e.items() if k != "ts"} for e in phases] == [
        {"kind": "phase", "name": "stopping", "reason": reason, "first": "g/1",
         "instances": ["g/0", "g/1"], "timeout": True,
         "waiting": {"g/0": "waiting at barrier 'both' (0 of 2 arrived)"}}]


def test_the_timeout_command_waits_for_the_services_handler_and_never_kills_it() -> None:
    """The signal's default ends a process: sent in the service's first second, before its
    handler was set, the run's timeout killed the sync service and its events were lost."""
    import subprocess

    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    handled = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys, time\n"
         "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(7))\n"
         "print('ready', flush=True)\ntime.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert handled.stdout is not None and handled.stdout.readline() == "ready\n"
        python = sys.executable
        late = subprocess.run([python, *syncd.timeout_command(bare.pid, 0.3)[1:]],
                              capture_output=True, text=True, check=False)
        assert late.returncode == 1 and late.stderr.strip() == (
            "the sync service takes no timeout signal yet (0.3 s)")
        assert bare.poll() is None  # not killed
        told = subprocess.run([python, *syncd.timeout_command(handled.pid, 5)[1:]],
                              capture_output=True, text=True, check=False)
        assert told.returncode == 0, told.stderr
        assert handled.wait(timeout=10) == 7
    finally:
        for proc in (bare, handled):
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("fail_fast", [True, False])
def test_an_instance_the_runner_failed_ends_there_its_waiters_fail_and_fail_fast_stops_the_rest(
        fail_fast: bool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """g/1's pod never started (its image cannot be pulled), so its agent never says a
    word: g/0 waited at a barrier for it, and the run went on to its timeout, where a
    local run stops at once. The runner's `ended_command`, run as it is in the sync
    container, ends g/1 there: g/0's barrier fails naming g/1 and why, and fail-fast
    ends g/0 (not g/1, which never ran)."""

    monkeypatch.setattr(syncd, "FAIL_FAST_GRACE_S", 0.0)
    run = {"shaped": False, "faults": [], "fail_fast": fail_fast,
           "instances": [{"id": f"g/{n}", "group": "g", "role": ""} for n in range(2)]}
    port = _free_port()
    why = "its pod's instance container cannot start: ErrImageNeverPull"
    ended_file = str(tmp_path / "ended.jsonl")
    reasons: list[str] = []
    told: list[Any] = []

    async def main() -> None:
        async with _serving(run, port, ended_file):
            with trio.fail_after(10):
                async with _client(port, "g/0") as c:
                    await c.publish(life_topic("g/0"), {"running": True})
                    await _run_in_container(
                        syncd.ended_command({"g/1": why}, os.getpid(), 5, ended_file))
                    try:
                        await c.barrier("both-done", 2)
                    except SyncError as e:
                        reasons.append(str(e))
                    async with c.subscribe(fault_topic("g/0")) as sub:
                        with trio.move_on_after(10 if fail_fast else 0.5):
                            told.append(await sub.__anext__())

    trio.run(main)
    assert len(reasons) == 1 and f"g/1 ({why})" in reasons[0], reasons
    events = [{k: e[k] for k in e if k != "ts"}
              for e in map(orjson.loads, capfd.readouterr().out.splitlines())]
    assert [e for e in events if e["kind"] == "instance"] == [
        {"kind": "instance", "instance": "g/0", "status": "started"},
        {"kind": "instance", "instance": "g/1", "status": "exited", "exit_code": None,
         "by": None, "why": why}]
    phases = [{k: e[k] for k in ("name", "reason", "first", "instances")}
              for e in events if e["kind"] == "phase"]
    if not fail_fast:
        assert told == [] and phases == []
        return
    assert told == [{"end": "stopped after g/1 failed", "grace": syncd.STOP_GRACE_S,
                     "comeback": None}]
    assert phases == [{"name": "stopping", "reason": "stopped after g/1 failed",
                       "first": "g/1", "instances": ["g/0"]}]


def test_an_interrupted_run_ends_every_instance_not_over_through_its_agent(
        tmp_path: Any, capfd: pytest.CaptureFixture[str]) -> None:
    """The runner's `interrupt_command` (a Ctrl-C): g/0 runs, g/1 has passed and exited;
    g/0's agent is told to end it (and then packs its outputs), as at the timeout."""

    run = {"shaped": False, "faults": [],
           "instances": [{"id": f"g/{n}", "group": "g", "role": ""} for n in range(2)]}
    port = _free_port()
    ended_file = str(tmp_path / "ended.jsonl")
    told: dict[str, Any] = {}

    async def main() -> None:
        async with _serving(run, port, ended_file):
            with trio.fail_after(10):
                async with _client(port, "g/1") as c:
                    await c.publish(life_topic("g/0"), {"running": True})
                    await c.signal_event({"type": "success"})
                    await c.publish(life_topic("g/1"), {"running": False, "code": 0})
                    await _run_in_container(
                        syncd.interrupt_command(os.getpid(), 5, ended_file))
                    for iid in ("g/0", "g/1"):
                        async with c.subscribe(fault_topic(iid)) as sub:
                            with trio.move_on_after(10 if iid == "g/0" else 0.2):
                                told[iid] = await sub.__anext__()

    trio.run(main)
    assert told == {"g/0": {"end": "interrupted", "grace": syncd.STOP_GRACE_S,
                            "comeback": None}}
    phases = [{k: e[k] for k in ("name", "reason", "instances")}
              for e in map(orjson.loads, capfd.readouterr().out.splitlines())
              if e["kind"] == "phase"]
    assert phases == [{"name": "stopping", "reason": "interrupted", "instances": ["g/0"]}]


def test_each_told_end_is_taken_once_and_a_line_being_written_waits_for_its_end(
        tmp_path: Any, capfd: pytest.CaptureFixture[str]) -> None:
    """Two tells in a row (the signal may coalesce): each instance ends once, a line not
    yet whole at a signal is taken once it is, and the agent of one told ended is told to
    end it (a shaper that failed leaves the instance running; a pod may start late)."""
    run = {"shaped": False, "faults": [], "fail_fast": False,
           "instances": [{"id": f"g/{n}", "group": "g", "role": ""} for n in range(3)]}
    port = _free_port()
    ended = tmp_path / "ended.jsonl"
    told: list[Any] = []

    async def tell(data: bytes) -> None:
        with ended.open("ab") as f:
            f.write(data)
        os.kill(os.getpid(), syncd.ENDED_SIGNAL)
        await trio.sleep(0.2)

    async def main() -> None:
        async with _serving(run, port, str(ended)):
            with trio.fail_after(10):
                await tell(b'{"instance":"g/0","why":"a"}\n{"instance":"g/1","wh')
                await tell(b'y":"b"}\n{"instance":"g/0","why":"again"}\n')
                async with _client(port, "g/2") as c, c.subscribe(fault_topic("g/1")) as sub:
                    told.append(await sub.__anext__())

    trio.run(main)
    exits = [(e["instance"], e["why"]) for e in map(orjson.loads, capfd.readouterr().out.splitlines())
             if e["kind"] == "instance"]
    assert exits == [("g/0", "a"), ("g/1", "b")]
    assert told == [{"end": "b", "grace": syncd.STOP_GRACE_S, "comeback": None}]
