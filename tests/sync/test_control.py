"""The run's control connection: only it may send `fault`, and only the run's control token
makes it (docs/contracts.md, 4)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from harness.faults import Fault, FaultError
from harness.sync import CONTROL, SyncError, SyncServer, SyncState, Tokens, connect_unix

from ._util import run, serving

KILL = {"action": "kill", "at": 0, "targets": {"instances": ["g/0"]}}


class _Conductor:
    """Stands in for the conductor: records what it was asked to play."""

    def __init__(self, refuse: str | None = None) -> None:
        self.asked: list[tuple[Fault, str]] = []
        self.refuse = refuse

    async def inject(self, fault: Fault, asked_by: str) -> dict[str, Any]:
        if self.refuse:
            raise FaultError(self.refuse)
        self.asked.append((fault, asked_by))
        return {"fault": "live 0", "chosen": ["g/0"], "asked_by": asked_by}


def _server(conductor: _Conductor | None) -> tuple[SyncServer, list[dict[str, Any]], Tokens]:
    events: list[dict[str, Any]] = []
    tokens = Tokens()
    server = SyncServer(SyncState(["g/0"], record=events.append), tokens=tokens,
                        faults=conductor.inject if conductor else None)
    return server, events, tokens


def test_an_instance_cannot_inject_a_fault() -> None:
    async def main() -> None:
        conductor = _Conductor()
        server, events, tokens = _server(conductor)
        async with serving(server) as path, connect_unix(path, "g/0",
                                                         tokens.for_instance("g/0")) as c:
            with pytest.raises(SyncError, match="only the run's control connection"):
                await c.request("fault", fault=KILL)
            await c.signal_event({"type": "success"})  # and it goes on as before
        assert conductor.asked == []
        assert [e["type"] for e in events if e["kind"] == "event"] == ["success"]

    run(main)


@pytest.mark.parametrize("whose", ["an instance's", "a guess", "none", "another run's"])
def test_only_the_runs_control_token_makes_the_control_connection(whose: str) -> None:
    async def main() -> None:
        conductor = _Conductor()
        server, events, tokens = _server(conductor)
        token = {"an instance's": tokens.for_instance("g/0"), "a guess": "0" * 64,
                 "none": None, "another run's": Tokens().control()}[whose]
        async with serving(server) as path:
            with pytest.raises(SyncError, match="hello refused"):
                async with connect_unix(path, CONTROL, token) as c:
                    await c.request("fault", fault=KILL)
        assert conductor.asked == []
        assert [e["status"] for e in events if e["kind"] == "connection"] == ["refused"]

    run(main)


def test_the_control_connection_plays_faults_and_nothing_else() -> None:
    async def main() -> None:
        conductor = _Conductor()
        server, events, tokens = _server(conductor)
        async with serving(server) as path, connect_unix(path, CONTROL, tokens.control()) as c:
            reply = await c.request("fault", fault=KILL, by="harness fault pid 1")
            assert reply["fault"]["chosen"] == ["g/0"]
            (fault, asked_by), = conductor.asked
            assert (fault, asked_by) == (Fault.from_data(KILL), "harness fault pid 1")
            await c.request("fault", fault=KILL)  # without `by`: the control identity
            assert conductor.asked[-1][1] == CONTROL
            with pytest.raises(SyncError, match="may only send fault"):
                await c.signal_entry("ready")
            with pytest.raises(SyncError, match=r"fault refused: .*action must be one of"):
                await c.request("fault", fault={"action": "kil", "at": 0})
            with pytest.raises(SyncError, match="'by' must be a label"):
                await c.request("fault", fault=KILL, by="x" * 1000)
        assert not [e for e in events if e["kind"] == "signal"]
        assert len(conductor.asked) == 2

    run(main)


@pytest.mark.parametrize(("conductor", "error"), [
    (_Conductor(refuse="fault (kill): targets: no group 'x'"),
     "fault refused: fault \\(kill\\): targets: no group 'x'"),
    (None, "fault refused: the run takes no faults now"),
])
def test_a_fault_the_run_cannot_play_is_refused_with_its_reason(
    conductor: _Conductor | None, error: str
) -> None:
    async def main() -> None:
        server, _, tokens = _server(conductor)
        async with serving(server) as path, connect_unix(path, CONTROL, tokens.control()) as c:
            with pytest.raises(SyncError, match=error):
                await c.request("fault", fault=KILL)
            with trio.fail_after(5):  # the connection still serves
                with pytest.raises(SyncError, match=error):
                    await c.request("fault", fault=KILL)

    run(main)


def test_an_open_service_has_no_control_connection() -> None:
    async def main() -> None:
        conductor = _Conductor()
        server = SyncServer(SyncState(["g/0"]), faults=conductor.inject)  # no tokens
        async with serving(server) as path, connect_unix(path, CONTROL) as c:
            with pytest.raises(SyncError, match="only the run's control connection"):
                await c.request("fault", fault=KILL)
        assert conductor.asked == []

    run(main)
