"""The supervisor: one Trio task tree per run, from the first instance to the last clean-up."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import structlog
import trio

import harness
from harness._cgroup import CgroupError, RunCgroups
from harness._cgroup import cleanup as cgroup_cleanup
from harness._clock import InstanceClock, RunLease, find_libfaketime, remove_stale_shared
from harness._collector import fewer_collections
from harness._conductor import Conductor
from harness._control import remove_token, write_token
from harness._errors import EnvironmentProblem, HarnessError, UsageError, single_cause
from harness._fault_actions import FaultActions
from harness._latesignal import (
    LateSignal,
    cut_short,
    handled,
    late_signals_raise,
    signal_name,
    take_pending,
)
from harness._listen import Listen, bind, inherited
from harness._liveness import (
    LAST_SEEN_EVERY_S,
    SOCK_DIR_PREFIX,
    check_proc,
    identity,
    mark_aborted_runs,
    remove_stale_sockets,
)
from harness._openfiles import out_of_files, raise_limit
from harness._outcome import InstanceState, still_running_at_timeout
from harness._outputs import check_outputs, disk_full_in, outputs_error
from harness._progress import Progress, summary_table
from harness._rundir import Reserve, json_bytes, write_json
from harness._runid import new_run_id
from harness._runparams import PROFILE_ENV, STACK_SIGNAL, RunParams
from harness._stderr import last_words, stack_note
from harness._tell import one_line, tell
from harness.faults._errors import TooLate
from harness.observe import (
    JsonlWriter,
    TelemetrySampler,
    configure_logging,
    observe_run,
    record_run,
    write_report,
)
from harness.observe._cpuload import SaturationWatch
from harness.observe._jsonl import ignore_unreadable, read_jsonl, read_tail
from harness.observe._runrecord import (
    RESERVE_FILE,
    RUN_FILE,
    GroupRecord,
    RunRecord,
    write_run,
)
from harness.observe._summaryfile import read_warnings
from harness.plans import InstanceSpec, RunSpec, import_roots
from harness.runners import (
    CLUSTER_K8S,
    Deployment,
    Launch,
    Process,
    ProcessHost,
    get_runner,
    runnable_here,
    signal_group,
)
from harness.runners._forkserver import CANNOT_START
from harness.sync import METRICS_TOPIC, EventType, SyncServer, SyncState, Tokens
from harness.sync._protocol import FAILING_EVENTS

if TYPE_CHECKING:
    from netem import BackendFailure

_log = structlog.get_logger("harness.supervisor")
_KILL_AFTER_S = 3.0  # SIGTERM, then SIGKILL if still alive this much later
_REAPED_WITHIN_S = 2.0  # a SIGKILLed instance's exit is seen within this
_SIGNAL_SETTLES_S = 0.2  # a signal that came with an error is handled within this
_NETWORK_CHECK_S = 0.1  # how often the network's health is polled (a waitpid, no I/O)
_STACK_DUMP_S = 0.25  # a Python instance's stack dump, then its SIGTERM (which would cut it)


NOTHING_CHECKED = "no instance recorded success: faults ended every one (nothing was checked)"
"""Why a run whose instances each passed only as one a fault may end failed."""

@dataclasses.dataclass
class RunOptions:
    """How to run (as opposed to what: that is the RunSpec)."""

    outputs: Path = Path("outputs")
    fail_fast: bool = True  # stop the others soon after the first instance fails
    grace_s: float = 1.0  # how long the others may go on after the first failure
    sync_tcp: Listen | None = None  # serve the sync protocol over TCP here too
    progress: bool = True
    metrics_listen: Listen | None = ("127.0.0.1", 0)  # the aggregated /metrics
    scrape_interval: float = 2.0  # at least; longer for large runs (instances / 25 s)
    telemetry_interval: float = 1.0  # at least; longer for large runs (ss per instance)
    on_run_dir: Callable[[Path], None] | None = None  # told the run dir once it exists
    # A network that stops shaping mid-run (the userspace engine died) fails the run unless
    # this is set; either way it is recorded.
    allow_unshaped: bool = False
    profile_cpu: float | None = None  # seconds of CPU between samples (harness.sdk._profile)
    origin: str | None = None  # what started the run, in run.json (`harness search`: its list)

    def __post_init__(self) -> None:
        # What the command line checks, checked for callers from Python too: else a bad
        # value made a run that failed every instance, or a run.json no reader takes.
        self.outputs = Path(self.outputs)
        if self.origin is not None and not isinstance(self.origin, str):
            raise TypeError(f"RunOptions.origin must be a str or None, not {self.origin!r}")
        for name in ("metrics_listen", "sync_tcp"):
            where = getattr(self, name)
            if not (where is None or isinstance(where, socket.socket) or (
                    isinstance(where, tuple) and len(where) == 2
                    and isinstance(where[0], str) and isinstance(where[1], int))):
                raise TypeError(f"RunOptions.{name} must be a (host, port) tuple, a listening "
                                f"socket or None, not {where!r}")
        for name in ("grace_s", "scrape_interval", "telemetry_interval", "profile_cpu"):
            value = getattr(self, name)
            if value is None and name == "profile_cpu":
                continue
            if not (isinstance(value, int | float) and math.isfinite(value)
                    and (value >= 0 if name == "grace_s" else value > 0)):
                raise ValueError(f"RunOptions.{name} must be a finite number of seconds "
                                 f"{'>= 0' if name == 'grace_s' else '> 0'}, not {value!r}")


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
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. the network's failure

    def verdict(self) -> str:
        """What the run says of the faults it played (reads its faults.jsonl): "passed";
        "failed" (the system did not survive them); "inconclusive" (it failed only because
        it checked nothing: a fault came after every instance had ended or its sync
        condition could no longer be met, or the faults ended every instance);
        "unplayable" (a fault could not be played or undone: the harness's or the
        machine's failure, not the system's); or "interrupted"."""
        if self.outcome in ("passed", "interrupted"):
            return self.outcome
        if self.reason == NOTHING_CHECKED:
            return "inconclusive"
        never = []  # the reasons of faults that never came (the run was ending: `late`)
        for entry in read_jsonl(self.run_dir / "faults.jsonl"):
            reason = entry.get("reason")
            if entry.get("step") != "failed" or not isinstance(reason, str):
                continue
            if not entry.get("late"):
                return "unplayable"
            never.append(reason)
        return "inconclusive" if self.reason in never else "failed"

    def summary(self) -> str:
        """The table printed at the end of a run."""
        head = f"run {self.run_id}: {self.outcome.upper()} in {self.duration_s:.1f} s"
        if self.reason:  # may quote what an instance said: newlines, escapes
            head += f" ({one_line(self.reason, 1000)})"
        head += "".join(f"\nnote: {one_line(n, 1000)}" for n in self.notes if n != self.reason)
        head += "".join(f"\nwarning: {w}" for w in read_warnings(self.run_dir))
        tail = f"outputs: {self.run_dir}"
        if (self.run_dir / "report.html").exists():
            tail += f"\nreport:  {self.run_dir / 'report.html'}"
        return f"{head}\n{summary_table(self.instances)}\n{tail}"


def _cannot_start(stderr: Path) -> str | None:
    """Why the process host could not start an instance (its exec failed: a program too
    big for its arguments, say), as the host wrote it last in the instance's stderr; None
    if it wrote no such line (the program itself exited 70 or 127)."""
    last = read_tail(stderr, 4096, ignore_unreadable).rstrip("\n").rsplit("\n", 1)[-1]
    return last.removeprefix(CANNOT_START) if last.startswith(CANNOT_START) else None


def run(spec: RunSpec, options: RunOptions | None = None) -> RunResult:
    """Run `spec` to its end and return the result (blocking; starts its own Trio loop).

    As `harness run` does: without root, a local:netns run re-executes this program from its
    start as root of a user namespace, or goes on local:exec where it cannot
    (`harness.runners.runnable_here`)."""
    options = _take_handed_over(options or RunOptions())
    if spec.runner == CLUSTER_K8S:  # refused before its run directory, not in it
        raise UsageError(f"{CLUSTER_K8S} runs on a cluster: use harness run --runner "
                         f"{CLUSTER_K8S} (or --render DIR), not a local supervisor")
    check_proc()
    check_programs(spec)
    options = _bound(options)  # a taken port or a bad address: one line, before anything
    spec = runnable_here(spec, lambda: _listening(options))  # may re-execute this program
    check_outputs(options.outputs)
    raise_limit(spec.total)
    supervisor = Supervisor(spec, options)
    try:
        with fewer_collections():
            result = trio.run(supervisor.supervise)
    except BaseException as error:
        if (files := out_of_files(error, spec.total)) is not None:  # says more than the
            raise files from None  # error of the step that met it ("building the network")
        cause = single_cause(error)
        if isinstance(cause, HarnessError) and cause is not error:
            raise cause from None
        if (full := disk_full_in(error)) is not None:  # e.g. events.jsonl, mid-run
            raise outputs_error(full, supervisor.run_dir) from None
        if supervisor.made_run_dir and not supervisor.run_dir.is_dir():  # every write failed
            raise EnvironmentProblem(
                f"the run's directory {supervisor.run_dir} was removed during the run: the run "
                "stopped and removed what it had created") from None
        raise
    finish_run(result.run_dir, supervisor.late_signal)
    return result


async def _next_signal(signals: AsyncIterator[int], within: float) -> str | None:
    """The name of the next signal the receiver holds or gets within `within` seconds."""
    with trio.CancelScope(shield=True), trio.move_on_after(within):
        return signal_name(await signals.__anext__())
    return None


async def _pending_signal(signals: AsyncIterator[int]) -> str | None:
    """The name of the last signal that came but was not handled (a second Ctrl-C during
    an interrupted run's tear-down, or one after its watcher had stopped): taken, it is
    not raised again once the receiver closes, which ended the command with 130 and no
    report."""
    came = None
    while (sig := await _next_signal(signals, _SIGNAL_SETTLES_S / 20)) is not None:
        came = sig
    return came


def _bound(options: RunOptions) -> RunOptions:
    """`options` with each (host, port) it listens at bound now, in this network namespace."""
    def bound(where: Listen | None, name: str) -> Listen | None:
        if not isinstance(where, tuple):
            return where
        host, port = where
        return bind(f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}",
                    f"RunOptions.{name}")

    return dataclasses.replace(options,
                               metrics_listen=bound(options.metrics_listen, "metrics_listen"),
                               sync_tcp=bound(options.sync_tcp, "sync_tcp"))


def _listening(options: RunOptions) -> dict[str, socket.socket]:
    """The run's listening sockets by name (`_bound` has bound them)."""
    return {name: where for name, where in (("metrics", options.metrics_listen),
                                            ("sync_tcp", options.sync_tcp))
            if isinstance(where, socket.socket)}  # fmt: skip


def _take_handed_over(options: RunOptions) -> RunOptions:
    """In a program re-executed into a user namespace: the sockets its first run bound."""
    handed = inherited()
    if not handed:
        return options
    return dataclasses.replace(
        options, metrics_listen=handed.get("metrics"), sync_tcp=handed.get("sync_tcp")
    )


def finish_run(run_dir: Path, came: str | None = None) -> None:
    """The report and the history entry (after a local or a cluster:k8s run); a failure
    here is a warning, not the run's verdict. A signal meanwhile (or `came`, the name of
    one that came as the run ended) skips what is left, which `harness report` and
    `harness runs` make later: the run's verdict and exit code stand."""
    reported = False
    with late_signals_raise():
        try:
            if came is not None:
                raise LateSignal(came)
            for what, write in (("report", write_report), ("history", record_run)):
                try:
                    write(run_dir)
                except Exception as e:
                    _log.warning(f"could not write the {what}", error=f"{type(e).__name__}: {e}")
                    tell(f"harness: warning: could not write the {what}: {e}")
                reported = True
        except LateSignal as sig:
            cut_short(str(sig))
            _log.warning("the report was cut short by a signal", signal=str(sig))
            # (It may come during an interrupted run's stop: "as", not "after", it ended.)
            skipped = (f"its entry in the run history was not written (harness runs "
                       f"--outputs {run_dir.parent} adds it)" if reported else
                       f"its report was not written (harness report {run_dir} writes it)")
            tell(f"harness: {sig} as the run ended: {skipped}")


def check_programs(spec: RunSpec) -> None:
    """UsageError when a program the run would start cannot be run; EnvironmentProblem when
    its skew faults need libfaketime and it is missing (both before anything starts)."""
    programs = {g.program for g in spec.groups if g.program} | (
        {spec.case.program} if spec.case.program else set()
    )
    for argv in programs:
        program = _program(argv, spec.plan.path)
        if shutil.which(program) is None:
            if "/" not in program:
                where = "not found on PATH"
            elif not os.path.exists(program):
                where = f"{program} does not exist"
            else:
                where = (f"{program} is not an executable file: chmod +x it, or start it "
                         "with its interpreter, e.g. program = [\"python3\", ...]")
            raise UsageError(f"{spec.plan.name}:{spec.case.name}: program {argv[0]!r} cannot "
                             f"be run ({where})")
    for g in spec.groups:
        size = len("TEST_INSTANCE_PARAMS=") + len(orjson.dumps(dict(g.params))) + 1
        if (g.program or spec.case.program) and size > _MAX_ARG_STRLEN:
            raise UsageError(
                f"group {g.id!r}: its params take {size:,} bytes as TEST_INSTANCE_PARAMS, and "
                f"Linux passes at most {_MAX_ARG_STRLEN:,} in one environment variable: "
                "give the program a file's path instead")
    reach = spec.skew_reach()
    if any((i.program or spec.case.program) and i.id in reach for i in spec.instances):
        find_libfaketime()  # EnvironmentProblem, before anything starts, if it is missing


_MAX_ARG_STRLEN = 32 * 4096
"""The longest argument or environment string exec takes (each instance failed to start
with "Argument list too long")."""


def _program(argv: Sequence[str], plan_dir: Path) -> str:
    """argv[0] as it is exec'd: `python` is this interpreter; a relative path is the plan's."""
    if argv[0] == "python":
        return sys.executable
    if "/" in argv[0] and not argv[0].startswith("/"):
        return str(plan_dir / argv[0])
    return argv[0]


HOST_LOG = "process-host.log"
"""The process host's own output in the run directory (and the plan module's at import)."""


class _HostTask:
    """The run's process host as a task of its own: started early, awaited when the first
    instance is due, and stopped (with every process under it) at a moment of the run's
    choosing rather than at the end of a nursery."""

    def __init__(self, host: ProcessHost, instances: int = 0) -> None:
        self.host = host
        self.instances = instances  # forked ahead once it serves
        self._started = trio.Event()
        self._ended = trio.Event()
        self._scope = trio.CancelScope()

    async def run(self, cwd: Path, env: Mapping[str, str], log: Path) -> None:
        """Serve the host until `stop`; `ready` returns once it serves."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(functools.partial(self.host.run, cwd, env, log=log))
                    self._started.set()
                    await self.host.prefork(self.instances)
        finally:
            self._ended.set()

    async def ready(self, within: float) -> ProcessHost:
        """The host, once it takes spawn requests (its `error` says if it never will), or
        after `within` seconds: a plan's module whose import never ends must not hold the
        run past its timeout (its instances then fail to start, saying so)."""
        with trio.move_on_after(within):
            await self._started.wait()
            return self.host
        self.host.error = (f"the process host was not ready within the run's timeout "
                           f"({within:g}s): the plan's module was still being imported")
        return self.host

    async def stop(self) -> None:
        """End the host and everything it started; returns when they are gone."""
        self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._ended.wait()


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
        self.made_run_dir = False
        self.late_signal: str | None = None  # a signal that came as the run ended, unhandled
        self._reserve: Reserve | None = None  # space for run.json's last write
        self._spawning = 0  # instances asked of the process host and not yet started
        self._settled = trio.Event()  # set whenever an instance starts or exits
        self.network_events: list[dict[str, Any]] = []
        self.run_failure: str | None = None  # why the run failed apart from its instances
        self.cgroups: RunCgroups | None = None  # per-instance cgroups, where they can be made
        self.no_cgroups = "they need root"  # why there are none, if there are none
        self._cgroups_made = trio.Event()
        self.conductor: Conductor | None = None
        self.fault_actions: FaultActions | None = None
        self._sampler: Callable[[], Awaitable[object]] | None = None  # starts the telemetry
        self.comeback: dict[str, trio.Event] = {}  # instances a fault ended, to start again
        self._stopping = False  # the run stops its instances: none is started again
        self._procs: trio.Nursery | None = None
        self.launches: dict[str, Launch] = {}  # how each instance was (or is again) started
        self.host: ProcessHost | None = None  # starts every process of the run
        self.clocks: dict[str, InstanceClock] = {}  # each instance's, skewed by faults
        self._lease = RunLease(self.run_id)  # held once a clock has objects in /dev/shm
        # Programs (not Python instances, which read env.clock) that a planned clock fault may
        # select run under libfaketime: it must be preloaded when they start. Only those: a
        # Python program's time.sleep fails under Debian's libfaketime (docs/contracts.md).
        self._faketime = spec.skew_reach()
        self._last_seen = 0.0
        self._identity = identity()
        self.tokens = Tokens()  # each instance's TEST_SYNC_TOKEN
        self._env: dict[str, str] | None = None  # _base_env(), made at its first use
        self._inherited: dict[str, str] | None = None  # _inherited_env(), likewise
        self._stacks: dict[str, int] = {}  # instances told to dump their stacks: from where

    # -- events --------------------------------------------------------------------------

    def record(self, event: dict[str, Any]) -> None:
        """Every event of the run passes here: to events.jsonl, outcomes and progress."""
        kind = event.get("kind")
        if self._events is not None:  # stamps it with ts and mono
            self._events.write(event)
            if kind == "instance" and event.get("status") == "exited":
                # An instance's end is on disk at once (not at the next flush, up to 2 s
                # on): `harness clean` judges it from here should the supervisor be killed.
                self._events.flush()
        inst = self.states.get(event.get("instance") or "")
        if kind == "event" and inst is not None:
            inst.record(event)
            if event.get("type") in FAILING_EVENTS:
                self._note_failure(inst)
        elif kind == "signal" and self.progress and not event.get("again"):
            # (again: a restarted instance's signal, counted once: the line would go back)
            seq = event.get("seq")
            shown = min(seq, self.spec.total) if isinstance(seq, int) else seq
            self.progress.phase = f"{event.get('state')} {shown}/{self.spec.total}"
        elif kind == "connection" and inst is not None and event.get("status") != "lost":
            inst.sync_closed = str(event.get("reason"))  # refused, failed or dropped by it

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
                if s.status is None and s.recorded in FAILING_EVENTS
            )
            self.progress.passed = sum(ended)
            self.progress.failed = len(ended) - sum(ended) + still_running_failed
            self.progress.update()

    # -- the run -------------------------------------------------------------------------

    async def supervise(self) -> RunResult:
        """The whole run; returns once everything it created is gone. Whatever ends it,
        run.json records how it ended (never "running")."""
        # From the first moment: SIGINT/SIGTERM must never find the default handlers, nor
        # SIGHUP (the terminal closed, an ssh session lost) or SIGQUIT (Ctrl-\), which
        # killed it leaving all. Ignored, those two stay so (`handled`: nohup's promise).
        with trio.open_signal_receiver(*handled()) as signals:
            for signum in take_pending():  # came between a search's runs, before this took them
                signal.raise_signal(signum)
            try:
                try:
                    await self._supervise(signals)
                except BaseException as e:
                    if not (isinstance(e, Exception)
                            and await self._interrupted_meanwhile(signals, e)):
                        with contextlib.suppress(OSError):  # what failed may be the disk
                            self._write_run_json(ended=True, error=_describe(e, self.spec.total),
                                                 error_code=_exit_code_of(e))
                        raise
                result = self._result()
                self._write_run_json(ended=True, result=result)
                self.late_signal = await _pending_signal(signals)
            finally:
                if self._reserve is not None:
                    self._reserve.release()
        (_log.info if result.outcome == "passed" else _log.warning)(
            "run ended", outcome=result.outcome, reason=result.reason)
        return result

    async def _supervise(self, signals: AsyncIterator[int]) -> None:
        try:
            for inst in self.spec.instances:
                (self.run_dir / inst.id).mkdir(parents=True, exist_ok=True)
            configure_logging(json_path=self.run_dir / "supervisor.jsonl", console=False)
            # httpx logs every request at info: every metrics scrape would bury the run's log.
            logging.getLogger("httpx").setLevel(logging.WARNING)
            # (after the logging: before it, structlog's default printed what it removed on
            # stdout, into the middle of `harness run --json`'s document)
            await trio.to_thread.run_sync(self._mark_aborted_runs)
            _log.info("run starting", run=self.run_id, plan=self.spec.plan.name,
                      case=self.spec.case.name, instances=self.spec.total,
                      runner=self.spec.runner)
            self._events = JsonlWriter(self.run_dir / "events.jsonl", flush_each=False)
            write_token(self.run_dir, self.tokens.control())  # for `harness fault`
            sock_dir = self.sock_dir = self.run_dir
            if len(str(self.run_dir / "relay.sock")) > 100:  # AF_UNIX paths are short
                sock_dir = self.sock_dir = Path(tempfile.mkdtemp(prefix=SOCK_DIR_PREFIX))
            self._write_run_json(ended=False)
            # A disk that fills during the run (its nodes' logs) must not leave run.json
            # saying "running": its last write goes into space set aside now.
            size = (self.run_dir / RUN_FILE).stat().st_size
            self._reserve = Reserve.make(self.run_dir / RESERVE_FILE, (1 << 20) + 4 * size)
        except BaseException as e:  # nothing has started: leave no half-made run behind
            shutil.rmtree(self.run_dir, ignore_errors=True)
            if self.sock_dir != self.run_dir:
                shutil.rmtree(self.sock_dir, ignore_errors=True)
            if isinstance(e, OSError):
                raise outputs_error(e, self.options.outputs) from None
            raise
        self.made_run_dir = True  # and kept from here on, whatever ends the run
        if self.options.on_run_dir:
            self.options.on_run_dir(self.run_dir)
        state = SyncState([i.id for i in self.spec.instances], record=self.record,
                          roles={i.id: i.role for i in self.spec.instances})
        server = SyncServer(state, tokens=self.tokens)  # takes faults once there are instances
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, signals, nursery.cancel_scope)
                sock = await nursery.start(server.serve_unix, sock_dir / "sync.sock")
                tcp = None
                if self.options.sync_tcp:
                    bound = await nursery.start(server.serve_tcp, self.options.sync_tcp)
                    tcp = f"{bound[0]}:{bound[1]}"
                nursery.start_soon(self._tick)
                runner = get_runner(self.spec.runner)
                # The process host starts (an interpreter, imports, its warm-up) while the
                # runner builds the network: neither needs the other.
                host = _HostTask(self._new_host(), self.spec.total)
                nursery.start_soon(host.run, self._project_root(), self._base_env(),
                                   self.run_dir / HOST_LOG)
                nursery.start_soon(self._make_cgroups_soon)  # nor do the cgroups
                async with runner.deploy(self.spec, self.run_dir, state) as dep:
                    self.deployment = dep
                    self._write_run_json(ended=False)  # with the network: what to clean
                    server.network = dep.network
                    try:
                        processes = await host.ready(self.spec.timeout_s)
                        async with trio.open_nursery() as observers:
                            if dep.network_failure or dep.network_notes:
                                observers.start_soon(self._watch_network, dep.network_failure,
                                                     dep.network_notes)
                            await self._observe(observers, state, processes)
                            self.conductor = self._conductor(state)
                            server.faults = self.conductor.inject
                            await self._run_instances(processes, state, str(sock), tcp,
                                                      observers)
                            self.conductor.finish(self.failed.is_set() or self.interrupted)
                            server.faults = None
                            observers.cancel_scope.cancel()
                    finally:
                        await host.stop()  # every process gone before the network goes
                nursery.cancel_scope.cancel()
        finally:
            for clock in self.clocks.values():
                clock.close()
            self._lease.close()
            remove_token(self.run_dir)
            if self.cgroups is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._remove_cgroups)
            if sock_dir != self.run_dir:
                shutil.rmtree(sock_dir, ignore_errors=True)
            else:
                (sock_dir / "relay.sock").unlink(missing_ok=True)
            if self.interrupted:
                self._never_started("interrupted")
            if self.progress:
                self.progress.finish()
            self._events.close()

    def _mark_aborted_runs(self) -> None:
        """Runs under the same outputs whose supervisor died (SIGKILL) become "aborted";
        the socket directories of any killed run go."""
        try:
            for run_dir in mark_aborted_runs(self.options.outputs, "the next run"):
                _log.warning("marked a run whose supervisor is gone as aborted", run=run_dir.name)
        except OSError as e:
            _log.warning("could not check earlier runs", error=str(e))
        for where in remove_stale_sockets():
            _log.info("removed a killed run's socket directory", path=str(where))
        for name in remove_stale_shared():
            _log.info("removed a killed run's clock in /dev/shm", name=name)

    def _new_host(self) -> ProcessHost:
        case = self.spec.case
        python = case.entrypoint and any(i.program is None for i in self.spec.instances)
        return ProcessHost(case.entrypoint if python else None, case.backend)

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
            try:
                await host.spawn(Launch(self._base_env(), self.run_dir, out, out, None, [
                    sys.executable, "-m", "harness.runners._relay", str(relay), str(hosts)]))
            except OSError as e:  # the host failed (the plan's module did not load): each
                _log.warning("no metrics relay", error=str(e))  # instance's start says why
            else:
                client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(relay)),
                                           timeout=5)
        # Longer for large runs, as telemetry's: each scrape costs the instance a render of
        # its series and the supervisor a parse (a 100-node run: a twentieth of its CPU).
        scrape_every = max(self.options.scrape_interval, self.spec.total / 25)
        handle = await nursery.start(functools.partial(
            observe_run, self.run_dir, {}, interval=scrape_every,
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
        sampler = TelemetrySampler(self.run_dir, places, link_stats=dep.link_stats,
                                   on_cpu=self._watch_cpu(SaturationWatch()))
        interval = max(self.options.telemetry_interval, self.spec.total / 25)
        # The first sample once every instance has started: before, there are no sockets
        # to see, and a sample (sock_diag in every namespace) would take the CPU from the
        # instances starting.
        self._sampler = functools.partial(nursery.start, sampler.run, interval)

    def _watch_cpu(self, watch: SaturationWatch) -> Callable[[float, int], None]:
        """What the telemetry tells each CPU sample: said once, in the supervisor's log and
        on the progress lines, when the host has been saturated for a while."""

        def sample(mono: float, wait_us_total: int) -> None:
            if (text := watch.add(mono, wait_us_total)) is not None:
                _log.warning("host cpu saturated", message=text)
                if self.progress:
                    self.progress.note(f"warning: {text}")

        return sample

    async def _run_instances(
        self, host: ProcessHost, state: SyncState, sock: str, tcp: str | None,
        observers: trio.Nursery,
    ) -> None:
        assert self.deployment is not None and self.conductor is not None
        self.host = host
        await self._cgroups_made.wait()
        async with trio.open_nursery() as procs:
            self._procs = procs
            for inst in self.spec.instances:
                launch = self.launches[inst.id] = self._launch(inst, sock, tcp)
                procs.start_soon(self._instance, inst, launch, host, state)
                await trio.lowlevel.checkpoint()
            # The faults' time 0: every instance started (or failed to).
            while self._spawning or not all(
                s.pid is not None or s.start_error or s.not_started for s in self.states.values()
            ):
                await self._settled.wait()
            self._write_run_json(ended=False)  # the instances' pids and addresses, now
            await observers.start(self.conductor.run)
            if self._sampler is not None:
                await self._sampler()
            if self.options.fail_fast:
                procs.start_soon(self._stop_after_failure)
            with trio.move_on_after(self.spec.timeout_s):
                await self.all_exited.wait()
            if not self.all_exited.is_set():
                if not self.interrupted:
                    reason = still_running_at_timeout(self.spec.timeout_s)
                    self._stop_all(reason)
                    stuck = [st for st in self.states.values() if st.stopped == reason]
                    for st in stuck:  # what held it (a pause), or waited for, where known
                        frozen = self.conductor.pausing(st.spec.id) if self.conductor else None
                        if at := frozen or state.waiting_at(st.spec.id):
                            st.stopped = f"{reason}, {at}"
                    if stuck and self.first_failure is None:
                        # The run's reason names one that waited on no other: the likelier
                        # cause (whichever ended first from the SIGTERM was named).
                        self._note_failure(next(
                            (st for st in stuck if st.stopped == reason), stuck[0]))
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
        if self.interrupted:  # nothing starts once the run is stopping
            self._never_started("interrupted", [st])
            self._exited(st, state)
            return
        while True:
            if st.restarts:  # what an earlier process left must not meet the new one
                await self._kill_left(inst.id)
            proc = await self._spawn(st, launch, host)
            if proc is None:
                break
            try:
                st.status = await proc.wait()
            finally:
                if st.status is None:  # cancelled: the run is over and this one must go too
                    signal_group(proc.pid, signal.SIGKILL)
            st.ended = time.time()
            if st.ended_by is not None:  # a fault ended it: all it started goes with it
                with trio.CancelScope(shield=True):  # its exit is recorded, whatever comes
                    await self._kill_left(inst.id)
            if proc.lost is not None:
                st.stopped = st.stopped or proc.lost
            self.record({"kind": "instance", "instance": inst.id, "status": "exited",
                         "exit_code": st.status, "by": st.ended_by,
                         **({"error": proc.lost} if proc.lost else {})})
            self._settle()  # (a fault that ended it waits for its exit: `FaultActions.gone`)
            back = self.comeback.get(inst.id)
            if back is None:
                break
            self._hogs_wait(inst.id, True)  # beside no process, they would only load the host
            await back.wait()  # a fault ended it, and starts it again when it is undone
            del self.comeback[inst.id]
            if self.interrupted or self._stopping or st.stopped:
                break
            self._hogs_wait(inst.id, False)
            st.restarted(time.time())
            launch = self.launches[inst.id] = _restart(launch, st.restarts)
            self.record({"kind": "instance", "instance": inst.id, "status": "restarting",
                         "restarts": st.restarts})
        self._exited(st, state)

    async def _spawn(
        self, st: InstanceState, launch: Launch, host: ProcessHost
    ) -> Process | None:
        """Start the instance's process; None (recorded) if it could not be started."""
        st.started = st.started or time.time()
        self._spawning += 1
        try:
            proc = await host.spawn(launch)
        except OSError as e:
            st.starting = False
            st.start_error = str(e)
            st.ended = time.time()
            self.record({"kind": "instance", "instance": st.spec.id,
                         "status": "failed to start", "error": str(e)})
            return None
        finally:
            self._spawning -= 1
            self._settle()
        st.pid, st.starting = proc.pid, False
        self.record({"kind": "instance", "instance": st.spec.id, "status": "started",
                     "pid": proc.pid})
        if self.progress and not st.restarts:
            self.progress.started += 1
        if self.interrupted or st.stopped:  # asked for as it was being started: at once
            st.stopped = st.stopped or "interrupted"
            signal_group(proc.pid, signal.SIGTERM)
        return proc

    def revive(self, instance: str) -> None:
        """Start again an instance whose process a fault ended for good (a later `restart`
        or `start`); FaultError once the run is over."""
        st = self.states[instance]
        if self.all_exited.is_set() or self._procs is None or self.interrupted:
            raise TooLate(f"{instance} cannot be started again: the run is ending")
        assert self.host is not None and self.conductor is not None
        self.exited -= 1
        self.conductor.state.instance_revived(instance)
        self._hogs_wait(instance, False)
        st.restarted(time.time())
        launch = self.launches[instance] = _restart(self.launches[instance], st.restarts)
        self.record({"kind": "instance", "instance": instance, "status": "restarting",
                     "restarts": st.restarts})
        self._procs.start_soon(self._instance, st.spec, launch, self.host,
                               self.conductor.state)

    async def _kill_left(self, instance: str) -> None:
        if self.fault_actions is not None:
            await self.fault_actions.kill_left(instance)

    def _hogs_wait(self, instance: str, waiting: bool) -> None:
        if self.fault_actions is not None:
            self.fault_actions.hogs_wait(instance, waiting)

    def _exited(self, st: InstanceState, state: SyncState) -> None:
        self._hogs_wait(st.spec.id, True)
        if st.status in (70, 127) and st.recorded is None and st.start_error is None:
            st.start_error = _cannot_start(self.run_dir / st.spec.id / "stderr.log")
        group = self.cgroups.groups.get(st.spec.id) if self.cgroups else None
        if group is not None:  # a SIGKILL: the kernel's, for the memory limit?
            st.exited_with_oom_kills(group.oom_kills())
        stderr = self.run_dir / st.spec.id / "stderr.log"
        if st.exit_says_why:
            st.last_words = last_words(stderr)
        if st.stopped and (offset := self._stacks.pop(st.spec.id, None)) is not None:
            st.stopped += stack_note(stderr, offset, self.spec.plan.path.resolve()) or ""
        # Those whose barriers it fails quote its reason: in short, its own has the rest.
        passed, short = st.verdict(quote=False)
        state.instance_ended(st.spec.id, st.ended_by or ("passed" if passed else short or "ended"))
        reason = st.verdict()[1]
        if not passed and not st.not_started:
            # A warning (`harness logs --level warning` shows failures): the root cause, an
            # exit code or a timeout, was only in events.jsonl. Those stopped because of
            # another's failure, or an interruption, only follow it.
            timeout = still_running_at_timeout(self.spec.timeout_s)
            follows = reason == st.stopped and not (reason or "").startswith(timeout)
            (_log.info if follows else _log.warning)("instance failed", id=st.spec.id,
                                                     reason=reason)
            self._note_failure(st)
        self.exited += 1
        self._count()
        self._settle()
        if self.exited == len(self.states):
            self.all_exited.set()

    def _never_started(self, why: str, states: Sequence[InstanceState] | None = None) -> None:
        """Record the instances that were never started, and why."""
        for st in self.states.values() if states is None else states:
            if st.pid is None and st.start_error is None and st.not_started is None:
                st.not_started = why
                self.record({"kind": "instance", "instance": st.spec.id,
                             "status": "not started", "reason": why})

    def _settle(self) -> None:
        self._settled.set()
        self._settled = trio.Event()

    async def settled(self) -> None:
        """Until an instance next starts or exits."""
        await self._settled.wait()

    async def _wait_none_running(self) -> None:
        """Until no instance runs and none is being started."""
        while self._spawning or any(s.running for s in self.states.values()):
            await self._settled.wait()

    async def _stop_after_failure(self) -> None:
        await self.failed.wait()
        await trio.sleep(self.options.grace_s)
        first = self.first_failure
        self._stop_all(f"stopped after {first.spec.id} failed" if first is not None
                       else f"stopped: {self.run_failure}")

    def _stop_all(self, reason: str) -> None:
        self._stopping = True
        for st in self.states.values():
            if st.spec.id in self.comeback:  # down for a fault: it stays down now
                if not st.may_die:
                    st.stopped = st.stopped or reason
                self.comeback[st.spec.id].set()
            if st.paused and st.pid is not None:  # a frozen process cannot take its SIGTERM
                frozen = self.conductor.pausing(st.spec.id) if self.conductor else None
                if frozen and st.expect == "may_die":  # left to its pause, as one a kill
                    st.ended_by = st.ended_by or frozen  # is ending is left to its kill
                self.thaw(st)
            if st.starting:  # its new process gets the SIGTERM as it is known (`_spawn`)
                st.stopped = st.stopped or reason
        running = [s for s in self.states.values() if s.running]
        dumping = []  # (instance, pid): their SIGTERM waits for their stacks
        for st in running:
            if not st.may_die:  # one a fault is ending, its signal on the way, is the fault's
                st.stopped = st.stopped or reason
            assert st.pid is not None
            if self._dump_stacks(st):
                dumping.append((st, st.pid))
            else:
                signal_group(st.pid, signal.SIGTERM)
        if running:
            _log.info("stopping instances", reason=reason, count=len(running))
            self.record({"kind": "phase", "name": "stopping", "reason": reason,
                         "instances": [s.spec.id for s in running]})

            async def kill_later() -> None:
                if dumping:
                    await trio.sleep(_STACK_DUMP_S)
                    for st, pid in dumping:
                        if st.running and st.pid == pid:
                            signal_group(pid, signal.SIGTERM)
                await trio.sleep(_KILL_AFTER_S - (_STACK_DUMP_S if dumping else 0))
                for st in running:
                    if st.running and st.pid is not None:
                        signal_group(st.pid, signal.SIGKILL)

            trio.lowlevel.spawn_system_task(kill_later)

    def _dump_stacks(self, st: InstanceState) -> bool:
        """Have a Python instance being stopped write every thread's stack to its stderr.log
        (`STACK_SIGNAL`, to its process only): where a plan stuck in its own code was.
        False, sending nothing, for a program (the signal would end it) and for one told
        already (stopped again)."""
        launch = self.launches.get(st.spec.id)
        if launch is None or launch.argv is not None or st.spec.id in self._stacks:
            return False
        assert st.pid is not None
        try:
            offset = launch.stderr.stat().st_size
            os.kill(st.pid, STACK_SIGNAL)
        except OSError:  # its stderr.log removed; its process gone, not yet reaped
            return False
        self._stacks[st.spec.id] = offset
        return True

    async def _watch_signals(self, signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
        """On a signal it handles: start nothing more, SIGTERM what runs, then end the run (the
        set-up, if it is still going, at once)."""
        async for signum in signals:
            self.interrupted = True
            signame = signal_name(signum)
            if self.progress:
                self.progress.note(f"{signame}: stopping every instance")
            self.record({"kind": "phase", "name": "interrupted", "signal": signame})
            self._stop_all("interrupted")
            # Give instances their SIGTERM before the nursery's cancellation kills them,
            # and those that ignore it the time to be reaped after their SIGKILL (at
            # _KILL_AFTER_S exactly, their exits were never recorded).
            with trio.move_on_after(_KILL_AFTER_S + _REAPED_WITHIN_S):
                await self._wait_none_running()
            scope.cancel()
            return

    def fail_run(self, message: str) -> None:
        """The run fails for `message`, whatever its instances do (the first reason stays)."""
        self.run_failure = self.run_failure or message
        self.failed.set()

    async def _watch_network(self, failure: Callable[[], BackendFailure | None] | None,
                             notes: Callable[[], tuple[str, ...]] | None) -> None:
        """Notice at once when the network stops shaping on its own (the userspace engine
        died: its links then pass unshaped), and tell what its backend notes (the engine fell
        back to its slower Python form: it starts with the first shaped link)."""
        told: set[str] = set()
        while True:  # a poll: the engine is another thread's child, with no fd to wait on
            for note in notes() if notes is not None else ():
                if note not in told:
                    told.add(note)
                    self._network_note(note)
            found = failure() if failure is not None else None
            if found is not None:
                break
            await trio.sleep(_NETWORK_CHECK_S)
        at = time.time() - self.started_at
        message = f"{found.describe()} at {at:.1f} s: links passed unshaped from then on"
        allowed = self.options.allow_unshaped
        event = {"kind": "network", "event": "backend-failed", **found.to_dict(),
                 "message": message, "at_s": round(at, 3), "allowed": allowed}
        self.record(event)
        self.network_events.append({k: v for k, v in event.items() if k != "kind"})
        _log.warning("the network stopped shaping", message=message, allowed=allowed)
        if self.progress:
            self.progress.note(message + ("" if allowed else ": the run fails"))
        if not allowed:
            self.fail_run(message)

    def _network_note(self, note: str) -> None:
        """Record what the network's backend says of its shaping; the verdict stands."""
        at = round(time.time() - self.started_at, 3)
        event = {"kind": "network", "event": "backend-note", "message": note, "at_s": at}
        self.record(event)
        self.network_events.append({k: v for k, v in event.items() if k != "kind"})
        _log.warning("the network's backend notes", message=note)
        if self.progress:
            self.progress.note(note)

    async def _tick(self) -> None:
        """Redraw progress; flush events.jsonl so `harness logs --follow` sees them; show
        in run.json that the supervisor is alive (`last_seen`)."""
        interval = self.progress.interval if self.progress else 0.5
        while True:
            await trio.sleep(interval)
            if self.progress:
                self.progress.update()
            if self._events is not None:
                self._events.flush()
            if time.time() - self._last_seen >= LAST_SEEN_EVERY_S:
                self._write_run_json(ended=False)

    # -- faults ---------------------------------------------------------------------------

    def _conductor(self, state: SyncState) -> Conductor:
        self.fault_actions = FaultActions(self)
        return Conductor(self.spec.faults, self.spec.members, self.fault_actions, state,
                         self.record, JsonlWriter(self.run_dir / "faults.jsonl"), self.fail_run,
                         self.spec.timeout_s)

    async def _make_cgroups_soon(self) -> None:
        try:
            await trio.to_thread.run_sync(self._make_cgroups)  # runs to its end, whatever comes
        finally:
            self._cgroups_made.set()

    def _make_cgroups(self) -> None:
        """One cgroup per instance (pause, CPU and memory faults), where this process may
        make them: as root. Elsewhere pausing falls back to SIGSTOP."""
        if os.geteuid() != 0:
            return
        try:  # what runs killed with SIGKILL left behind goes first, if it can
            left = cgroup_cleanup()
        except CgroupError as e:
            _log.warning("could not remove the cgroups of earlier runs", error=str(e))
        else:
            if left:
                _log.warning("removed cgroups of earlier runs", removed=[str(p) for p in left])
        cgroups = RunCgroups(self.run_id)
        try:
            for inst in self.spec.instances:
                cgroups.group(inst.id)
        except CgroupError as e:
            _log.warning("no per-instance cgroups", error=str(e))
            self.no_cgroups = str(e)
            with contextlib.suppress(CgroupError):
                cgroups.remove()
            return
        # Which hierarchy version served each controller: what a pause or limit went through.
        _log.info("per-instance cgroups", versions={c: h.version for c, h in
                                                    cgroups.serving.items()},
                  withheld=cgroups.withheld)
        self.cgroups = cgroups

    def _remove_cgroups(self) -> None:
        assert self.cgroups is not None
        try:
            self.cgroups.remove()
        except CgroupError as e:
            _log.warning("could not remove the run's cgroups", error=str(e))

    def thaw(self, st: InstanceState) -> None:
        """Let a paused instance run again."""
        st.paused = False
        if self.cgroups is not None:
            with contextlib.suppress(CgroupError):
                self.cgroups.group(st.spec.id).thaw()
        elif st.pid is not None:
            signal_group(st.pid, signal.SIGCONT)

    # -- instance set-up -----------------------------------------------------------------

    def _project_root(self) -> Path:
        return Path(harness.__file__).resolve().parent.parent

    def _base_env(self) -> dict[str, str]:
        """The environment every process of the run starts from (a copy: callers add to
        it). Made once per run: at 1,000 instances, once per instance cost a second."""
        if self._env is None:
            self._env = self._make_base_env()
        return dict(self._env)

    def _make_base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Entrypoints are imported as "<plan dir>.module" or with the plans' root's parent
        # as package root (scenarios.<plan>.module); the project itself comes last.
        paths = [str(p) for p in import_roots(self.spec.plan.path)]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.pop(PROFILE_ENV, None)  # --profile-cpu's to set: one in the caller's is ignored
        if self.options.profile_cpu is not None:
            env[PROFILE_ENV] = repr(self.options.profile_cpu)
        return env

    def _inherited_env(self) -> dict[str, str]:
        """What an instance inherits: the base environment without any of the contract's
        variables (only what this run sets). A copy, made once per run."""
        if self._inherited is None:
            contract = set(RunParams.variables())
            self._inherited = {k: v for k, v in self._base_env().items() if k not in contract}
        return dict(self._inherited)

    def _launch(self, inst: InstanceSpec, sock: str, tcp: str | None) -> Launch:
        assert self.deployment is not None
        place = self.deployment.placements[inst.id]
        st = self.states[inst.id]
        st.ip = place.data_ip
        out = self.run_dir / inst.id
        clock = self.clocks[inst.id] = InstanceClock(out, key=f"{self.run_id}-{inst.global_seq}")
        group_size = next(g.count for g in self.spec.groups if g.id == inst.group)
        params = RunParams(
            plan=self.spec.plan.name,
            case=self.spec.case.name,
            run_id=self.run_id,
            instance_count=self.spec.total,
            group_id=inst.group,
            group_instance_count=group_size,
            global_seq=inst.global_seq,
            group_seq=inst.group_seq,
            instance_id=inst.id,
            role=inst.role,
            params=dict(inst.params),
            outputs_path=out,
            sync_socket=sock,
            # One in a network namespace of the run cannot reach the host's addresses.
            sync_tcp=tcp if place.netns is None else None,
            sync_token=self.tokens.for_instance(inst.id),
            runner=self.spec.runner,
            data_network=self.deployment.data_network,
            data_ip=place.data_ip,
            sidecar=bool(self.deployment.network),
            start_time=self.started_at,
            clock_file=str(clock.path),
        )
        env = self._inherited_env()
        env.update(params.to_environ())
        env["PWD"] = str(out)  # where it runs, as a shell would say (not where we were started)
        argv = inst.program or self.spec.case.program
        program = [_program(argv, self.spec.plan.path), *argv[1:]] if argv else None
        if program and inst.id in self._faketime:
            self._lease.hold()
            env = clock.environ(env)
        groups = self.cgroups.group(inst.id).paths() if self.cgroups is not None else ()
        return Launch(env, out, out / "stdout.log", out / "stderr.log", place.netns, program,
                      groups)

    # -- the end -------------------------------------------------------------------------

    async def _interrupted_meanwhile(self, signals: AsyncIterator[int], error: Exception) -> bool:
        """Whether the run was interrupted as `error` ended it: then it ends as interrupted.
        Ctrl-C signals the whole process group, so the tool a set-up step was running
        (iptables-restore, say) dies of it too, and its failure may end the run before
        the signal is handled: that is an interruption, not a broken machine."""
        if not self.made_run_dir:  # nothing to record it in: the error stands
            return False
        if not self.interrupted and (sig := await _next_signal(signals, _SIGNAL_SETTLES_S)):
            self.interrupted = True
            _log.info("interrupted", signal=sig)
        if self.interrupted:
            _log.info("an error while interrupted", error=_describe(error, self.spec.total))
            self._never_started("interrupted")
        return self.interrupted

    def _result(self) -> RunResult:
        instances = list(self.states.values())
        failed = [s for s in instances if not s.verdict()[0]]
        if self.interrupted:
            outcome, code, reason = "interrupted", 130, "interrupted"
        elif self.run_failure:
            outcome, code, reason = "failed", 1, self.run_failure
            own = [s for s in failed if not s.stopped]  # not those it stopped
            if own:
                reason += f"; {len(own)} of {len(instances)} instances failed"
        elif failed:
            first = self.first_failure or failed[0]
            outcome, code = "failed", 1
            reason = f"{len(failed)} of {len(instances)} failed; first: {first.spec.id}: "
            reason += first.verdict()[1] or ""
        elif instances and all(s.recorded != EventType.SUCCESS for s in instances):
            # Each passed only as one a fault may end: nothing checked anything.
            outcome, code = "failed", 1
            reason = NOTHING_CHECKED
        else:
            outcome, code, reason = "passed", 0, None
        return RunResult(self.run_id, self.run_dir, outcome, code, reason, instances,
                         time.time() - self.started_at,
                         [str(e["message"]) for e in self.network_events])

    def _write_run_json(
        self, ended: bool, result: RunResult | None = None, error: str | None = None,
        error_code: int | None = None,
    ) -> None:
        spec = self.spec
        self._last_seen = time.time()
        record = RunRecord(
            run_id=self.run_id,
            plan=spec.plan.name,
            case=spec.case.name,
            runner=spec.runner,
            started=self.started_at,
            ended=time.time() if ended else None,
            outcome=result.outcome if result else ("error" if error else "running"),
            exit_code=result.exit_code if result else error_code,
            reason=result.reason if result else error,
            params=_shared_params(spec),
            composition=str(spec.composition.resolve()) if spec.composition else None,
            timeout_s=spec.timeout_s if math.isfinite(spec.timeout_s) else None,
            groups=tuple(
                GroupRecord(g.id, g.count, dict(g.params), spec.program_of(g))
                for g in spec.groups
            ),
            instances=tuple(s.to_record(final=ended) for s in self.states.values()),
            network=self.deployment.info if self.deployment else None,
            metrics_url=self.metrics_url,
            # Who runs it and when it was last seen alive (harness._liveness), and where
            # its Unix sockets are: what `harness clean` needs after a SIGKILL.
            supervisor=self._identity,
            last_seen=self._last_seen,
            sock_dir=str(self.sock_dir),
            network_events=tuple(self.network_events),
            # What `harness replay` needs besides the groups, runner and timeout above.
            plan_dir=str(spec.plan.path.resolve()),
            faults=tuple(f.to_data() for f in spec.faults),
            origin=self.options.origin,
        )
        if ended and self._reserve is not None:
            self._reserve.write(self.run_dir / RUN_FILE, json_bytes(record.to_json()))
        else:
            write_run(self.run_dir, record)


def _describe(error: BaseException, instances: int) -> str:
    """run.json's reason for a run of `instances` that ended by an exception."""
    if (full := disk_full_in(error)) is not None:  # a full disk fails every writer at once
        return f"cannot write the run's outputs: {full.strerror or full}"
    if (files := out_of_files(error, instances)) is not None:
        return str(files)
    cause = single_cause(error)
    if isinstance(cause, HarnessError):  # e.g. the network could not be built
        return str(cause)
    if isinstance(cause, KeyboardInterrupt | trio.Cancelled):
        return "the supervisor was stopped before the run ended"
    return f"the supervisor failed: {type(cause).__name__}: {cause}"


def _exit_code_of(error: BaseException) -> int:
    """The exit code `harness run` ends with when `error` ended the run (as harness._cli
    maps it): a problem of the machine or the disk 3, bad input 2, an interruption 130,
    anything else 1."""
    cause = single_cause(error)
    if isinstance(cause, HarnessError):
        return cause.exit_code
    if isinstance(cause, KeyboardInterrupt | trio.Cancelled):
        return 130
    full = disk_full_in(error) is not None or out_of_files(error, 0) is not None
    return 3 if full or isinstance(cause, OSError) else 1


def _restart(launch: Launch, restarts: int) -> Launch:
    """The same launch, telling the instance how many times it was started again."""
    return dataclasses.replace(launch, env={**launch.env, "TEST_RESTARTS": str(restarts)})


def _shared_params(spec: RunSpec) -> dict[str, Any]:
    """The params every group runs with (each group's own are under `groups`)."""
    if not spec.groups:
        return {}
    first, *rest = spec.groups
    return {k: v for k, v in first.params.items() if all(g.params.get(k) == v for g in rest)}
