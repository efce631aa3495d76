"""The nats plan: a NATS JetStream cluster (Debian's nats-server) checked through NATS.

The live tests run it at 3 servers + 2 clients: it passes without faults, and a client whose
read-back is broken on purpose (`lose_one`) fails the run naming the message it lost."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness import sdk
from harness.faults import Selector, parse_faults
from scenarios.nats import _names, server
from scenarios.nats._check import lost_messages, summarize
from scenarios.nats._config import server_config

from .conftest import ROOT, harness_cli, only_run_dir

PLAN = ROOT / "scenarios" / "nats"
NATS_SERVER = shutil.which("nats-server")
PEERS = {"servers/0": "198.18.0.1", "servers/1": "198.18.0.2", "servers/2": "198.18.0.3"}


def test_the_config_routes_to_the_other_servers_and_listens_on_its_own_address_only(
    tmp_path: Path,
) -> None:
    text = server_config("servers/1", "198.18.0.2", PEERS, tmp_path / "js")
    assert 'server_name: "servers/1"' in text
    assert re.findall(r'nats-route://[\d.]+:\d+', text) == [
        "nats-route://198.18.0.1:6222", "nats-route://198.18.0.3:6222"]
    listens = re.findall(r'(?:listen|http): "([\d.]+):', text)
    assert listens == ["198.18.0.2"] * 3  # clients, monitoring, routes: never 0.0.0.0
    assert f'store_dir: "{tmp_path / "js"}"' in text


@pytest.mark.skipif(NATS_SERVER is None, reason="nats-server not installed (apt-get install nats-server)")
def test_nats_server_accepts_the_config(tmp_path: Path) -> None:
    conf = tmp_path / "nats.conf"
    conf.write_text(server_config("servers/0", "127.0.0.1", PEERS, tmp_path / "js"))
    check = subprocess.run([NATS_SERVER, "-t", "-c", str(conf)], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_check_names_lost_and_changed_messages() -> None:
    acked = [(1, "c#0"), (2, "c#1"), (3, "c#2"), (7, "c#3")]
    assert lost_messages(acked, {1: "c#0", 2: "c#1", 3: "c#2", 7: "c#3", 8: "x"}) == []
    problems = lost_messages(acked, {1: "c#0", 2: None, 3: "other#9"})
    assert problems == [
        "acknowledged message 'c#1' (stream seq 2) is missing from the stream",
        "stream seq 3 holds 'other#9', not the acknowledged 'c#2'",
        "acknowledged message 'c#3' (stream seq 7) is missing from the stream",
    ]
    line = summarize(problems, len(acked), shown=1)
    assert line.startswith("3 of 4 acknowledged messages lost: acknowledged message 'c#1'")
    assert line.endswith("(and 2 more)")


def _params(tmp_path: Path, **params: Any) -> sdk.RunParams:
    return sdk.RunParams(
        plan="nats", case="jetstream", run_id="r", instance_count=5, group_id="servers",
        group_instance_count=3, global_seq=1, group_seq=1, instance_id="servers/1",
        role="server", params={"servers": 3, "startup_timeout": 1.0, **params},
        outputs_path=tmp_path, sync_socket=str(tmp_path / "no-such.sock"))


@pytest.mark.parametrize("stream", ["", "bad name", "a.b", "x/y", "ab\nc", "A" * 33])
def test_a_stream_name_nats_would_refuse_is_refused_before_anything_starts(
    tmp_path: Path, stream: str
) -> None:
    """The client found it after the network was built (a crash), and a 300-character
    name hung the clients until the run's timeout with nothing in their logs."""
    r = harness_cli("run", "nats", "-i", "4", "-p", f"stream={stream}",
                    "--outputs", str(tmp_path))
    assert (r.returncode, r.stderr) == (2, f"harness: error: nats:jetstream: stream={stream!r}: "
                                           "a stream's name is 1 to 32 letters, digits, '_' or '-'\n")
    assert not list(tmp_path.iterdir())


def test_a_restarted_launcher_reads_its_peers_without_the_sync_service(tmp_path: Path) -> None:
    (tmp_path / "peers.json").write_text(json.dumps(PEERS))
    assert server._peers(_params(tmp_path), "198.18.0.2") == PEERS  # no socket to reach


def test_a_first_start_without_a_sync_service_cannot_learn_its_peers(tmp_path: Path) -> None:
    with pytest.raises(sdk.SyncError):
        server._peers(_params(tmp_path), "198.18.0.2")
    assert not (tmp_path / "peers.json").exists()


def _states_the_plan_signals(params: dict[str, Any]) -> set[str]:
    every, total = params["milestone"], params["messages"]
    return ({_names.published(k) for k in range(every, total + 1, every)}
            | {_names.STREAM_READY, _names.CLIENTS_DONE}
            | {f(n) for f in (_names.outage, _names.recovered) for n in range(1, 10)})


