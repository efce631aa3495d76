"""`RunEnv`: what an instance knows about its run, read from the environment."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import structlog

    from harness.observe import Metrics
    from harness.sdk._network import NetworkClient
    from harness.sync import SyncClient


METRICS_TOPIC = "harness:metrics"
"""Where instances announce their metrics endpoints ({"instance", "url"})."""


class RunEnvError(RuntimeError):
    """The process was not started by the harness (or with a broken environment)."""


@dataclasses.dataclass
class RunEnv:
    """The run as this instance sees it (docs/contracts.md, section 3).

    `sync`, `network` and `log` are set by `invoke` before the test function runs.
    """

    plan: str
    case: str
    run_id: str
    instance_count: int
    group_id: str
    group_instance_count: int
    global_seq: int
    group_seq: int
    instance_id: str
    role: str
    params: Mapping[str, Any]
    outputs_path: Path
    sync_socket: str | None
    sync_tcp: str | None
    sync_token: str | None
    runner: str
    data_network: str | None
    data_ip: str | None
    sidecar: bool
    start_time: float
    sync: SyncClient = dataclasses.field(init=False, repr=False)
    network: NetworkClient = dataclasses.field(init=False, repr=False)
    log: structlog.stdlib.BoundLogger = dataclasses.field(init=False, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RunEnv:
        """Read the TEST_* variables; RunEnvError names the first one missing or bad."""
        env = os.environ if environ is None else environ

        def need(name: str) -> str:
            if name not in env:
                raise RunEnvError(f"{name} is not set: run this through the harness")
            return env[name]

        def number(name: str) -> int:
            try:
                return int(need(name))
            except ValueError:
                raise RunEnvError(f"{name}={env[name]!r} is not a whole number") from None

        try:
            params = orjson.loads(env.get("TEST_INSTANCE_PARAMS", "{}") or "{}")
        except orjson.JSONDecodeError as e:
            raise RunEnvError(f"TEST_INSTANCE_PARAMS is not JSON: {e}") from None
        return cls(
            plan=need("TEST_PLAN"),
            case=need("TEST_CASE"),
            run_id=need("TEST_RUN"),
            instance_count=number("TEST_INSTANCE_COUNT"),
            group_id=need("TEST_GROUP_ID"),
            group_instance_count=number("TEST_GROUP_INSTANCE_COUNT"),
            global_seq=number("TEST_GLOBAL_SEQ"),
            group_seq=number("TEST_GROUP_SEQ"),
            instance_id=need("TEST_INSTANCE_ID"),
            role=env.get("TEST_INSTANCE_ROLE", ""),
            params=params,
            outputs_path=Path(need("TEST_OUTPUTS_PATH")),
            sync_socket=env.get("TEST_SYNC_SOCKET") or None,
            sync_tcp=env.get("TEST_SYNC_TCP") or None,
            sync_token=env.get("TEST_SYNC_TOKEN") or None,
            runner=env.get("TEST_RUNNER", ""),
            data_network=env.get("TEST_DATA_NETWORK") or None,
            data_ip=env.get("TEST_DATA_IP") or None,
            sidecar=env.get("TEST_SIDECAR", "") == "true",
            start_time=float(env.get("TEST_START_TIME", "0") or 0),
        )

    def param(self, name: str) -> Any:
        """A declared param's value (typed and defaulted by the supervisor)."""
        if name not in self.params:
            raise KeyError(f"no param {name!r} (params: {', '.join(sorted(self.params))})")
        return self.params[name]

    # -- events --------------------------------------------------------------------------

    async def record_message(self, message: str, **fields: Any) -> None:
        """Log a line and send it to the run's event record."""
        self.log.info(message, **fields)
        await self.sync.signal_event({"type": "message", "message": message})

    async def record_success(self) -> None:
        """This instance passed (it must still exit cleanly)."""
        await self.sync.signal_event({"type": "success"})

    async def record_failure(self, error: str) -> None:
        """This instance failed, for `error`."""
        self.log.error("failure", error=error)
        await self._signal_end("failure", error)

    @functools.cached_property
    def metrics(self) -> Metrics:
        """This instance's own metrics: `counter`, `gauge`, `histogram` and `point`, each
        with labels, recorded to `metrics.jsonl` in its outputs. The report plots them and
        the run's aggregated /metrics serves them. Closed when the test function ends."""
        from harness.observe import Metrics  # only for instances that record metrics

        return Metrics(self.outputs_path / "metrics.jsonl")

    async def expose_metrics(self, port: int, path: str = "/metrics") -> None:
        """Tell the supervisor to scrape this instance's Prometheus endpoint (served on
        the instance's data address) into the run's outputs and its aggregated /metrics."""
        url = f"http://{self.data_ip or '127.0.0.1'}:{port}{path}"
        await self.sync.publish(METRICS_TOPIC, {"instance": self.instance_id, "url": url})

    async def record_crash(self, error: str, stacktrace: str = "") -> None:
        """This instance crashed (an unexpected exception)."""
        self.log.error("crash", error=error)
        await self._signal_end("crash", error, stacktrace)

    async def _signal_end(self, kind: str, error: str, stacktrace: str = "") -> None:
        event = {"type": kind, "error": error}
        if kind == "crash":
            event["stacktrace"] = stacktrace
        await self.sync.signal_event(event)
