"""Real processes: a PoET and two nodes on loopback, real TCP gossip, HTTP and gRPC."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from harness.observe import read_trace_columns
from scenarios.spacemesh._api import NodeApi
from scenarios.spacemesh._proto import spacemesh_pb2 as pb
from scenarios.spacemesh.sim import SimResult, options

ROOT = Path(__file__).resolve().parents[2]
TARGET = 6


def _subnet() -> str:
    # A loopback /24 of our own, so that parallel test runs do not collide.
    pid = os.getpid()
    return f"127.{200 + pid % 50}.{(pid // 50) % 250}"


class Procs:
    """Started processes, stopped (SIGTERM, then SIGKILL) however the test ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, module: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> list[int]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=10))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop()


def ready_line(proc: subprocess.Popen[bytes], timeout: float = 20) -> dict[str, str]:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise AssertionError(f"no ready line from {proc.args!r}")
    line = proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        raise AssertionError(f"{proc.args!r} exited: {proc.stderr.read().decode()[-2000:]}")
    result: dict[str, str] = orjson.loads(line)
    return result


async def _query(host: str) -> dict[str, object]:
    api = NodeApi(host, 9092)
    try:
        status = await api.status()
        if status.verified_layer < TARGET:
            return {"verified": status.verified_layer}
        layers = await api.layers(0, TARGET)
        known = await api.atxs()
        one = None
        if known:
            reply = await api.activation.Get(pb.GetRequest(id=bytes.fromhex(known[0].id)))
            one = reply.atx.smesher_id.id.hex()
        return {
            "verified": status.verified_layer,
            "peers": status.connected_peers,
            "current": await api.current_layer(),
            "hashes": [layer.hash for layer in layers],
            "blocks": sum(1 for layer in layers if layer.block),
            "smeshing": await api.is_smeshing(),
            "id": await api.smesher_id(),
            "atx_smeshers": {a.smesher for a in known},
            "get": one,
            "error": (await api.smeshing_status())[1],
        }
    finally:
        api.close()


