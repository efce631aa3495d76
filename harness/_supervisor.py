"""The supervisor: one Trio task tree per run, from the first instance to the last clean-up."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import structlog
import trio

import harness
from harness._errors import HarnessError, UsageError, single_cause
from harness._listen import Listen
from harness._outcome import InstanceState
from harness._progress import Progress, summary_table
from harness._rundir import new_run_id, write_json
from harness.observe import (
    JsonlWriter,
    TelemetrySampler,
    configure_logging,
    observe_run,
    record_run,
    write_report,
)
from harness.plans import InstanceSpec, RunSpec
from harness.runners import (
    Deployment,
    Launch,
    ProcessHost,
    get_runner,
    signal_group,
)
from harness.sdk._runenv import METRICS_TOPIC
from harness.sync import SyncServer, SyncState, Tokens

_log = structlog.get_logger("harness.supervisor")
_KILL_AFTER_S = 3.0  # SIGTERM, then SIGKILL if still alive this much later


@dataclasses.dataclass
class RunOptions:
    """How to run (as opposed to what: that is the RunSpec)."""

    outputs: Path = Path("outputs")
    fail_fast: bool = True  # stop the others soon after the first instance fails
    grace_s: float = 1.0  # how long the others may go on after the first failure
    sync_tcp: Listen | None = None  # serve the sync protocol over TCP here too
    progress: bool = True
    metrics_listen: Listen | None = ("127.0.0.1", 0)  # the aggregated /metrics
    scrape_interval: float = 2.0
    telemetry_interval: float = 1.0  # at least; longer for large runs (ss per instance)
    on_run_dir: Callable[[Path], None] | None = None  # told the run dir once it exists


@dataclasses.dataclass
class RunResult:
    """What a run ended with."""

    run_id: str
    run_dir: Path
    outcome: str  # "passed", "failed", "interrupted"
    exit_code: int
    reason: str | None
    instances: list[InstanceState]
    duration_s: float

    def summary(self) -> str:
        """The table printed at the end of a run."""
        head = f"run {self.run_id}: {self.outcome.upper()} in {self.duration_s:.1f} s"
        if self.reason:
            head += f" ({self.reason})"
        tail = f"outputs: {self.run_dir}"
        if (self.run_dir / "report.html").exists():
            tail += f"\nreport:  {self.run_dir / 'report.html'}"
        return f"{head}\n{summary_table(self.instances)}\n{tail}"


def run(spec: RunSpec, options: RunOptions | None = None) -> RunResult:
    """Run `spec` to its end and return the result (blocking; starts its own Trio loop)."""
    _check_programs(spec)
    try:
        result = trio.run(Supervisor(spec, options or RunOptions()).supervise)
    except BaseExceptionGroup as group:
        cause = single_cause(group)
        if isinstance(cause, HarnessError):
            raise cause from None
        raise
    _finish(result.run_dir)
    return result


def _finish(run_dir: Path) -> None:
    """The report and the history entry; a failure here is a warning, not the run's verdict."""
    for what, write in (("report", write_report), ("history", record_run)):
        try:
            write(run_dir)
        except Exception as e:
            _log.warning(f"could not write the {what}", error=f"{type(e).__name__}: {e}")
            print(f"harness: warning: could not write the {what}: {e}", file=sys.stderr)


def _check_programs(spec: RunSpec) -> None:
    programs = {g.program for g in spec.groups if g.program} | (
        {spec.case.program} if spec.case.program else set()
    )
    for argv in programs:
        program = _program(argv, spec.plan.path)
        if shutil.which(program) is None:
            where = "not found on PATH" if "/" not in program else "not an executable file"
            raise UsageError(f"program {argv[0]!r} cannot be run ({where})")


def _program(argv: Sequence[str], plan_dir: Path) -> str:
    """argv[0] as it is exec'd: `python` is this interpreter; a relative path is the plan's."""
    if argv[0] == "python":
        return sys.executable
    if "/" in argv[0] and not argv[0].startswith("/"):
        return str(plan_dir / argv[0])
    return argv[0]


