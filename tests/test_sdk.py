"""The instance SDK: RunEnv from the environment, typed topics, network requests."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import trio

from harness import sdk
from harness.sync import SyncState, connect_unix

from .sync._util import run, running_server

ENV = {
    "TEST_PLAN": "p", "TEST_CASE": "c", "TEST_RUN": "r1", "TEST_INSTANCE_COUNT": "3",
    "TEST_GROUP_ID": "g", "TEST_GROUP_INSTANCE_COUNT": "3", "TEST_GLOBAL_SEQ": "2",
    "TEST_GROUP_SEQ": "2", "TEST_INSTANCE_ID": "g/2", "TEST_INSTANCE_ROLE": "miner",
    "TEST_INSTANCE_PARAMS": '{"n": 5}', "TEST_OUTPUTS_PATH": "/tmp/x",
    "TEST_SYNC_SOCKET": "/tmp/s.sock", "TEST_SIDECAR": "true", "TEST_DATA_IP": "198.18.0.3",
    "TEST_SYNC_TOKEN": "t0k",
}


def test_runenv_reads_the_contract() -> None:
    env = sdk.RunEnv.from_environ(ENV)
    assert (env.instance_count, env.global_seq, env.role, env.data_ip) == (3, 2, "miner",
                                                                            "198.18.0.3")
    assert env.param("n") == 5 and env.sidecar and env.outputs_path == Path("/tmp/x")
    assert env.sync_token == "t0k"
    with pytest.raises(KeyError, match="no param 'm'"):
        env.param("m")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("TEST_PLAN", None, "TEST_PLAN is not set"),
    ("TEST_INSTANCE_COUNT", "three", "not a whole number"),
    ("TEST_INSTANCE_PARAMS", "{", "not JSON"),
])
def test_runenv_names_what_is_wrong(key: str, value: str | None, message: str) -> None:
    env = dict(ENV)
    if value is None:
        del env[key]
    else:
        env[key] = value
    with pytest.raises(sdk.RunEnvError, match=message):
        sdk.RunEnv.from_environ(env)


@pytest.mark.parametrize(("port", "path", "message"), [
    (70000, "/metrics", "port must be an int from 1 to 65535, not 70000"),
    ("9100", "/metrics", "port must be an int from 1 to 65535, not '9100'"),
    # published as http://...:9100metrics, which ended the supervisor in a traceback
    (9100, "metrics", "path must start with / and hold no spaces, not 'metrics'"),
])
def test_expose_metrics_refuses_what_makes_no_url(port: Any, path: str, message: str) -> None:
    env = sdk.RunEnv.from_environ(ENV)
    with pytest.raises(ValueError, match=f"^expose_metrics: {message}$"):
        trio.run(env.expose_metrics, port, path)  # refused before it touches the sync


@dataclasses.dataclass
class Addr:
    host: str
    port: int


def test_a_topic_decodes_json_numbers_as_its_kind_and_names_itself_when_it_cannot() -> None:
    """A float topic refused the JSON 1 another program published, an int topic took
    True, and a dataclass topic's error named neither the topic nor the payload."""
    assert sdk.Topic("t", float).decode(1) == 1.0
    assert isinstance(sdk.Topic("t", float).decode(1), float)
    with pytest.raises(TypeError, match=r"^topic 'n' carries int, got True$"):
        sdk.Topic("n", int).decode(True)
    with pytest.raises(TypeError, match=r"^topic 'addrs' carries Addr, got \{'host': 'a'\}: "):
        sdk.Topic("addrs", Addr).decode({"host": "a"})
    with pytest.raises(TypeError, match=r"^topic 'addrs' carries Addr, got 5: "):
        sdk.Topic("addrs", Addr).decode(5)
    assert sdk.Topic("b", bool).decode(True) is True


def test_typed_topic_round_trip() -> None:
    topic = sdk.Topic("addrs", Addr)

    async def main() -> None:
        async with running_server() as (path, _, _), connect_unix(path) as c:
            await topic.publish(c, Addr("a", 1))
            await topic.publish(c, Addr("b", 2))
            assert await topic.collect(c, 2) == [Addr("a", 1), Addr("b", 2)]
            plain = sdk.Topic("n", int)
            await plain.publish(c, 7)
            await c.publish("n", "eight")
            with pytest.raises(TypeError, match="carries int"):
                await plain.collect(c, 2)

    run(main)


def test_network_configure_sends_a_checked_request_and_gets_the_callback() -> None:
    applied: list[tuple[str | None, dict[str, Any]]] = []

    async def handler(instance: str | None, config: dict[str, Any]) -> None:
        applied.append((instance, config))
        if config["default"]["latency_ms"] > 1000:
            raise ValueError("too slow")

    async def main() -> None:
        async with running_server(network=handler) as (path, _, _), connect_unix(path, "g/2") as c:
            env = sdk.RunEnv.from_environ(ENV)
            env.sync = c
            env.network = sdk.NetworkClient(env)
            await env.network.configure(sdk.LinkShape(latency_ms=20),
                                        rules=[{"peers": ["198.18.0.4"], "drop": True}],
                                        callback_state="shaped")
            with pytest.raises(sdk.SyncError, match="refused: too slow"):
                await env.network.configure({"latency_ms": 5000})
            with pytest.raises(ValueError, match="loss_pct"):  # checked before it travels
                await env.network.configure({"loss_pct": 200})
        (who, config), _ = applied
        assert who == "g/2"
        assert config["default"]["latency_ms"] == 20
        assert config["rules"] == [{"peers": ["198.18.0.4"], "drop": True}]
        assert config["callback_state"] == "shaped"

    trio.run(main)


