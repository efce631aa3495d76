"""A server instance: learn the peers, write nats-server's config, then become nats-server.

The launcher `exec`s nats-server, so the instance's process *is* nats-server: a kill or a
pause hits it, and a restart runs this launcher again with the same environment, outputs
and JetStream store (then `TEST_RESTARTS` > 0). What it learned of its peers is kept in
its outputs (`peers.json`), so a restart does not wait for them again.

Before the exec it starts a watcher (`--watch PID`, a child that nats-server inherits): it
waits for the clients' `clients-done`, records the instance's success and stops nats-server
with SIGINT (which exits 0). If nats-server dies first (killed by a fault), the watcher
leaves quietly: the run's expectations decide what that death means.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from typing import Any

import trio

from harness import sdk
from scenarios.nats._config import server_config
from scenarios.nats._names import CLIENT_PORT, CLIENTS_DONE, SERVERS_TOPIC


def restarts() -> int:
    """How many times the harness restarted this instance (0 on the first start)."""
    try:
        return int(os.environ.get("TEST_RESTARTS") or 0)
    except ValueError:
        return 0


async def _discover(params: sdk.RunParams, ip: str, wanted: int) -> dict[str, str]:
    """Publish this server's address and collect every server's: instance id -> ip. The
    topic replays from its first item, so a server that starts again learns at once."""
    async with sdk.connect(params) as sync:
        await sync.publish(SERVERS_TOPIC, {"id": params.instance_id, "ip": ip,
                                           "port": CLIENT_PORT})
        await sync.signal_event({"type": "message", "message":
                                 f"nats-server {params.instance_id} on {ip}, "
                                 f"restart {restarts()}"})
        peers: dict[str, str] = {}
        async with sync.subscribe(SERVERS_TOPIC) as items:
            async for item in items:
                peers[item["id"]] = item["ip"]
                if len(peers) >= wanted:
                    break
        return peers


async def _discover_within(params: sdk.RunParams, ip: str, wanted: int,
                           seconds: float) -> dict[str, str]:
    with trio.fail_after(seconds):
        return await _discover(params, ip, wanted)


def _peers(params: sdk.RunParams, ip: str) -> dict[str, str]:
    saved = params.outputs_path / "peers.json"
    if saved.exists():
        peers: dict[str, str] = json.loads(saved.read_text())
        return peers
    timeout = float(params.params["startup_timeout"])
    try:
        peers = trio.run(_discover_within, params, ip, int(params.params["servers"]), timeout)
    except trio.TooSlowError:
        raise SystemExit(f"nats: the {params.params['servers']} servers did not all publish "
                         f"their address within {timeout:.0f}s") from None
    tmp = saved.with_suffix(".tmp")
    tmp.write_text(json.dumps(peers, sort_keys=True))
    tmp.replace(saved)  # whole or absent, even if killed here
    return peers


def launch(params: sdk.RunParams) -> None:
    """Configure nats-server for this instance and exec it (never returns)."""
    binary = shutil.which("nats-server")
    if binary is None:
        raise SystemExit("nats: nats-server is not installed (Debian: apt-get install nats-server)")
    ip = params.data_ip or "127.0.0.1"
    peers = _peers(params, ip)
    store = params.outputs_path / "jetstream"
    store.mkdir(exist_ok=True)
    config = params.outputs_path / "nats-server.conf"
    config.write_text(server_config(params.instance_id, ip, peers, store))
    me = os.getpid()
    subprocess.Popen([sys.executable, "-m", "scenarios.nats.server", "--watch", str(me)])
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores it; nats-server must not
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, [binary, "--config", str(config)])


async def _parent_gone(pid: int) -> None:
    while True:  # a parent's death has no event to wait on: its child is re-parented
        if os.getppid() != pid:
            return
        await trio.sleep(0.2)


async def watch(params: sdk.RunParams, pid: int) -> int:
    """Beside nats-server (`pid`, this process's parent): once every client signalled
    `clients-done`, record success and stop it; leave quietly if it dies first."""
    clients = params.instance_count - int(params.params["servers"])
    outcome: dict[str, str] | None = None
    try:
        async with sdk.connect(params) as sync:
            async with trio.open_nursery() as nursery:

                async def until_done() -> None:
                    nonlocal outcome
                    try:
                        await sync.barrier(CLIENTS_DONE, clients, watch=True)
                        outcome = {"type": "success"}
                    except sdk.BarrierFailed as e:
                        outcome = {"type": "failure",
                                   "error": f"the clients ended without {CLIENTS_DONE!r}: {e}"}
                    nursery.cancel_scope.cancel()

                async def until_gone() -> None:
                    await _parent_gone(pid)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(until_done)
                nursery.start_soon(until_gone)
            if outcome is None or os.getppid() != pid:
                return 0  # nats-server died first: a fault's doing, judged by the harness
            await sync.signal_event(outcome)
    except sdk.SyncError:
        return 0  # the run is over
    os.kill(pid, signal.SIGINT)  # nats-server shuts down cleanly and exits 0
    return 0


def _params() -> sdk.RunParams:
    try:
        return sdk.RunParams.from_environ()
    except sdk.RunEnvError as e:
        raise SystemExit(f"nats: {e}") from None


def main(argv: list[str] | None = None) -> Any:
    """`python -m scenarios.nats.server` (launch) or `... --watch PID` (the watcher)."""
    args = sys.argv[1:] if argv is None else argv
    params = _params()
    if args[:1] == ["--watch"] and len(args) == 2:
        return trio.run(watch, params, int(args[1]))
    launch(params)
    return None


if __name__ == "__main__":
    sys.exit(main())
