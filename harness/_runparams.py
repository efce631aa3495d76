"""`RunParams`: the instance environment, the `TEST_*` variables (docs/contracts.md, section 3).

One type writes them (the supervisor, `to_environ`) and reads them (the SDK's `RunEnv`,
`from_environ`), in the manner of Testground's `runtime.RunParams`. Instances import this
module at every start: it imports nothing heavier than orjson.
"""

from __future__ import annotations

# ruff: noqa: RUF009  (each field's default is a dataclasses.field made by `_var`)
import dataclasses
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import orjson

_Kind = Literal["str", "int", "float", "bool", "path", "json", "optional"]


PROFILE_ENV = "HARNESS_PROFILE_CPU"
"""Not a `TEST_*` variable: set (to seconds of CPU between samples) by `harness run
--profile-cpu`, it has the SDK write a CPU-time profile of each instance
(`harness.sdk._profile`)."""


STACK_SIGNAL = signal.SIGUSR2
"""What the supervisor sends a Python instance (one it forked from the case's entrypoint)
before it stops it: the SDK has it write every thread's stack to stderr then
(`faulthandler`), so that one stuck in its own code (a `time.sleep` in an async test, a busy
loop) shows where, then where each task of its event loop awaits (`TASK_HEADER`). Never
sent to a program: its default action ends a process."""

TASK_HEADER = "Task {name} awaiting (most recent call first):"
"""The head of a task's stack in that dump (the SDK's `write_task_stacks`), as
faulthandler heads a thread's; the supervisor reads both (`harness._stderr`)."""


class RunEnvError(RuntimeError):
    """The process was not started by the harness (or with a broken environment)."""


def _var(name: str, kind: _Kind = "str", *, default: Any = dataclasses.MISSING,
         omit_unset: bool = False) -> Any:
    """A field carried by the environment variable `name`. Without a default the variable
    must be set; with one, an absent or empty variable reads as the default."""
    meta = {"env": name, "kind": kind, "omit_unset": omit_unset}
    if kind == "json":
        return dataclasses.field(default_factory=dict, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(kw_only=True)
class RunParams:
    """What the supervisor tells each instance about its run.

    `from_environ(to_environ(p)) == p` for every value; an empty optional string is the same
    as None (the variable is written empty, or not at all for `sync_token`).
    """

    plan: str = _var("TEST_PLAN")
    case: str = _var("TEST_CASE")
    run_id: str = _var("TEST_RUN")
    instance_count: int = _var("TEST_INSTANCE_COUNT", "int")
    group_id: str = _var("TEST_GROUP_ID")
    group_instance_count: int = _var("TEST_GROUP_INSTANCE_COUNT", "int")
    global_seq: int = _var("TEST_GLOBAL_SEQ", "int")
    group_seq: int = _var("TEST_GROUP_SEQ", "int")
    instance_id: str = _var("TEST_INSTANCE_ID")
    role: str = _var("TEST_INSTANCE_ROLE", default="")
    params: Mapping[str, Any] = _var("TEST_INSTANCE_PARAMS", "json")
    outputs_path: Path = _var("TEST_OUTPUTS_PATH", "path")
    sync_socket: str | None = _var("TEST_SYNC_SOCKET", "optional", default=None)
    sync_tcp: str | None = _var("TEST_SYNC_TCP", "optional", default=None)
    sync_token: str | None = _var("TEST_SYNC_TOKEN", "optional", default=None, omit_unset=True)
    runner: str = _var("TEST_RUNNER", default="")
    data_network: str | None = _var("TEST_DATA_NETWORK", "optional", default=None)
    data_ip: str | None = _var("TEST_DATA_IP", "optional", default=None)
    sidecar: bool = _var("TEST_SIDECAR", "bool", default=False)
    start_time: float = _var("TEST_START_TIME", "float", default=0.0)
    clock_file: str | None = _var("TEST_CLOCK_FILE", "optional", default=None)
    restarts: int = _var("TEST_RESTARTS", "int", default=0)

    def __post_init__(self) -> None:
        for f in _carried():
            if f.metadata["kind"] == "optional" and getattr(self, f.name) == "":
                setattr(self, f.name, None)  # one spelling of "not set"

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        """The names of every variable of the contract."""
        return tuple(f.metadata["env"] for f in _carried())

    def to_environ(self) -> dict[str, str]:
        """The variables to start the instance with."""
        out = {}
        for f in _carried():
            value = getattr(self, f.name)
            if value is None and f.metadata["omit_unset"]:
                continue
            out[f.metadata["env"]] = _write(f.metadata["kind"], value)
        return out

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read the variables (default: this process's); RunEnvError names the first one
        missing or bad."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in _carried():
            name = f.metadata["env"]
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if name not in env:
                    raise RunEnvError(f"{name} is not set: run this through the harness")
            elif not env.get(name):
                continue  # the field's default
            values[f.name] = _read(f.metadata["kind"], name, env[name])
        return cls(**values)


def _carried() -> tuple[dataclasses.Field[Any], ...]:
    return tuple(f for f in dataclasses.fields(RunParams) if "env" in f.metadata)


def _write(kind: str, value: Any) -> str:
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        return repr(float(value))
    if kind == "json":
        return orjson.dumps(dict(value)).decode()
    return "" if value is None else str(value)


def _read(kind: str, name: str, text: str) -> Any:
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise RunEnvError(f"{name}={text!r} is not a whole number") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise RunEnvError(f"{name}={text!r} is not a number") from None
    if kind == "bool":
        return text == "true"
    if kind == "path":
        return Path(text)
    if kind == "json":
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise RunEnvError(f"{name} is not JSON: {e}") from None
        if not isinstance(value, dict):
            raise RunEnvError(f"{name} is not a JSON object")
        return value
    return text
