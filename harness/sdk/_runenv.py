"""`RunEnv`: what an instance knows about its run, read from the environment."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

from harness._runparams import RunParams
from harness.sdk._clock import Clock
from harness.sync._protocol import METRICS_TOPIC, EventType

if TYPE_CHECKING:
    import structlog

    from harness.observe import Metrics
    from harness.sdk._network import NetworkClient
    from harness.sync import SyncClient



@dataclasses.dataclass(kw_only=True)
class RunEnv(RunParams):
    """The run as this instance sees it (docs/contracts.md, section 3): the `RunParams`
    read by `RunEnv.from_environ()`, and the clients the test function uses.

    `sync`, `network` and `log` are set by `invoke` before the test function runs.
    """

    sync: SyncClient = dataclasses.field(init=False, repr=False, compare=False)
    network: NetworkClient = dataclasses.field(init=False, repr=False, compare=False)
    log: structlog.stdlib.BoundLogger = dataclasses.field(init=False, repr=False, compare=False)

    def param(self, name: str) -> Any:
        """A declared param's value (typed and defaulted by the supervisor)."""
        if name not in self.params:
            raise KeyError(f"no param {name!r} (params: {', '.join(sorted(self.params))})")
        return self.params[name]

    @functools.cached_property
    def clock(self) -> Clock:
        """This instance's wall clock, skewed by the run's clock faults (`clock.time()`
        instead of `time.time()`; `clock.sleep_until(t)`). The real clock when nothing
        skews it."""
        return Clock(self.clock_file)

    @property
    def is_restart(self) -> bool:
        """True when the supervisor restarted this instance (`restarts` times so far): the
        test function runs again, with the same id, address, outputs and environment."""
        return self.restarts > 0

    # -- events --------------------------------------------------------------------------

    async def record_message(self, message: str, **fields: Any) -> None:
        """Log a line and send it to the run's event record."""
        self.log.info(message, **fields)
        await self.sync.signal_event({"type": EventType.MESSAGE, "message": message})

    async def record_success(self) -> None:
        """This instance passed (it must still exit cleanly)."""
        await self.sync.signal_event({"type": EventType.SUCCESS})

    async def record_failure(self, error: str) -> None:
        """This instance failed, for `error`."""
        self.log.error("failure", error=error)
        await self._signal_end(EventType.FAILURE, error)

    @functools.cached_property
    def metrics(self) -> Metrics:
        """This instance's own metrics: `counter`, `gauge`, `histogram` and `point`, each
        with labels, recorded to `metrics.jsonl` in its outputs. The report plots them and
        the run's aggregated /metrics serves them. Closed when the test function ends."""
        from harness.observe import Metrics  # only for instances that record metrics

        return Metrics(self.outputs_path / "metrics.jsonl")

    async def expose_metrics(self, port: int, path: str = "/metrics") -> None:
        """Tell the supervisor to scrape this instance's Prometheus endpoint (served on
        the instance's data address) into the run's outputs and its aggregated /metrics.
        ValueError for a port outside 1-65535 or a path not starting with /."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"expose_metrics: port must be an int from 1 to 65535, not {port!r}")
        if not isinstance(path, str) or not path.startswith("/") or any(
                c.isspace() for c in path):
            raise ValueError(f"expose_metrics: path must start with / and hold no spaces, "
                             f"not {path!r}")
        url = f"http://{self.data_ip or '127.0.0.1'}:{port}{path}"
        await self.sync.publish(METRICS_TOPIC, {"instance": self.instance_id, "url": url})

    async def record_crash(self, error: str, stacktrace: str = "") -> None:
        """This instance crashed (an unexpected exception)."""
        self.log.error("crash", error=error)
        await self._signal_end(EventType.CRASH, error, stacktrace)

    async def _signal_end(self, kind: EventType, error: str, stacktrace: str = "") -> None:
        event = {"type": kind, "error": error}
        if kind == EventType.CRASH:
            event["stacktrace"] = stacktrace
        await self.sync.signal_event(event)