@pytest.mark.slow
def test_poet_and_two_nodes_agree(procs: Procs, tmp_path: Path) -> None:
    wall = time.perf_counter()
    net = _subnet()
    poet_ip, gw_ip, miner_ip = f"{net}.1", f"{net}.2", f"{net}.3"
    genesis = time.time() + 2.0
    common = ["--genesis", str(genesis), "--layer-duration", "1", "--layers-per-epoch", "3"]
    poet = procs.start(
        "scenarios.spacemesh.poet", "--listen", f"{poet_ip}:7000", "--genesis", str(genesis),
        "--round-duration", "1.5", "--chain-length", "500", "--gateway", f"{gw_ip}:9092",
    )  # fmt: skip
    key = ready_line(poet)["pubkey"]
    node_args = [*common, "--poet", f"{poet_ip}:7000", "--poet-key", key]
    gateway = procs.start(
        "scenarios.spacemesh.node", "--identity", "gw", "--listen", f"{gw_ip}:7513",
        "--grpc", f"{gw_ip}:9092", "--metrics", f"{gw_ip}:9100", "--no-smeshing",
        "--outputs", str(tmp_path / "gw"), *node_args,
    )  # fmt: skip
    miner = procs.start(
        "scenarios.spacemesh.node", "--identity", "m1", "--listen", f"{miner_ip}:7513",
        "--grpc", f"{miner_ip}:9092", "--bootnode", f"{gw_ip}:7513", *node_args,
    )  # fmt: skip
    ready_line(gateway)
    ready_line(miner)

    deadline = time.time() + (genesis - time.time()) + TARGET + 15
    views: list[dict[str, object]] = []
    while time.time() < deadline:
        views = [asyncio.run(_query(gw_ip)), asyncio.run(_query(miner_ip))]
        if all(int(v["verified"]) >= TARGET for v in views):  # type: ignore[call-overload]
            break
        time.sleep(0.5)
    gw_view, miner_view = views
    assert "hashes" in gw_view and "hashes" in miner_view, views
    assert gw_view["hashes"] == miner_view["hashes"]
    assert len(gw_view["hashes"]) == TARGET + 1  # type: ignore[arg-type]
    assert int(miner_view["blocks"]) > 0  # type: ignore[call-overload]
    assert miner_view["smeshing"] is True and gw_view["smeshing"] is False
    assert miner_view["id"] in gw_view["atx_smeshers"]  # type: ignore[operator]
    assert gw_view["get"] == miner_view["id"] and miner_view["error"] == ""
    assert gw_view["peers"] == 1 and int(gw_view["current"]) >= TARGET  # type: ignore[call-overload]

    info = httpx.get(f"http://{poet_ip}:7000/v1/info").json()
    assert info["servicePubKey"] == key and int(info["openRoundId"]) > 0
    metrics = httpx.get(f"http://{gw_ip}:9100/metrics").text
    assert "spacemesh_peers 1.0" in metrics
    assert 'spacemesh_messages_delivered_total{topic="proposal"}' in metrics
    assert procs.stop() == [0, 0, 0]  # SIGTERM is a clean stop (the trace is written whole)
    trace = read_trace_columns(tmp_path / "gw")
    assert set(trace["kind"]) == {"publish", "receive", "deliver"}
    print(
        f"real processes (PoET + 2 nodes, {TARGET} layers): {time.perf_counter() - wall:.2f}s wall"
    )


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cases = [
        (["scenarios.spacemesh.node", "--identity", "x", "--listen", "nohost", "--grpc", "a:1"], "host:port"),
        (["scenarios.spacemesh.node", "--identity", "x", "--listen", "127.0.0.1:1",
          "--grpc", "127.0.0.1:2", "--layer-duration", "-1"], "--layer-duration must be 0.1"),
        # a genesis long ago: the node walked every layer since, growing without bound and
        # deaf to SIGTERM (it ran into the OOM killer)
        (["scenarios.spacemesh.node", "--identity", "x", "--listen", "127.0.0.1:1",
          "--grpc", "127.0.0.1:2", "--genesis", "0"], "is more than 100000 layers ago"),
        (["scenarios.spacemesh.node", "--identity", "x", "--listen", "127.0.0.1:1",
          "--grpc", "127.0.0.1:2", "--proposals-per-layer", "0"], "--proposals-per-layer must"),
        (["scenarios.spacemesh.node", "--identity", "x", "--listen", "127.0.0.1:1",
          "--grpc", "127.0.0.1:2", "--num-units", "100000"], "num_units must be 1 to 4096"),
        (["scenarios.spacemesh.node", "--identity", "x", "--listen", "127.0.0.1:1",
          "--grpc", "127.0.0.1:2", "--poet-key", "nothex"], "64 lowercase hex digits"),
        (["scenarios.spacemesh.poet", "--listen", "127.0.0.1:1", "--round-duration", "0"], "round_duration"),
        (["scenarios.spacemesh.poet"], "--listen"),
    ]  # fmt: skip
    for args, needle in cases:
        out = subprocess.run(
            [sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=30
        )
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], out.stderr


def test_a_simulation_whose_nodes_did_not_verify_the_last_layer_fails() -> None:
    # A tortoise that never verifies: every node holds the same tentative hashes.
    tentative = SimResult(6, 5, 15.0, 1.0, 1.0, True, 8, 100, 1.0, 3, 3, verified=0)
    assert tentative.problem == ("a node verified only up to layer 0, not 5: the hashes "
                                 "compared may still change")  # fmt: skip
    assert dataclasses.replace(tentative, verified=5).problem is None