class Supervisor:
    """Runs one RunSpec. Use `run()` unless you are already inside Trio."""

    def __init__(self, spec: RunSpec, options: RunOptions) -> None:
        self.spec = spec
        self.options = options
        self.run_id = new_run_id()
        self.run_dir = options.outputs.resolve() / self.run_id
        self.states = {i.id: InstanceState(i) for i in spec.instances}
        self.progress = Progress(spec.total) if options.progress else None
        self.started_at = time.time()
        self.all_exited = trio.Event()
        self.exited = 0
        self.first_failure: InstanceState | None = None
        self.failed = trio.Event()
        self.interrupted = False
        self.deployment: Deployment | None = None
        self._events: JsonlWriter | None = None
        self.metrics_url: str | None = None
        self.sock_dir = self.run_dir  # where the Unix sockets go (short paths only)
        self.tokens = Tokens()  # each instance's TEST_SYNC_TOKEN

    # -- events --------------------------------------------------------------------------

    def record(self, event: dict[str, Any]) -> None:
        """Every event of the run passes here: to events.jsonl, outcomes and progress."""
        if self._events is not None:  # stamps it with ts and mono
            self._events.write(event)
        kind = event.get("kind")
        inst = self.states.get(event.get("instance") or "")
        if kind == "event" and inst is not None:
            inst.record(event)
            if event.get("type") in ("failure", "crash"):
                self._note_failure(inst)
        elif kind == "signal" and self.progress:
            self.progress.phase = f"{event.get('state')} {event.get('seq')}/{self.spec.total}"

    def _note_failure(self, inst: InstanceState) -> None:
        if self.first_failure is None:
            self.first_failure = inst
            if self.progress:
                self.progress.note(f"instance {inst.spec.id} failed: {inst.verdict()[1]}")
            self.failed.set()
        self._count()

    def _count(self) -> None:
        if self.progress:
            ended = [s.verdict()[0] for s in self.states.values() if s.status is not None]
            still_running_failed = sum(
                1 for s in self.states.values()
                if s.status is None and s.recorded in ("failure", "crash")
            )
            self.progress.passed = sum(ended)
            self.progress.failed = len(ended) - sum(ended) + still_running_failed
            self.progress.update()

    # -- the run -------------------------------------------------------------------------

    async def supervise(self) -> RunResult:
        """The whole run; returns once everything it created is gone."""
        for inst in self.spec.instances:
            (self.run_dir / inst.id).mkdir(parents=True, exist_ok=True)
        configure_logging(json_path=self.run_dir / "supervisor.jsonl", console=False)
        # httpx logs every request at info: every metrics scrape would bury the run's log.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        _log.info("run starting", run=self.run_id, plan=self.spec.plan.name,
                  case=self.spec.case.name, instances=self.spec.total, runner=self.spec.runner)
        if self.options.on_run_dir:
            self.options.on_run_dir(self.run_dir)
        self._events = JsonlWriter(self.run_dir / "events.jsonl", flush_each=False)
        self._write_run_json(ended=False)
        sock_dir = self.sock_dir = self.run_dir
        if len(str(self.run_dir / "relay.sock")) > 100:  # AF_UNIX paths are short
            sock_dir = self.sock_dir = Path(tempfile.mkdtemp(prefix="harness-"))
        state = SyncState([i.id for i in self.spec.instances], record=self.record)
        server = SyncServer(state, tokens=self.tokens)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, nursery.cancel_scope)
                sock = await nursery.start(server.serve_unix, sock_dir / "sync.sock")
                tcp = None
                if self.options.sync_tcp:
                    bound = await nursery.start(server.serve_tcp, self.options.sync_tcp)
                    tcp = f"{bound[0]}:{bound[1]}"
                nursery.start_soon(self._tick)
                runner = get_runner(self.spec.runner)
                async with runner.deploy(self.spec, self.run_dir, state) as dep:
                    self.deployment = dep
                    server.network = dep.network
                    async with trio.open_nursery() as host_scope:
                        processes = await self._start_host(host_scope)
                        async with trio.open_nursery() as observers:
                            await self._observe(observers, state, processes)
                            await self._run_instances(processes, state, str(sock), tcp)
                            observers.cancel_scope.cancel()
                        host_scope.cancel_scope.cancel()
                nursery.cancel_scope.cancel()
        except BaseException as e:
            cause = single_cause(e)
            if isinstance(cause, HarnessError):  # e.g. the network could not be built
                self._write_run_json(ended=True, error=str(cause))
            raise
        finally:
            if sock_dir != self.run_dir:
                shutil.rmtree(sock_dir, ignore_errors=True)
            if self.progress:
                self.progress.finish()
            self._events.close()
        result = self._result()
        self._write_run_json(ended=True, result=result)
        _log.info("run ended", outcome=result.outcome, reason=result.reason)
        return result

    async def _start_host(self, nursery: trio.Nursery) -> ProcessHost:
        case = self.spec.case
        python = case.entrypoint and any(i.program is None for i in self.spec.instances)
        host = ProcessHost(case.entrypoint if python else None, case.backend)
        await nursery.start(host.run, self._project_root(), self._base_env())
        return host

    async def _observe(self, nursery: trio.Nursery, state: SyncState, host: ProcessHost) -> None:
        """Metrics scrapes (of the endpoints instances announce), the aggregated /metrics
        endpoint, and TCP and link telemetry, for as long as the instances run."""
        dep = self.deployment
        assert dep is not None
        client = None
        netns = {p.data_ip: p.netns for p in dep.placements.values() if p.netns}
        if netns:  # the data network is reachable only from inside: use a relay
            relay = self.sock_dir / "relay.sock"  # removed with it at the run's end
            hosts, out = self.run_dir / "relay.json", self.run_dir / "relay.log"
            write_json(hosts, netns)
            await host.spawn(Launch(self._base_env(), self.run_dir, out, out, None, [
                sys.executable, "-m", "harness.runners._relay", str(relay), str(hosts)]))
            client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(relay)),
                                       timeout=5)
        handle = await nursery.start(functools.partial(
            observe_run, self.run_dir, {}, interval=self.options.scrape_interval,
            listen=self.options.metrics_listen, run_id=self.run_id, client=client))
        self.metrics_url = handle.url
        if self.metrics_url and self.progress:
            self.progress.note(f"metrics of every instance: {self.metrics_url}")

        def announced(frame: bytes) -> None:
            item = orjson.loads(frame).get("item")
            if isinstance(item, dict) and str(item.get("instance")) in self.states:
                handle.scraper.targets[item["instance"]] = str(item["url"])

        state.subscribe(METRICS_TOPIC, "supervisor", announced)
        places = {
            i: (Path(p.netns).name if p.netns else None, p.data_ip)
            for i, p in dep.placements.items()
        }
        sampler = TelemetrySampler(self.run_dir, places, link_stats=dep.link_stats)
        interval = max(self.options.telemetry_interval, self.spec.total / 25)
        await nursery.start(sampler.run, interval)

    async def _run_instances(
        self, host: ProcessHost, state: SyncState, sock: str, tcp: str | None
    ) -> None:
        assert self.deployment is not None
        async with trio.open_nursery() as procs:
            for inst in self.spec.instances:
                launch = self._launch(inst, sock, tcp)
                procs.start_soon(self._instance, inst, launch, host, state)
                await trio.lowlevel.checkpoint()
            if self.options.fail_fast:
                procs.start_soon(self._stop_after_failure)
            with trio.move_on_after(self.spec.timeout_s):
                await self.all_exited.wait()
            if not self.all_exited.is_set():
                if not self.interrupted:
                    self._stop_all(f"still running at the run's timeout ({self.spec.timeout_s:g}s)")
                with trio.move_on_after(_KILL_AFTER_S + 2):
                    await self.all_exited.wait()
            procs.cancel_scope.cancel()

    async def _instance(
        self,
        inst: InstanceSpec,
        launch: Launch,
        host: ProcessHost,
        state: SyncState,
    ) -> None:
        st = self.states[inst.id]
        st.started = time.time()
        try:
            proc = await host.spawn(launch)
        except OSError as e:
            st.start_error = str(e)
            st.ended = time.time()
            self.record({"kind": "instance", "instance": inst.id, "status": "failed to start",
                         "error": str(e)})
            self._exited(st, state)
            return
        st.pid = proc.pid
        self.record({"kind": "instance", "instance": inst.id, "status": "started", "pid": proc.pid})
        if self.progress:
            self.progress.started += 1
        try:
            st.status = await proc.wait()
        finally:
            if st.status is None:  # cancelled: the run is over and this one must go too
                signal_group(proc.pid, signal.SIGKILL)
        st.ended = time.time()
        self.record({"kind": "instance", "instance": inst.id, "status": "exited",
                     "exit_code": st.status})
        self._exited(st, state)

    def _exited(self, st: InstanceState, state: SyncState) -> None:
        passed, reason = st.verdict()
        state.instance_ended(st.spec.id, "passed" if passed else reason or "ended")
        if not passed:
            self._note_failure(st)
        self.exited += 1
        self._count()
        if self.exited == len(self.states):
            self.all_exited.set()

    async def _stop_after_failure(self) -> None:
        await self.failed.wait()
        await trio.sleep(self.options.grace_s)
        first = self.first_failure
        assert first is not None
        self._stop_all(f"stopped after {first.spec.id} failed")

    def _stop_all(self, reason: str) -> None:
        running = [s for s in self.states.values() if s.running]
        for st in running:
            st.stopped = st.stopped or reason
            assert st.pid is not None
            signal_group(st.pid, signal.SIGTERM)
        if running:
            _log.info("stopping instances", reason=reason, count=len(running))
            self.record({"kind": "phase", "name": "stopping", "reason": reason,
                         "instances": [s.spec.id for s in running]})

            async def kill_later() -> None:
                await trio.sleep(_KILL_AFTER_S)
                for st in running:
                    if st.running and st.pid is not None:
                        signal_group(st.pid, signal.SIGKILL)

            trio.lowlevel.spawn_system_task(kill_later)

    async def _watch_signals(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.interrupted = True
                if self.progress:
                    self.progress.note(f"{signal.Signals(signum).name}: stopping every instance")
                self._stop_all("interrupted")
                # Give instances their SIGTERM before the nursery's cancellation kills them.
                with trio.move_on_after(_KILL_AFTER_S):
                    await self.all_exited.wait()
                scope.cancel()
                return

    async def _tick(self) -> None:
        """Redraw progress; flush events.jsonl so `harness logs --follow` sees them."""
        interval = self.progress.interval if self.progress else 0.5
        while True:
            await trio.sleep(interval)
            if self.progress:
                self.progress.update()
            if self._events is not None:
                self._events.flush()

    # -- instance set-up -----------------------------------------------------------------

    def _project_root(self) -> Path:
        return Path(harness.__file__).resolve().parent.parent

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Entrypoints are imported as "<plan dir>.module" or with the plans' root's parent
        # as package root (scenarios.<plan>.module); the project itself comes last.
        plan_dir = self.spec.plan.path
        paths = [str(plan_dir.parent), str(plan_dir.parent.parent), str(self._project_root())]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def _launch(self, inst: InstanceSpec, sock: str, tcp: str | None) -> Launch:
        assert self.deployment is not None
        place = self.deployment.placements[inst.id]
        st = self.states[inst.id]
        st.ip = place.data_ip
        out = self.run_dir / inst.id
        group_size = next(g.count for g in self.spec.groups if g.id == inst.group)
        env = self._base_env()
        env.update({
            "TEST_PLAN": self.spec.plan.name,
            "TEST_CASE": self.spec.case.name,
            "TEST_RUN": self.run_id,
            "TEST_INSTANCE_COUNT": str(self.spec.total),
            "TEST_GROUP_ID": inst.group,
            "TEST_GROUP_INSTANCE_COUNT": str(group_size),
            "TEST_GLOBAL_SEQ": str(inst.global_seq),
            "TEST_GROUP_SEQ": str(inst.group_seq),
            "TEST_INSTANCE_ID": inst.id,
            "TEST_INSTANCE_ROLE": inst.role,
            "TEST_INSTANCE_PARAMS": orjson.dumps(dict(inst.params)).decode(),
            "TEST_OUTPUTS_PATH": str(out),
            "TEST_SYNC_SOCKET": sock,
            "TEST_SYNC_TCP": tcp or "",
            "TEST_SYNC_TOKEN": self.tokens.for_instance(inst.id),
            "TEST_RUNNER": self.spec.runner,
            "TEST_DATA_NETWORK": self.deployment.data_network,
            "TEST_DATA_IP": place.data_ip,
            "TEST_SIDECAR": "true" if self.deployment.network else "false",
            "TEST_START_TIME": repr(self.started_at),
        })
        argv = inst.program or self.spec.case.program
        program = [_program(argv, self.spec.plan.path), *argv[1:]] if argv else None
        return Launch(env, out, out / "stdout.log", out / "stderr.log", place.netns, program)

    # -- the end -------------------------------------------------------------------------

    def _result(self) -> RunResult:
        instances = list(self.states.values())
        failed = [s for s in instances if not s.verdict()[0]]
        if self.interrupted:
            outcome, code, reason = "interrupted", 130, "interrupted"
        elif failed:
            first = self.first_failure or failed[0]
            outcome, code = "failed", 1
            reason = f"{len(failed)} of {len(instances)} failed; first: {first.spec.id}: "
            reason += first.verdict()[1] or ""
        else:
            outcome, code, reason = "passed", 0, None
        return RunResult(self.run_id, self.run_dir, outcome, code, reason, instances,
                         time.time() - self.started_at)

    def _write_run_json(
        self, ended: bool, result: RunResult | None = None, error: str | None = None
    ) -> None:
        spec = self.spec
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "plan": spec.plan.name,
            "case": spec.case.name,
            "runner": spec.runner,
            "started": self.started_at,
            "ended": time.time() if ended else None,
            "outcome": result.outcome if result else ("error" if error else "running"),
            "exit_code": result.exit_code if result else None,
            "reason": result.reason if result else error,
            "params": _shared_params(spec),
            "composition": str(spec.composition) if spec.composition else None,
            "timeout_s": spec.timeout_s if math.isfinite(spec.timeout_s) else None,
            "groups": [
                {"id": g.id, "count": g.count, "params": dict(g.params),
                 "program": list(g.program) if g.program else None}
                for g in spec.groups
            ],
            "instances": [s.to_json() for s in self.states.values()],
            "network": self.deployment.info if self.deployment else None,
            "metrics_url": self.metrics_url,
        }
        write_json(self.run_dir / "run.json", data)


def _shared_params(spec: RunSpec) -> dict[str, Any]:
    """The params every group runs with (each group's own are under `groups`)."""
    if not spec.groups:
        return {}
    first, *rest = spec.groups
    return {k: v for k, v in first.params.items() if all(g.params.get(k) == v for g in rest)}