def test_shape_and_wait_meets_the_instances_shaped_or_not() -> None:
    """Two instances of a composition, one shaped and one not: the unshaped one waited at
    the barrier for signals only the shaped ones' changes sent, until the run's timeout."""
    applied: list[str | None] = []
    states: list[SyncState] = []

    async def handler(instance: str | None, config: dict[str, Any]) -> None:
        applied.append(instance)
        states[0].signal_entry(config["callback_state"], instance)  # as a runner does

    async def one(path: str, iid: str, shape: sdk.LinkShape | None) -> None:
        async with connect_unix(path, iid) as c:
            env = sdk.RunEnv.from_environ({**ENV, "TEST_INSTANCE_COUNT": "2",
                                           "TEST_SIDECAR": "true"})
            env.sync = c
            env.network = sdk.NetworkClient(env)
            await env.network.shape_and_wait(shape)

    async def main() -> None:
        async with running_server(network=handler) as (path, state, _):
            states.append(state)
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(one, path, "far/0", sdk.LinkShape(latency_ms=30))
                    nursery.start_soon(one, path, "near/0", None)

    trio.run(main)
    assert applied == ["far/0"]  # only the shaped one asked for a change


@pytest.mark.parametrize(
    ("backend", "loop"), [("trio", None), ("asyncio", "asyncio"), ("uvloop", "uvloop")]
)
def test_run_on_runs_on_the_backend_a_plan_names(backend: str, loop: str | None) -> None:
    """A case's `backend`: trio, asyncio's own event loop, or asyncio on uvloop's."""
    import asyncio

    import sniffio

    async def where(tag: str) -> tuple[str, str | None, str]:
        library = sniffio.current_async_library()
        if library != "asyncio":
            return library, None, tag
        return library, type(asyncio.get_running_loop()).__module__.split(".")[0], tag

    library = "trio" if backend == "trio" else "asyncio"
    assert sdk.run_on(backend, where, "x") == (library, loop, "x")


@pytest.mark.parametrize(("second", "kind", "error"), [
    (sdk.TestFailure("peer 3 answered 41"), "failure", r"TestFailure: peer 3 answered 41"),
    # raised in the test's own code (this file): the reason says where
    (ValueError("bad frame"), "crash", r"ValueError: bad frame \(at test_sdk\.py:\d+\)"),
])
def test_failures_of_several_tasks_at_once_are_each_said(
    second: Exception, kind: str, error: str, tmp_path: Path,
) -> None:
    """Two checks failing at once read "crashed: ExceptionGroup: Exceptions from Trio
    nursery (2 sub-exceptions)": a crash, naming neither."""
    from harness.sdk._invoke import _run

    async def case(env: sdk.RunEnv) -> None:
        go = trio.Event()

        async def fail(e: Exception) -> None:
            await go.wait()  # both wake in one batch: neither is cancelled first
            raise e

        async with trio.open_nursery() as n:
            n.start_soon(fail, sdk.TestFailure("peer 3 answered"))
            n.start_soon(fail, second)
            await trio.sleep(0.01)
            go.set()

    async def main() -> None:
        async with running_server() as (path, _, events):
            env = sdk.RunEnv.from_environ({**ENV, "TEST_SYNC_SOCKET": path,
                                           "TEST_OUTPUTS_PATH": str(tmp_path)})
            del env.sync_token  # type: ignore[attr-defined]
            assert await _run(case, env) == 1
        (end,) = [e for e in events if e.get("type") in ("failure", "crash")]
        head, _, errors = end["error"].partition(": ")
        assert (end["type"], head) == (kind, "2 errors at once")
        first, *other = errors.split("; ")
        if first != "TestFailure: peer 3 answered":
            first, other = other[0], [first]
        assert first == "TestFailure: peer 3 answered" and len(other) == 1, errors
        assert re.fullmatch(error, other[0]), errors

    run(main)


@pytest.mark.parametrize(("args", "message"), [
    (["nope.plan:case"], "harness.sdk: cannot load nope.plan:case: No module named 'nope'"),
    (["harness.sdk:nothing"], "harness.sdk: cannot load harness.sdk:nothing: entrypoint "),
    (["a:b", "curio"], "harness.sdk: unknown backend 'curio'"),
])
def test_running_an_instance_by_hand_refuses_bad_arguments_in_one_line(
    args: list[str], message: str,
) -> None:
    """A RunEnvError or LookupError traceback."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "harness.sdk", *args], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith(message), r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_a_value_the_test_function_returns_is_said_to_be_ignored(tmp_path: Path) -> None:
    """`return False` passed the instance without a word."""
    import structlog

    from harness.sdk._invoke import _run

    async def case(env: sdk.RunEnv) -> bool:
        return False

    async def main() -> None:
        async with running_server() as (path, _, events):
            env = sdk.RunEnv.from_environ({**ENV, "TEST_SYNC_SOCKET": path,
                                           "TEST_OUTPUTS_PATH": str(tmp_path)})
            del env.sync_token  # type: ignore[attr-defined]
            with structlog.testing.capture_logs() as logs:
                assert await _run(case, env) == 0  # type: ignore[arg-type]
        assert [e["type"] for e in events if e.get("kind") == "event"] == ["start", "success"]
        (warning,) = [r for r in logs if r["log_level"] == "warning"]
        assert "returned a value, which is ignored" in warning["event"]
        assert warning["returned"] == "False"

    run(main)
