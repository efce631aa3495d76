"""Running a test function as an instance: connect, announce, run, record the outcome."""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import inspect
import logging
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import anyio
import structlog

from harness._runparams import STACK_SIGNAL, RunEnvError
from harness.observe._logging import configure_logging
from harness.sdk._awaits import ForgottenAwaits
from harness.sdk._connect import connect
from harness.sdk._network import NetworkClient
from harness.sdk._profile import profiler_from_environ
from harness.sdk._runenv import RunEnv
from harness.sdk._taskstacks import write_task_stacks
from harness.sync import BarrierFailed, EventType, SubscriptionFailed, SyncError

TestFunction = Callable[[RunEnv], Awaitable[None]]
"""`async def case(env: RunEnv) -> None`: returning records success, raising a failure."""
T = TypeVar("T")


def run_on(backend: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`anyio.run(fn, *args)` on a plan's `backend`: "trio", "asyncio", or "uvloop" (asyncio
    on uvloop's event loop: libuv's loop and transports, a tenth less CPU than asyncio's
    own for a process busy with many TCP connections)."""
    if backend == "uvloop":
        return anyio.run(fn, *args, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(fn, *args, backend=backend)


def load_entrypoint(spec: str) -> TestFunction:
    """'package.module:function' -> the function."""
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    fn = getattr(module, attr, None)
    if not callable(fn):
        why = (f"{module_name} has no function {attr!r}" if not hasattr(module, attr) else
               f"{module_name}.{attr} is of type {type(fn).__name__}, not a function")
        raise RunEnvError(f"entrypoint {spec!r}: {why}")
    return fn  # type: ignore[no-any-return]


def run_instance(fn: TestFunction, backend: str = "trio", env: RunEnv | None = None) -> int:
    """Run `fn` as this process's instance; returns the process exit code."""
    try:
        env = env or RunEnv.from_environ()
    except RunEnvError as e:
        print(f"harness.sdk: {e}", file=sys.stderr)
        return 3
    configure_logging(json_path=env.outputs_path / "log.jsonl", instance=env.instance_id)
    # Warnings as the instance's warnings, in log.jsonl: a coroutine never awaited (a
    # forgotten `await` before a barrier, which then passes) was an INFO line of stderr.
    logging.captureWarnings(True)
    try:
        profiler = profiler_from_environ(env.outputs_path)
    except ValueError as e:
        print(f"harness.sdk: {e}", file=sys.stderr)
        return 3
    if profiler is not None:
        profiler.start()
    try:
        with _stacks_on_signal():
            return run_on(backend, _run, fn, env)
    except SyncError as e:
        print(f"harness.sdk: {e}", file=sys.stderr)
        return 3
    finally:
        if profiler is not None:
            profiler.stop()


@contextlib.contextmanager
def _stacks_on_signal() -> Iterator[None]:
    """Every thread's stack to stderr on `STACK_SIGNAL`, as the supervisor stops the
    instance. Written by the signal handler itself, in C: an event loop blocked by the
    plan's code (a busy loop, a blocking call) runs no Python handler. Then, chained, if
    the loop is free to run it: where each of its tasks awaits (`write_task_stacks`),
    which no thread's stack shows."""
    try:
        before = signal.signal(STACK_SIGNAL, write_task_stacks)
    except ValueError:  # not the main thread: the threads' dump alone
        before = None
    try:
        faulthandler.register(STACK_SIGNAL, file=sys.stderr, all_threads=True, chain=True)
    except (RuntimeError, ValueError, OSError):  # no stderr to write to (None, closed)
        if before is not None:
            signal.signal(STACK_SIGNAL, before)
        yield
        return
    try:
        yield
    finally:
        faulthandler.unregister(STACK_SIGNAL)
        if before is not None:
            signal.signal(STACK_SIGNAL, before)


def invoke(fn: TestFunction, backend: str = "trio") -> NoReturn:
    """`sdk.invoke(case)` as a script's main: run it as the instance, exit with its code."""
    sys.exit(run_instance(fn, backend))


class TestFailure(Exception):
    """Raise to fail the instance with a message (recorded as `failure`, not `crash`)."""


_FAILURES = (TestFailure, AssertionError, BarrierFailed, SubscriptionFailed)


