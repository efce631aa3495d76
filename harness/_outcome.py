"""Each instance's outcome, from what it recorded and how its process ended."""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

from harness._latesignal import signal_name
from harness.observe._runrecord import InstanceRecord
from harness.plans import InstanceSpec
from harness.sync._protocol import OUTCOME_EVENTS, EventType


def still_running_at_timeout(timeout_s: float) -> str:
    """Why an instance whose process still ran at the run's timeout failed (the local
    supervisor and the cluster's sync service say it alike)."""
    return f"still running at the run's timeout ({timeout_s:g}s)"


@dataclasses.dataclass
class InstanceState:
    """What the supervisor knows of one instance while the run goes on."""

    spec: InstanceSpec
    ip: str = ""
    pid: int | None = None
    started: float | None = None
    ended: float | None = None
    status: int | None = None  # exit code, or minus the signal that ended it
    recorded: str | None = None  # the first of "success", "failure", "crash"
    error: str | None = None
    stopped: str | None = None  # why the supervisor stopped it, if it did
    start_error: str | None = None
    not_started: str | None = None  # why the supervisor never started it (e.g. interrupted)
    restarts: int = 0  # how many times a fault started it again
    down_s: float = 0.0  # how long faults kept it down before its restarts
    ended_by: str | None = None  # the fault that ended its process, while it stays down
    expect: str | None = None  # what its faults expect: "may_die" or "recover" (the stronger)
    paused: bool = False
    sync_closed: str | None = None  # why the sync service closed its connection, if it did
    oom_killed: bool = False  # its cgroup's memory limit: the kernel killed it
    oom_seen: int = 0  # its cgroup's count of such kills at its process's last exit
    oom_others: int = 0  # processes of its cgroup the kernel killed so, since its last exit
    starting: bool = False  # restarted, its new process not yet known (`pid` is the old one)
    last_words: str | None = None  # the end of its stderr, where its exit alone fails it

    @property
    def running(self) -> bool:
        """Started and not yet exited (not while it is being started again: a signal to
        its old process, gone, would be lost)."""
        return self.pid is not None and self.status is None and not self.starting

    def record(self, event: dict[str, Any]) -> None:
        """Take in one of the instance's own events."""
        kind = event.get("type")
        if kind not in OUTCOME_EVENTS:
            return
        # A failure after a success still fails the instance; nothing undoes a failure.
        if self.recorded is None or (
            self.recorded == EventType.SUCCESS and kind != EventType.SUCCESS
        ):
            self.recorded = kind
            self.error = event.get("error") or None
        if kind == EventType.SUCCESS:
            # Whatever the faults so far expected of it, it has done: a later one is judged
            # by its own expectation (a kill for good after a recovered timed kill was
            # failed as "expected to recover but never did").
            self.expect = None

    @property
    def may_die(self) -> bool:
        """A fault ended it (or is ending it) and its faults allow it to stay down: the
        run's end does not stop it, the faults judge it."""
        return self.ended_by is not None and self.expect == "may_die"

    def expecting(self, expect: str, *, ends: bool = False) -> None:
        """A process fault hit it, expecting `expect`. One that `ends` it (a kill, stop or
        restart) judges it alone: the faults before it were undone or are cut short by it,
        and can no longer be judged. Else "recover" outweighs "may_die"."""
        if ends or self.expect != "recover":
            self.expect = expect

    def exited_with_oom_kills(self, kills: int) -> None:
        """Its process has exited (`status` is set) and its cgroup counts `kills` OOM kills:
        it was killed for the group's memory limit if SIGKILL ended it and the count rose
        since its last exit (the kernel counts per group, not per process); else, the kills
        since then were of other processes of its group (its children)."""
        self.oom_killed = self.status == -signal.SIGKILL and kills > self.oom_seen
        self.oom_others = 0 if self.oom_killed else max(0, kills - self.oom_seen)
        self.oom_seen = kills

    def restarted(self, at: float | None) -> None:
        """A fault starts it again: the new process must record success anew. Started
        `at` (Unix seconds), it has not ended yet, and its time down since its exit does
        not count as running (None: where the start's time is not known here, a cluster's
        pod, whose record keeps its own times)."""
        self.restarts += 1
        if at is not None and self.ended is not None:
            self.down_s += max(0.0, at - self.ended)
            self.ended = None
        self.ended_by = None
        self.last_words = None
        self.status = None
        self.starting = True
        if self.recorded == EventType.SUCCESS:
            self.recorded = None

    def verdict(self, *, quote: bool = True) -> tuple[bool, str | None]:
        """(passed, why not): passed only with success recorded and a clean exit, or, for
        one a fault ended and whose faults allow it ("may_die"), without a failure. Where
        its exit alone fails it, the reason quotes its `last_words` (unless not `quote`)."""
        if self.recorded == EventType.CRASH:
            return False, f"crashed: {self.error or 'no detail'}"
        if self.recorded == EventType.FAILURE:
            return False, f"failed: {self.error or 'no detail'}"
        if self.ended_by is not None and self.status is not None and not self.stopped:
            if self.expect == "may_die":
                return True, None
            return False, f"{self.ended_by}, and it was expected to recover but never did"
        if self.start_error:
            return False, f"did not start: {self.start_error}"
        if self.not_started:
            return False, f"not started ({self.not_started})"
        if self.stopped:
            return False, self.stopped
        if self.status is None:
            return False, "did not start"
        if self.status < 0:
            name = signal_name(-self.status)
            oom = ": out of memory (its cgroup's memory limit)" if self.oom_killed else ""
            said = self._said() if quote else ""
            return False, f"killed by {name}{oom}{self._children_oom()}{said}"
        if self.status > 0:  # the instance's own reason for it may be this:
            closed = f" (the sync service had closed its connection: {self.sync_closed})"
            return False, (f"exit code {self.status}{self._children_oom()}"
                           + (closed if self.sync_closed else "")
                           + (self._said() if quote else ""))
        if self.recorded != EventType.SUCCESS:
            return False, "exited 0 without recording success"
        return True, None

    @property
    def exit_says_why(self) -> bool:
        """Whether its verdict, if it failed, is its exit alone (an exit code or a signal,
        no recorded failure, no stop, no memory limit): then what it wrote last on stderr
        may say why."""
        return (self.status is not None and self.status != 0 and self.ended_by is None
                and self.recorded not in (EventType.CRASH, EventType.FAILURE)
                and not (self.stopped or self.start_error or self.not_started
                         or self.oom_killed))

    def _said(self) -> str:
        return f"; stderr ends: {self.last_words}" if self.last_words else ""

    def _children_oom(self) -> str:
        """What its exit may be owed to: the kernel killed others of its processes (a
        child the program waited for) for its cgroup's memory limit."""
        if not self.oom_others:
            return ""
        n = self.oom_others
        return (f" (the kernel killed {n} other process{'es' * (n > 1)} of its cgroup for "
                f"its memory limit)")

    def to_record(self, *, final: bool = True) -> InstanceRecord:
        """The instance's entry in run.json; while the run goes on (not `final`), one that
        runs or is yet to start has no outcome, unless it has failed already."""
        passed, reason = self.verdict()
        outcome: str | None = "passed" if passed else "failed"
        to_start = ((self.pid is None or self.starting) and not final
                    and not (self.start_error or self.not_started or self.stopped))
        if (self.running or to_start) and self.recorded not in (EventType.CRASH,
                                                                EventType.FAILURE):
            outcome = reason = None  # not known yet
        s = self.spec
        return InstanceRecord(
            id=s.id,
            group=s.group,
            group_seq=s.group_seq,
            global_seq=s.global_seq,
            role=s.role,
            ip=self.ip,
            pid=self.pid,
            outcome=outcome,
            reason=reason,
            exit_code=self.status,
            started=self.started,
            ended=self.ended,
            dir=s.id,
            restarts=self.restarts,
            down_s=round(self.down_s, 6),
            note=self.note(),
        )

    def note(self) -> str | None:
        """What a fault did to it that is worth saying next to a pass."""
        if self.ended_by is not None and self.verdict()[0]:
            return f"{self.ended_by} (it may die: expected)"
        if self.restarts:
            down = f", down {self.down_s:.1f} s in all" if self.down_s else ""
            return f"restarted {self.restarts} time(s) by faults{down}"
        return None