@pytest.mark.parametrize("name", ["leader-faults", "live"])
def test_the_compositions_use_only_states_and_topics_the_plan_signals(name: str) -> None:
    comp = tomllib.loads((PLAN / "compositions" / f"{name}.toml").read_text())
    manifest = tomllib.loads((PLAN / "manifest.toml").read_text())
    params = {k: v["default"] for k, v in manifest["testcases"][0]["params"].items()}
    params |= comp["global"]["params"]
    servers = sum(g["instances"]["count"] for g in comp["groups"] if g["id"] == "servers")
    assert servers == params["servers"]  # so the group "servers" is the role "server"
    faults = parse_faults(comp.get("faults", []))
    topics = [sel.topic for f in faults for sel in (f.targets, *f.args.values())
              if isinstance(sel, Selector) and sel.topic]
    assert len(faults) == (3 if name == "leader-faults" else 0)
    signalled = _states_the_plan_signals(params)
    for f in faults:
        assert not isinstance(f.at, float) and f.at.state in signalled, f.at
    assert set(topics) <= {_names.LEADER_TOPIC, _names.FOLLOWERS_TOPIC, _names.FOLLOWER_TOPIC}
    if name == "leader-faults":
        assert [f.action for f in faults] == ["kill", "pause", "partition"]
        assert all(f.expectation() in (None, "recover") for f in faults)  # all are undone


def _live_skip() -> None:
    if NATS_SERVER is None:
        pytest.skip("nats-server not installed (apt-get install nats-server)")
    if importlib.util.find_spec("nats") is None or importlib.util.find_spec("nats.js") is None:
        pytest.skip("nats-py not installed (pip install -e '.[nats]')")
    if os.geteuid() != 0:
        pytest.skip("local:netns needs root here")


