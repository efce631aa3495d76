"""The signals that interrupt a run, and what they do once it has ended: cut its report
short, never change its verdict."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS: tuple[int, ...] = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
    signal.SIGUSR2, signal.SIGALRM, signal.SIGXCPU, signal.SIGIO, signal.SIGPWR,
    signal.SIGSTKFLT, *range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
"""The signals that interrupt a run (`harness._supervisor`), and that once it has ended
cut only its report short: every signal whose default action ends a process and that a
process can take, but those its own code raises (SIGSEGV, SIGABRT and the like), the two
Python ignores (SIGPIPE, SIGXFSZ) and the profilers' timers (SIGPROF, SIGVTALRM). Left at
their default, `kill -USR1` ended a run with nothing it had made removed."""


class LateSignal(BaseException):
    """One of `SIGNALS` (its name the argument) after the run's end was recorded."""


def signal_name(signum: int) -> str:
    """`signum`'s name: SIGTERM, SIGRTMIN+3, else "signal N"."""
    try:
        return signal.Signals(signum).name
    except ValueError:  # the enum names only the first and the last real-time signal
        if signal.SIGRTMIN < signum < signal.SIGRTMAX:
            return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
        return f"signal {signum}"  # (32 and 33: glibc's own)


def handled() -> list[int]:
    """Of `SIGNALS`, those a run takes: SIGINT and SIGTERM always (a shell starts a
    background job ignoring SIGINT, and `kill -INT` must still stop its run), the others
    when at their default or `signal.default_int_handler` (the command's, `harness._entry`,
    until a run takes them, or `_noted` between the runs of `runs_in_a_row`): not when
    this process was started
    ignoring them (nohup's promise: a closed terminal must not act), nor when a program
    that runs the harness within it handles them itself."""
    always = (signal.SIGINT, signal.SIGTERM)
    ours = (signal.SIG_DFL, signal.default_int_handler, _noted)
    return [s for s in SIGNALS if s in always or signal.getsignal(s) in ours]


def _ours() -> list[int]:
    """`handled()`, in the main thread (the only one that may take signals)."""
    if threading.current_thread() is not threading.main_thread():
        return []
    return handled()


_in_command = False  # `harness._entry` runs the command in this process, then it exits
_came: list[str] = []  # the signals that came outside a run's own handling (`runs_in_a_row`)
_pending: list[int] = []  # those noted between runs, for the next run to take (`take_pending`)


def command_exits_after_its_run() -> None:
    """Told by the command's entry point (never by a library caller, whose handlers are its
    own): once a run's report is written or cut short (`late_signals_raise`), the
    `handled()` signals do nothing until the process exits. What is left is printing the
    summary and exiting, and Python gives its own handlers back to the default as it
    exits: a signal then killed a command whose run had passed (143), or made it exit 130."""
    global _in_command
    _in_command = True


@contextlib.contextmanager
def late_signals_raise() -> Iterator[None]:
    """While inside, the `handled()` signals raise `LateSignal` (in the main thread;
    elsewhere nothing changes); after, they do what they did before, or nothing in the
    command (`command_exits_after_its_run`). Before, Ctrl-C while a passed run's report was
    written ended the command with 130, SIGTERM killed it, and run.json said the run
    passed."""

    def raise_(signum: int, frame: FrameType | None) -> None:
        raise LateSignal(signal_name(signum))

    before = {s: signal.signal(s, raise_) for s in _ours()}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_IGN if _in_command else handler)


def cut_short(name: str) -> None:
    """A signal (`name`) cut a run's report short: a command that makes run after run
    (`runs_in_a_row`) stops there."""
    _came.append(name)


def _noted(signum: int, frame: FrameType | None) -> None:
    """Between the runs of `runs_in_a_row`: the signal is noted, not raised (raised, it
    could come inside a finalizer, where Python drops it: a search went on)."""
    _came.append(signal_name(signum))
    _pending.append(signum)


def take_pending() -> list[int]:
    """The signals noted between runs (`runs_in_a_row`) since a run last took them: one that
    came as the next run was being set up, before that run took the signals, interrupts it
    (the run raises it again once it takes them)."""
    taken = list(_pending)
    _pending.clear()
    return taken


@contextlib.contextmanager
def runs_in_a_row() -> Iterator[Callable[[], str | None]]:
    """While inside, the command makes one run after another (a search): each run takes the
    `handled()` signals as its own interruption, and between runs they are noted; the
    command is handed what tells the name of the last one that came outside a run's own
    handling (between runs, or as a run's report was written), or None. After, they do
    nothing in the command (`command_exits_after_its_run`), or what they did before."""
    global _in_command
    was = _in_command
    _in_command = False
    _came.clear()
    _pending.clear()
    before = {s: signal.signal(s, _noted) for s in _ours()}
    try:
        yield lambda: _came[-1] if _came else None
    finally:
        _in_command = was
        _pending.clear()
        for s, handler in before.items():
            signal.signal(s, signal.SIG_IGN if was else handler)
