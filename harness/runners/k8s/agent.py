"""`python -m harness.runners.k8s.agent RUN_JSON PLAN_DIR`: one instance in its pod.

Runs the instance as locally (the case's Python entrypoint, or the group's program) with
the TEST_* variables the pod was given, then prints its output files at the end of its log
(`_outputs`: the runner collects them from there), writes its exit status where the pod's
shaper sees it (so the pod ends), and exits with it: the pod's phase is the instance's
outcome."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import trio

from harness._runparams import RunParams
from harness.runners.k8s._actions import fault_topic, life_topic
from harness.runners.k8s._outputs import pack
from harness.runners.k8s._render import DONE
from harness.sync import CONNECT_PATIENCE_S, SyncError, connect_tcp

__all__ = ["main"]


def main() -> int:
    """Entry point of the instance container."""
    run = orjson.loads(Path(sys.argv[1]).read_bytes())
    plan_dir = Path(sys.argv[2])
    group = os.environ["TEST_GROUP_ID"]
    program = next((g["program"] for g in run["groups"] if g["id"] == group), None) or run[
        "program"]
    roots = [str(plan_dir.parent), str(plan_dir.parent.parent), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in roots if p)
    outputs = Path(os.environ["TEST_OUTPUTS_PATH"])
    outputs.mkdir(parents=True, exist_ok=True)
    if program:
        argv = [str(plan_dir / program[0]) if "/" in program[0] and not program[0].startswith(
            "/") else program[0], *program[1:]]
    else:
        argv = [sys.executable, "-c", _RUN_ENTRYPOINT, run["entrypoint"],
                run.get("backend") or "trio"]
    params = RunParams.from_environ(os.environ)
    if params.sync_tcp is None:
        code = subprocess.run(argv, check=False).returncode
    else:  # faults reach it, and the sync service hears when it ends (as locally)
        try:
            code = trio.run(supervise, argv, params)
        except (SyncError, OSError) as e:  # the pod must still end, its log saying why
            print(f"agent: {e}", file=sys.stderr, flush=True)  # SyncError names the service
            code = 1
    sys.stdout.write(pack(outputs))
    sys.stdout.flush()
    Path(DONE).mkdir(parents=True, exist_ok=True)
    (Path(DONE) / "ended").write_text(str(code))
    return 0 if code == 0 else 1


async def supervise(argv: list[str], params: RunParams) -> int:
    """Run the instance, ending it, starting it again or not as the run's faults say on
    `fault/<instance>`, and say on `life/<instance>` each time its process starts and
    exits; the last exit status (minus the signal that ended it)."""
    assert params.sync_tcp is not None
    host, _, port = params.sync_tcp.rpartition(":")
    restarts = 0
    async with connect_tcp(host, int(port), params.instance_id, params.sync_token,
                           patience_s=CONNECT_PATIENCE_S) as client, \
            client.subscribe(fault_topic(params.instance_id)) as sub, \
            trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[dict[str, Any]](16)

        async def listen() -> None:
            async for fault in sub:
                if "end" in fault or "start" in fault or "pause" in fault:
                    await send.send(fault)

        nursery.start_soon(listen)
        life = life_topic(params.instance_id)
        while True:
            env = {**os.environ, "TEST_RESTARTS": str(restarts)}
            await client.publish(life, {"running": True})  # what the conductor draws from
            code, ended = await _run_once(argv, env, receive)
            await client.publish(life, {"running": False, "code": code, **(
                {"by": ended["end"], "comeback": ended.get("comeback")} if ended else {})})
            if ended is None:
                break
            print(f"agent: {ended['end']} (exit {code})", file=sys.stderr, flush=True)
            if ended.get("comeback") == "later":
                if not await _until_started(receive):
                    break
            elif ended.get("comeback") != "now":
                break
            restarts += 1
        nursery.cancel_scope.cancel()
    return code


async def _until_started(faults: trio.MemoryReceiveChannel[dict[str, Any]]) -> bool:
    """Whether the instance a fault ended is to start again (the fault is undone), or not
    (the run ends it for good meanwhile: fail-fast)."""
    async for fault in faults:
        if "start" in fault:
            return True
        if "end" in fault:
            print(f"agent: {fault['end']} (it was down)", file=sys.stderr, flush=True)
            return False
    return False


async def _run_once(argv: list[str], env: dict[str, str],
                    faults: trio.MemoryReceiveChannel[dict[str, Any]]
                    ) -> tuple[int, dict[str, Any] | None]:
    """One life of the instance's process: its exit status, and the fault that ended it."""
    # Its own process group: a pause stops the instance's whole tree, never this agent.
    proc = await trio.lowlevel.open_process(argv, env=env, start_new_session=True)
    ended: dict[str, Any] | None = None
    async with trio.open_nursery() as watch:

        async def wait_fault() -> None:
            nonlocal ended
            async for fault in faults:
                if "pause" in fault:
                    _signal_group(proc, signal.SIGSTOP if fault["pause"] else signal.SIGCONT)
                elif "end" in fault:
                    ended = fault
                    await _end(proc, fault.get("grace"))
                    return

        watch.start_soon(wait_fault)
        code = await proc.wait()
        watch.cancel_scope.cancel()
    return code, ended


def _signal_group(proc: trio.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.killpg(proc.pid, sig)


async def _end(proc: trio.Process, grace: float | None) -> None:
    """End the instance's whole process group, as a local kill or stop does."""
    if grace is not None:
        _signal_group(proc, signal.SIGTERM)
        _signal_group(proc, signal.SIGCONT)  # a paused group acts on SIGTERM once continued
        with trio.move_on_after(grace):
            await proc.wait()
    _signal_group(proc, signal.SIGKILL)  # what is left (the instance's children too)


_RUN_ENTRYPOINT = """
import sys
from harness.sdk import load_entrypoint, run_instance
sys.exit(run_instance(load_entrypoint(sys.argv[1]), sys.argv[2]))
"""

if __name__ == "__main__":
    sys.exit(main())