def _run(tmp_path: Path, *params: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    args = [a for p in params for a in ("-p", p)]
    # --no-fail-fast: each client's own verdict is checked (under load one finishes its
    # check seconds before the other, whose verdict fail-fast would cut short)
    r = harness_cli("run", "nats", "-i", "5", "-p", "messages=120", "-p", "rate=100",
                    "-p", "milestone=40", *args, "--no-fail-fast", "--outputs", str(tmp_path),
                    "-q", timeout=240)
    run = json.loads((only_run_dir(tmp_path) / "run.json").read_text())
    return r, run


@pytest.mark.live
@pytest.mark.slow
def test_the_cluster_passes_without_faults(tmp_path: Path) -> None:
    _live_skip()
    r, run = _run(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(i["role"], i["outcome"]) for i in run["instances"]] == (
        [("server", "passed")] * 3 + [("client", "passed")] * 2)
    events = (only_run_dir(tmp_path) / "events.jsonl").read_text()
    assert events.count("all 120 acknowledged messages are in the stream") == 2
    assert '"stream leader: single/' in events  # the leader was found and reported


@pytest.mark.live
@pytest.mark.slow
def test_a_lost_acknowledged_message_fails_the_run_naming_it(tmp_path: Path) -> None:
    _live_skip()
    r, run = _run(tmp_path, "lose_one=true")
    assert r.returncode == 1, r.stdout + r.stderr
    clients = [i for i in run["instances"] if i["role"] == "client"]
    for c in clients:
        assert c["outcome"] == "failed"
        assert re.search(rf"1 of 120 acknowledged messages lost: acknowledged message "
                         rf"'{c['id']}#\d+' \(stream seq \d+\) is missing from the stream",
                         c["reason"]), c["reason"]
    # The servers end cleanly all the same: only the check failed.
    assert [i["outcome"] for i in run["instances"] if i["role"] == "server"] == ["passed"] * 3


@pytest.mark.live
@pytest.mark.slow
def test_a_client_killed_for_good_fails_the_servers_at_once(tmp_path: Path) -> None:
    """The servers wait for the clients' `clients-done` as watchers: with one client gone
    for good they fail naming it instead of waiting to the run's timeout. Then the other
    client, its servers gone, fails on max_outage (nats-py's first connect retried forever)."""
    _live_skip()
    faults = tmp_path / "faults.toml"
    # Once both clients have published 40, which they may reach a second apart: the first's
    # 40 found the other, at times, without its stream yet (then it failed on that, not on
    # the outage), and the second's, with 120 messages, the first at times done already.
    faults.write_text('[[faults]]\nat = { state = "published-40", count = 2 }\n'
                      'action = "kill"\ntargets = { role = "client", count = 1 }\n')
    started = time.monotonic()
    r = harness_cli("run", "nats", "-i", "5", "-p", "messages=600", "-p", "rate=100",
                    "-p", "milestone=40", "-p", "max_outage=10s", "--faults", str(faults),
                    "--no-fail-fast",
                    "--timeout", "200", "--outputs", str(tmp_path / "out"), "-q", timeout=240)
    took = time.monotonic() - started
    assert r.returncode == 1, r.stdout + r.stderr
    run = json.loads((only_run_dir(tmp_path / "out") / "run.json").read_text())
    servers = [i for i in run["instances"] if i["role"] == "server"]
    assert [i["outcome"] for i in servers] == ["failed"] * 3
    for s in servers:
        assert "the clients ended without 'clients-done'" in s["reason"], s["reason"]
        assert "killed" in s["reason"], s["reason"]
    (left,) = [i for i in run["instances"] if i["role"] == "client" and not i["note"]]
    assert "the cluster did not serve again" in left["reason"], left["reason"]
    assert took < 150, f"the run waited {took:.0f} s, towards its timeout"


@pytest.mark.live
@pytest.mark.long  # CI plays composition faults on smaller plans (tests/test_faults_live.py)
def test_the_cluster_loses_nothing_under_leader_faults(tmp_path: Path) -> None:
    """The leader killed and started again, a follower paused, the leader partitioned away:
    every acknowledged message is still there and the cluster served after each."""
    _live_skip()
    r = harness_cli("run", "--composition", str(PLAN / "compositions" / "leader-faults.toml"),
                    "--outputs", str(tmp_path), "-q", timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = only_run_dir(tmp_path)
    steps = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]
    applied = [s for s in steps if s["step"] == "applied"]
    assert [s["action"] for s in applied] == ["kill", "pause", "partition"]
    assert [s["step"] for s in steps].count("undone") == 3
    killed = applied[0]["chosen"]
    assert len(killed) == 1 and killed[0].startswith("servers/")
    run = json.loads((run_dir / "run.json").read_text())
    assert next(i for i in run["instances"] if i["id"] == killed[0])["restarts"] == 1
    events = (run_dir / "events.jsonl").read_text()
    assert events.count("acknowledged messages are in the stream") == 2


def test_the_plan_is_unshadowed_from_nats_py() -> None:
    """The plan's directory is named like nats-py's package; a client must import the real
    one (the harness puts the plan's parent directory on the import path)."""
    code = ("import sys; sys.path.insert(0, 'scenarios'); "
            "from scenarios.nats import node; node._unshadow(); import nats; "
            "print(nats.__file__)")
    if importlib.util.find_spec("nats.js") is None:
        pytest.skip("nats-py not installed")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0 and "scenarios" not in out.stdout, out.stdout + out.stderr



def _signalled(run_dir: Path, state: str, timeout: float = 120) -> None:
    """Wait until some instance of the run signalled `state`."""
    deadline = time.monotonic() + timeout
    needle = f'"state":"{state}"'
    while time.monotonic() < deadline:
        events = run_dir / "events.jsonl"
        if events.exists() and needle in events.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"no instance signalled {state} in {timeout:g} s")


@pytest.mark.live
@pytest.mark.long  # CI plays live faults on a smaller plan (tests/test_fault_cli.py)
def test_faults_played_live_from_the_command_line_lose_nothing(tmp_path: Path) -> None:
    """The same leader faults as leader-faults.toml, played by `harness fault` from another
    process while the run goes on."""
    _live_skip()
    run = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--composition",
         str(PLAN / "compositions" / "live.toml"), "--outputs", str(tmp_path), "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in tmp_path.iterdir() if p.is_dir()]:
            assert time.monotonic() < deadline and run.poll() is None, "the run did not start"
            time.sleep(0.2)
        run_dir = only_run_dir(tmp_path)
        for state, args in (
            ("published-200", ["kill", "--topic", "nats:leader", "--duration", "10s"]),
            ("published-600", ["pause", "--topic", "nats:follower", "--duration", "8s"]),
            ("published-1000", ["--json", json.dumps({
                "action": "partition", "targets": {"topic": "nats:leader"},
                "others": {"topic": "nats:followers"}, "duration": "10s"})]),
        ):
            _signalled(run_dir, state)
            r = harness_cli("fault", str(run_dir), *args)
            assert r.returncode == 0, r.stdout + r.stderr
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, output
    steps = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]
    applied = [s for s in steps if s["step"] == "applied"]
    assert [s["action"] for s in applied] == ["kill", "pause", "partition"]
    assert all(s["asked_by"].startswith("harness fault pid ") for s in applied)
    assert [s["step"] for s in steps].count("undone") == 3
    events = (run_dir / "events.jsonl").read_text()
    assert events.count("acknowledged messages are in the stream") == 2


class _Info:
    def __init__(self, leader: str | None) -> None:
        self.cluster = type("C", (), {"leader": leader})()


