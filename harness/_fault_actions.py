"""What faults do to a run's instances and links: the supervisor's side of the conductor.

Process faults signal the instance's whole process group; once its process has exited,
what it started that is still in its cgroup (a child in a session of its own, a daemon)
is killed too (`kill_left`). Pausing freezes its cgroup (its whole tree, and it notices
nothing) where the run has per-instance cgroups, else it sends SIGSTOP and SIGCONT to the
group. CPU and memory limits and CPU hogs need the cgroups. Network faults go through the
runner (`Deployment.faults`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
import trio

from harness._cgroup import CgroupError
from harness._clock import preload_blind
from harness.faults import FaultError
from harness.runners import Launch, signal_group

if TYPE_CHECKING:
    from harness._cgroup import InstanceCgroup
    from harness._supervisor import Supervisor

_HOG = "while True: pass"
HOG_START_S = 10.0
"""How long a busy loop may take to start (join its group and cgroup) before its hog fails.
It takes milliseconds; a stalled machine (an emulated one under load) may take seconds."""
GONE_AFTER_KILL_S = 10.0
"""How long a process may take to exit after its SIGKILL before a fault that ended it goes
on regardless (a process in uninterruptible sleep exits only when the kernel lets it)."""
_log = structlog.get_logger("harness.supervisor")


class FaultActions:
    """The `harness._conductor.Actions` of one supervisor."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.hogs: dict[str, list[int]] = {}  # instance -> pids of its busy loops
        # instance -> busy loops it gets at its next start: a hog given back while it is
        # down (started then, they would run until stopped: a moment of load for nothing)
        self.owed: dict[str, int] = {}
        # instance -> how many times its hog changed: loops still starting for an earlier
        # one (owed ones start in a task of their own) are not to run on
        self._hog_changes: dict[str, int] = {}
        # Held while an instance's busy loops start, or what it left is killed: a loop in
        # its cgroup whose pid is not yet in `hogs` would be taken for left over.
        self._cgroup_locks: dict[str, trio.Lock] = {}
        # Busy loops not yet in their own process group and cgroup: a SIGSTOP then stopped
        # the fork server's child before it got there, and its hog failed 10 s later.
        self._hogs_starting: set[int] = set()
        self._hogs_waiting: set[str] = set()  # instances whose loops wait (it is down)
        self._said_no_cgroups = False
        self._ending: dict[str, tuple[int, float]] = {}  # instance -> (pid, grace) signalled

    def running(self) -> set[str]:
        """The instances whose process runs now (a paused one too)."""
        return {iid for iid, st in self.sup.states.items() if st.running}

    # -- network ---------------------------------------------------------------------------

    async def cut(self, pairs: frozenset[tuple[str, str]], on: bool, by: str) -> None:
        """Drop (on) or let through again (off) these directions."""
        await self._network().cut(pairs, on, by)

    async def override(self, shapes: dict[tuple[str, str], dict[str, Any] | None],
                       by: str) -> None:
        """Shape directions over the instances' own shapes (None: remove the override)."""
        from netem import LinkShape

        await self._network().override(
            {p: None if s is None else LinkShape(**s) for p, s in shapes.items()}, by)

    def _network(self) -> Any:
        dep = self.sup.deployment
        if dep is None or dep.faults is None:
            raise FaultError(f"the {self.sup.spec.runner} runner cannot shape or cut links "
                             f"(use local:netns)")
        return dep.faults

    # -- processes -------------------------------------------------------------------------

    async def end(
        self, instance: str, why: str, grace: float | None, comeback: str | None, expect: str
    ) -> bool:
        """Stop the instance on purpose (see `harness._conductor.Actions.end`)."""
        st = self.sup.states[instance]
        if not st.running:
            if comeback == "now":  # a restart of an instance that is not running starts it
                return await self.start(instance, why)
            return False
        st.expecting(expect, ends=True)
        st.ended_by = why
        if comeback is not None:
            back = self.sup.comeback[instance] = trio.Event()
            if comeback == "now":
                back.set()
        if st.paused:
            self.sup.thaw(st)  # a frozen process cannot take its signal
        assert st.pid is not None
        pid = st.pid
        if comeback == "later":  # down for a while: its loops wait from now, not its exit
            self.hogs_wait(instance, True)
        self._ending[instance] = (pid, grace or 0.0)
        if grace is None:
            signal_group(pid, signal.SIGKILL)
            return True
        signal_group(pid, signal.SIGTERM)

        async def kill_later() -> None:
            await trio.sleep(grace)
            if st.running and st.pid == pid:
                signal_group(pid, signal.SIGKILL)

        trio.lowlevel.spawn_system_task(kill_later)
        return True

    async def gone(self, instances: Sequence[str]) -> None:
        """Until the processes `end` signalled have exited: within their grace, then
        SIGKILL's moment (bounded, for one the kernel holds: it is then left to exit)."""
        for instance in instances:
            if instance not in self._ending:  # started, not ended (a restart of one down)
                continue
            pid, grace = self._ending.pop(instance)
            st = self.sup.states[instance]
            with trio.move_on_after(grace + GONE_AFTER_KILL_S):
                while st.running and st.pid == pid:
                    await self.sup.settled()

    async def kill_left(self, instance: str) -> None:
        """SIGKILL what the instance's process started and left running (out of its process
        group, where a fault's signal did not reach: a child in a session of its own, a
        daemon), its busy loops spared; called once its process has exited, before it is
        started again. Without cgroups, the process group was all: the log says so once."""
        cgroups = self.sup.cgroups
        if cgroups is None:
            if not self._said_no_cgroups:
                self._said_no_cgroups = True
                _log.warning("kill, stop and restart reach only each instance's process "
                             "group: what it started in a session of its own runs on until "
                             "the run's end", why=self.sup.no_cgroups)
            return
        group = cgroups.group(instance)
        async with self._cgroup_lock(instance):
            try:
                await trio.to_thread.run_sync(group.kill, self.hogs.get(instance, []))
            except CgroupError as e:
                _log.warning("could not kill what an instance left", instance=instance,
                             error=str(e))

    def _cgroup_lock(self, instance: str) -> trio.Lock:
        return self._cgroup_locks.setdefault(instance, trio.Lock())

    async def start(self, instance: str, why: str) -> bool:
        """Start again an instance a fault ended; False if it was running (nothing done)."""
        st = self.sup.states[instance]
        back = self.sup.comeback.get(instance)
        if back is not None:
            back.set()
            return True
        if not st.running and st.pid is not None and not st.starting:
            if st.ended_by is None and not st.verdict()[0]:
                return False  # it failed of itself: a restart must not wipe that out
            st.expecting("recover")
            self.sup.revive(instance)
            return True
        return False

    async def pause(self, instance: str, on: bool, expect: str = "recover") -> bool:
        """Freeze (on) or thaw (off) the instance's whole process tree, a freeze expecting
        `expect`; False if it was not running (one paused already is held by this pause
        too)."""
        st = self.sup.states[instance]
        if not st.running:
            return False
        if on:
            st.expecting(expect)
        if st.paused == on:
            return True
        assert st.pid is not None
        group = self._group(instance, None)
        if group is None:
            signal_group(st.pid, signal.SIGSTOP if on else signal.SIGCONT)
        else:
            await trio.to_thread.run_sync(group.freeze if on else group.thaw)
        st.paused = on
        return True

    # -- time ------------------------------------------------------------------------------

    def _running(self, instance: str) -> bool:
        return self.sup.states[instance].running

    async def skew(self, instance: str, offset: float, drift: float, *,
                   back: bool = False) -> bool:
        """Set the instance's clock offset and drift (from now: a jump, then the drift);
        False if it was not running (nothing done), unless `back` (a fault ends: its next
        start must not keep the clock)."""
        if not back and not self._running(instance):
            return False
        launch = self.sup.launches.get(instance)
        clock = self.sup.clocks[instance]
        # Not LD_PRELOAD alone: one the supervisor inherited preloads something else.
        if (launch is not None and launch.argv
                and launch.env.get("FAKETIME_TIMESTAMP_FILE") != str(clock.path)):
            raise FaultError(f"{instance} is a program started without libfaketime: a clock "
                             f"fault reaches it only if one the run plans may select it")
        if launch is not None and launch.argv and not back:
            blind = preload_blind(launch.argv[0])
            if blind is not None:  # the skew would be recorded as applied, and change nothing
                raise FaultError(f"{instance} cannot be skewed: {blind}")
        clock.set(offset, drift)
        return True

    # -- resources -------------------------------------------------------------------------

    async def limit(self, instance: str, cpu: float | None, memory: int | None, *,
                    back: bool = False) -> bool:
        """Cap the instance's CPU and memory (None: lift that cap); False if it was not
        running (nothing done), unless `back` (a fault ends: its cgroup, which a restart
        reuses, must not keep the cap)."""
        if not back and not self._running(instance):
            return False
        group = self._group(instance, "limit")
        assert group is not None
        # Memory first: the kernel may refuse it (below what the group holds), and a refused
        # limit must leave nothing behind (its CPU cap stayed for the rest of the run).
        memory_set = False
        try:
            if memory is not None or "memory" in group.dirs:
                await trio.to_thread.run_sync(group.set_memory, memory)
                memory_set = memory is not None
            if cpu is not None or "cpu" in group.dirs:
                await trio.to_thread.run_sync(group.set_cpu, cpu)
        except Exception as e:
            if memory_set:
                with contextlib.suppress(Exception):
                    await trio.to_thread.run_sync(group.set_memory, None)
            raise FaultError(f"limit on {instance}: {e}") from None
        return True

    async def hog(self, instance: str, loops: int, *, back: bool = False) -> bool:
        """Run `loops` busy loops in the instance's cgroup (0: stop them); False if it was
        not running and was to get some (nothing done: they would only load the host),
        unless `back` (a fault ends, and gives back the loops of one still in force: they
        start with its next start, `hogs_wait`)."""
        group = self._group(instance, "hog")
        assert group is not None
        self._hog_changes[instance] = self._hog_changes.get(instance, 0) + 1
        for pid in self.hogs.pop(instance, []):
            signal_group(pid, signal.SIGKILL)
        self.owed.pop(instance, None)
        if loops and not self._running(instance):
            if not back:
                return False
            self.owed[instance] = loops
            return True
        await self._spawn_hogs(instance, loops, group)
        return True

    async def _spawn_hogs(self, instance: str, loops: int, group: InstanceCgroup) -> None:
        """Start `loops` busy loops; those of a hog changed meanwhile (`hog`) go at once."""
        assert self.sup.host is not None
        out = self.sup.run_dir / instance / "hog.log"
        changes = self._hog_changes.get(instance, 0)
        for _ in range(loops):
            async with self._cgroup_lock(instance):
                proc = await self.sup.host.spawn(Launch(
                    {}, out.parent, out, out, None, [sys.executable, "-c", _HOG],
                    group.paths()))
                outdated = self._hog_changes.get(instance, 0) != changes
                if not outdated:
                    self.hogs.setdefault(instance, []).append(proc.pid)
                self._hogs_starting.add(proc.pid)
            try:
                started = await _started(proc.pid, group)  # so that its group's signals reach it
            finally:
                self._hogs_starting.discard(proc.pid)
            if outdated:
                signal_group(proc.pid, signal.SIGKILL)
                return
            if not started:
                # Out of the groups' reach it would load the host past the hog's end: none
                # of this hog's loops stays (no half-played fault).
                for pid in self.hogs.pop(instance, []):
                    signal_group(pid, signal.SIGKILL)
                raise FaultError(f"hog on {instance}: a busy loop was not in the instance's"
                                 f" process group and cgroup {HOG_START_S:g} s after its"
                                 " start (the machine too loaded?); none left running")
            if instance in self._hogs_waiting or not self._running(instance):
                signal_group(proc.pid, signal.SIGSTOP)  # down while it started: it waits too

    def hogs_wait(self, instance: str, waiting: bool) -> None:
        """Stop (waiting) or let go on the busy loops of an instance whose process exited
        or is started again: beside an exited one they would only load the host. Started
        again, it gets the loops owed to it (`hog` with `back` while it was down)."""
        (self._hogs_waiting.add if waiting else self._hogs_waiting.discard)(instance)
        for pid in self.hogs.get(instance, []):
            if pid not in self._hogs_starting:  # (one starting waits once started)
                signal_group(pid, signal.SIGSTOP if waiting else signal.SIGCONT)
        loops = 0 if waiting else self.owed.pop(instance, 0)
        if loops:
            group = self._group(instance, "hog")
            assert group is not None
            trio.lowlevel.spawn_system_task(self._owed_hogs, instance, loops, group)

    async def _owed_hogs(self, instance: str, loops: int, group: InstanceCgroup) -> None:
        try:
            await self._spawn_hogs(instance, loops, group)
        except Exception as e:  # a system task must not raise: the run goes on without them
            _log.warning("could not start the busy loops owed to an instance",
                         instance=instance, error=str(e))

    def _group(self, instance: str, needs: str | None) -> InstanceCgroup | None:
        """The instance's cgroup; without one, None for a pause, a FaultError otherwise."""
        cgroups = self.sup.cgroups
        if cgroups is None:
            if needs is None:
                return None
            raise FaultError(f"{needs} needs per-instance cgroups, which this run could not "
                             f"make ({self.sup.no_cgroups})")
        return cgroups.group(instance)


async def _started(pid: int, group: InstanceCgroup) -> bool:
    """Wait until the busy loop `pid` leads its process group and is in the instance's
    cgroup (True; or it has already exited), at most `HOG_START_S` (False): the fork
    server's child calls setsid, then joins the groups, only as it starts. A signal to its
    group before that was lost (a loop went on beside an instance that was down), and one
    stopped before joining was out of reach of the groups' removal."""
    with trio.move_on_after(HOG_START_S):
        while True:
            try:
                if os.getpgid(pid) == pid and (not group.dirs or pid in group.pids()):
                    return True
            except ProcessLookupError:
                return True
            await trio.sleep(0.001)
    return False