def test_cli_port_in_use_is_one_line(procs: Procs) -> None:
    net = _subnet()
    first = procs.start("scenarios.spacemesh.poet", "--listen", f"{net}.9:7000")
    ready_line(first)
    out = subprocess.run(
        [sys.executable, "-m", "scenarios.spacemesh.poet", "--listen", f"{net}.9:7000"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "in use" in out.stderr


def test_simulation_runner_reports_agreement() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "scenarios.spacemesh.sim", "--miners", "4", "--layers", "5",
         "--layer-duration", "1", "--jitter-ms", "10", "--loss", "0.02"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "nodes=6 layers=5" in out.stdout and "agree=True" in out.stdout  # 2 gateways
    assert "verified=5" in out.stdout
    figures = dict(f.split("=", 1) for f in out.stdout.split())
    assert int(figures["frames"]) > 6 * 5 and float(figures["mb"]) > 0  # what the nodes sent
    made, could = map(int, figures["blocks"].split("/"))
    assert 0 < made <= could
    # Nothing gets through: every node holds the same empty layers, which is no success.
    cut = subprocess.run(
        [sys.executable, "-m", "scenarios.spacemesh.sim", "--miners", "4", "--layers", "5",
         "--loss", "1", "--log-level", "error"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert cut.returncode == 1 and "agree=True" in cut.stdout and "blocks=0/" in cut.stdout
    assert cut.stderr.strip() == ("spacemesh-sim: none of the 3 layers that could have a "
                                  "block has one: the nodes agree only on empty layers")
    bad = subprocess.run(
        [sys.executable, "-m", "scenarios.spacemesh.sim", "--loss", "2"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "loss" in bad.stderr


def test_a_simulation_says_how_far_it_got_and_runs_the_same_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Progress lines (every 5 s of wall time; here at every turn of the event loop) come
    from an instrument, so the seeded run is the same with them as without."""
    import io
    import re

    from scenarios.spacemesh import sim

    args = options(["--miners", "4", "--layers", "4", "--layer-duration", "1"])
    quiet = sim.simulate(**args)
    monkeypatch.setattr(sim, "PROGRESS_EVERY_S", 0.0)
    out = io.StringIO()
    loud = sim.simulate(**args, progress=out)
    lines = out.getvalue().splitlines()
    assert len(lines) > 10
    pattern = re.compile(r"spacemesh-sim: layer (\d+), ([\d.]+) of ([\d.]+) virtual s after "
                         r"[\d.]+ s \([\d.]+x real time\)")
    seen = [m for m in map(pattern.fullmatch, lines) if m]
    assert len(seen) == len(lines), lines[:3]
    layers = [int(m[1]) for m in seen]
    virtual = [float(m[2]) for m in seen]
    assert layers == sorted(layers) and layers[-1] >= 6  # 4 + hdist
    assert virtual == sorted(virtual) and virtual[-1] <= float(seen[0][3])
    assert (loud.frames, loud.megabytes, loud.blocks, loud.agree) == (
        quiet.frames, quiet.megabytes, quiet.blocks, quiet.agree)


@pytest.mark.parametrize(("args", "message"), [
    (["--layer-duration", "0"], "--layer-duration must be 0.1 to 86400 seconds, not 0.0"),
    (["--layer-duration", "nan"], "--layer-duration must be 0.1 to 86400 seconds, not nan"),
    (["--layer-duration", "1e300"], "must be 0.1 to 86400 seconds"),
    (["--target-peers", "0"], "--target-peers must be >= 1, not 0"),
    (["--layers-per-epoch", "0"], "--layers-per-epoch must be >= 1, not 0"),
    (["--layers", "1000000000"], "--layers must be at most 100000, not 1000000000"),
    (["--gateways", "100000"], "at most 10000 nodes, --miners and --gateways together, not 100050"),
    (["--miners", "9999"], "at most 10000 nodes, --miners and --gateways together, not 10001"),
    (["--delay-ms", "1e300"], "--delay-ms must be 0 to a layer (2000 ms), not 1e+300"),
    (["--delay-ms", "-5"], "--delay-ms must be 0 to a layer (2000 ms), not -5.0"),
    (["--jitter-ms", "2500"], "--jitter-ms must be 0 to a layer (2000 ms), not 2500.0"),
    (["--loss", "2"], "--loss must be a fraction from 0 to 1, not 2.0"),  # named no option
    (["--loss", "nan"], "--loss must be a fraction from 0 to 1, not nan"),
    # these ran without end (a node's work grows with the expected proposals) or judged
    # nothing and passed ("blocks=0/0")
    (["--proposals-per-layer", "100000000"], "--proposals-per-layer must be 1 to 1000"),
    (["--layers-per-epoch", "100000000"], "must reach past the first epoch"),
])  # fmt: skip
def test_simulation_options_out_of_range_are_one_line_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each of these was a traceback or a run that never ended."""
    with pytest.raises(SystemExit) as exit_:
        options(args)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and message in err, err