class _SlowCluster:
    """Answers `stream_info` with a timeout `fails` times, then names servers/1."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.asked = 0

    async def connect(self) -> _SlowCluster:
        return self

    async def stream_info(self, stream: str) -> _Info:
        self.asked += 1
        if self.asked <= self.fails:
            raise TimeoutError("nats: timeout")
        return _Info("servers/1")


class _Env:
    def __init__(self) -> None:
        self.params = {"stream": "S", "leader_poll": 0.01, "publish_timeout": 0.1}
        self.global_seq = 4
        self.published: list[tuple[str, Any]] = []
        self.messages: list[str] = []
        self.sync = self

    async def publish(self, topic: str, value: Any) -> None:
        self.published.append((topic, value))

    async def record_message(self, message: str) -> None:
        self.messages.append(message)


def _report_leader(fails: int) -> tuple[_Env, _SlowCluster]:
    import asyncio

    from scenarios.nats.client import Publisher

    env, cluster = _Env(), _SlowCluster(fails)
    me = Publisher(env, cluster, sorted(PEERS))  # type: ignore[arg-type]

    async def main() -> None:
        stop = asyncio.Event()
        stop.set()  # the client was done before the cluster first answered
        await asyncio.wait_for(me.report_leader(stop), 5)

    asyncio.run(main())
    return env, cluster


@pytest.mark.skipif(importlib.util.find_spec("nats") is None, reason="nats-py not installed")
def test_the_leader_is_reported_once_even_if_the_cluster_answers_only_after_the_checks() -> None:
    env, cluster = _report_leader(fails=3)
    assert env.published == [(_names.LEADER_TOPIC, "servers/1"),
                              (_names.FOLLOWERS_TOPIC, ["servers/0", "servers/2"]),
                              (_names.FOLLOWER_TOPIC, "servers/0")]
    assert env.messages == ["stream leader: servers/1"]
    assert cluster.asked == 4


@pytest.mark.skipif(importlib.util.find_spec("nats") is None, reason="nats-py not installed")
def test_a_leader_never_named_is_said_so_after_three_publish_timeouts() -> None:
    env, cluster = _report_leader(fails=10**6)
    assert env.published == []
    assert env.messages == ["stream leader: never seen (the cluster did not answer a stream "
                            "info request naming one)"]
    assert 2 <= cluster.asked <= 40  # 10 ms polls for 0.3 s, however loaded the machine


class _Ack:
    def __init__(self, seq: int) -> None:
        self.seq = seq


class _ForgetfulStream:
    """A stream that loses every message it holds after `forget_after` publishes and
    numbers the next ones from 1 again, as a cluster restarted without its store does."""

    def __init__(self, forget_after: int) -> None:
        self.forget_after = forget_after
        self.published = 0
        self.msgs: dict[int, bytes] = {}

    async def connect(self) -> _ForgetfulStream:
        return self

    async def publish(self, subject: str, data: bytes, **_: Any) -> _Ack:
        if self.published == self.forget_after:
            self.msgs.clear()
        self.published += 1
        seq = len(self.msgs) + 1
        self.msgs[seq] = data
        return _Ack(seq)

    async def get_msg(self, stream: str, seq: int) -> Any:
        import nats.js.errors

        if seq not in self.msgs:
            raise nats.js.errors.NotFoundError
        return type("M", (), {"data": self.msgs[seq]})()


class _PublishingEnv(_Env):
    instance_id = "clients/0"

    def __init__(self, messages: int) -> None:
        super().__init__()
        self.params |= {"messages": messages, "rate": 10000.0, "milestone": 10**6,
                        "max_outage": 5.0, "startup_timeout": 5.0, "settle_timeout": 5.0,
                        "lose_one": False}

    async def signal_entry(self, state: str) -> None:
        pass


@pytest.mark.skipif(importlib.util.find_spec("nats") is None, reason="nats-py not installed")
def test_messages_lost_under_sequence_numbers_acknowledged_again_are_named() -> None:
    """A stream that lost its first 3 messages acknowledges the next 4 at sequences 1-4:
    each of those sequences then holds a message, but not the first one acknowledged
    there."""
    import asyncio

    from scenarios.nats.client import Publisher

    env, stream = _PublishingEnv(messages=7), _ForgetfulStream(forget_after=3)
    me = Publisher(env, stream, sorted(PEERS))  # type: ignore[arg-type]

    async def main() -> list[str]:
        await me.publish_all()
        return lost_messages(me.acked, await me.read_back())

    problems = asyncio.run(main())
    assert problems == [f"stream seq {k + 1} holds 'clients/0#{k + 3}', not the "
                        f"acknowledged 'clients/0#{k}'" for k in range(3)]
    assert summarize(problems, len(me.acked)).startswith("3 of 7 acknowledged messages lost")