def _leaves(e: BaseException) -> list[BaseException]:
    """The exceptions an exception group holds, however nested; `[e]` for any other."""
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in _leaves(sub)]
    return [e]


def _describe(e: BaseException, code: Path | None = None) -> str:
    """The error as its reason says it, with where in the plan's code (under `code`) it
    was raised, if it was: "ValueError: boom (at plan.py:12)"."""
    if isinstance(e, SystemExit):  # `SystemExit: 0` would read as a clean end
        return f"SystemExit({e.code!r}): the test function exited instead of returning"
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    where = _raised_at(e, code)
    return f"{text} (at {where})" if where else text


def _raised_at(e: BaseException, code: Path | None) -> str | None:
    """The innermost frame of the plan's code (under `code`) the error came through, as
    `file:line` relative to `code`; None if it came through none (a check's own failure
    names its place itself)."""
    if code is None or isinstance(e, _FAILURES):
        return None
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        path = Path(frame.filename)
        if path.is_relative_to(code):
            return f"{path.relative_to(code)}:{frame.lineno}"
    return None


async def _run(fn: TestFunction, env: RunEnv) -> int:
    async with connect(env) as sync:
        env.sync = sync
        env.network = NetworkClient(env)
        env.log = structlog.get_logger("instance")
        await sync.signal_event({"type": EventType.START})
        forgotten = ForgottenAwaits(_code_of(fn))
        try:
            with forgotten.watching():
                await _call(fn, env)
                forgot = forgotten.reason()  # before success: after it, nothing fails it
        except BaseException as group:
            # Several tasks may fail at once: each error is said, in a failure if each is a
            # failed check, else in a crash.
            errors = [e for e in _leaves(group)
                      if isinstance(e, Exception | KeyboardInterrupt | SystemExit)]
            if not errors:
                raise  # a cancellation: the instance is being stopped, not failing
            code = _code_of(fn)
            error = "; ".join(_describe(e, code) for e in errors)
            if len(errors) > 1:
                error = f"{len(errors)} errors at once: {error}"
            # A failed check is the test failing; any other exception is a crash.
            failed = all(isinstance(e, _FAILURES) for e in errors)
            kind = EventType.FAILURE if failed else EventType.CRASH
            env.log.error(kind.value, error=error)  # as record_failure / record_crash log it
            with contextlib.suppress(OSError):  # a case may have closed its stderr
                traceback.print_exc()  # after the record: `harness logs` shows it in its place
            await _report_end(env, kind, error, traceback.format_exc())
            return 1
        finally:
            if "metrics" in vars(env):  # recorded some
                env.metrics.close()
        if forgot is not None:
            env.log.error(EventType.FAILURE.value, error=forgot)
            await _report_end(env, EventType.FAILURE, forgot)
            return 1
        await env.record_success()
        return 0


async def _call(fn: TestFunction, env: RunEnv) -> None:
    """Run the test function to its end."""
    result = fn(env)
    if not inspect.isawaitable(result):  # else "NoneType can't be used in 'await'"
        name = getattr(fn, "__name__", fn)
        if inspect.isasyncgen(result):  # `async def` with a `yield`: it is async, and runs not
            raise TypeError(f"the test function {name!r} is an async generator (it has a "
                            "`yield`): a test function returns, it does not yield")
        raise TypeError(f"the test function {name!r} is not async: define it with "
                        "`async def`")
    returned: object = await cast("Awaitable[object]", result)  # typed None: any value
    if returned is not None:  # `return False` passes: say so where it is looked for
        env.log.warning("the test function returned a value, which is ignored: "
                        "raise sdk.TestFailure to fail", returned=repr(returned)[:200])


async def _report_end(env: RunEnv, kind: EventType, error: str, stacktrace: str = "") -> None:
    """Record the instance's failure or crash, if it can within 5 s: if it cannot, the
    exit code still fails the instance."""
    report = env._signal_end(kind, error, stacktrace)
    with contextlib.suppress(SyncError, TimeoutError), anyio.fail_after(5):
        await report


def _code_of(fn: TestFunction) -> Path | None:
    """The directory of the test function's module: the plan's code."""
    try:
        return Path(inspect.getfile(fn)).parent
    except TypeError:  # no source file: a builtin, a callable object
        return None
