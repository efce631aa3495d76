"""The conductor: plays a run's faults, and those asked for live, on the supervisor's side.

Each fault waits for its time (seconds after the instances start) or its sync condition,
chooses its instances (`Fault.resolve`, with the topics' latest items), acts through the
`Actions` the supervisor gives it, and is undone after its duration. Every step is recorded
(`faults.jsonl`, and as `{"kind": "fault"}` events); a fault that cannot be played fails the
run with its reason, since a test whose fault never happened proves nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol

import orjson
import structlog
import trio

from harness.faults import Fault, FaultError, Member, Resolved, When
from harness.faults._errors import TooLate
from harness.observe import JsonlWriter
from harness.sync import SyncState

_log = structlog.get_logger("harness.faults")

NEVER_PLAYED = "never played: the run's instances ended first"
"""Why a planned fault that had not come when every instance had ended failed the run."""
NEVER_FIRED = "never fired"
"""Why a fault on a sync condition that can no longer be met failed the run (the reason
follows)."""

Pair = tuple[str, str]


class Actions(Protocol):
    """What the supervisor does for the conductor; each raises FaultError when it cannot."""

    def running(self) -> Collection[str] | None:
        """The instances whose process runs now (a paused one too); None if not known."""
        ...

    async def cut(self, pairs: frozenset[Pair], on: bool, by: str) -> None:
        """Drop (on) or let through again (off) the traffic of these directions."""
        ...

    async def override(self, shapes: dict[Pair, dict[str, Any] | None], by: str) -> None:
        """Shape directions over the instances' own shapes (None: remove the override)."""
        ...

    async def end(
        self, instance: str, why: str, grace: float | None, comeback: str | None, expect: str
    ) -> bool:
        """Stop an instance on purpose: SIGKILL (grace None) or SIGTERM then SIGKILL after
        `grace`. `comeback` "now": it starts again at once with the same identity; "later":
        it stays down until `start`; None: for good (unless a later fault starts it).
        `expect` ("may_die" or "recover") is what its outcome is judged by. False if it was
        not running (nothing done)."""
        ...

    async def gone(self, instances: Sequence[str]) -> None:
        """Until the instances `end` signalled have exited (their grace bounds it)."""
        ...

    async def start(self, instance: str, why: str) -> bool:
        """Start again an instance a fault stopped; False if it was running."""
        ...

    async def pause(self, instance: str, on: bool, expect: str = "recover") -> bool:
        """Freeze (on) or thaw (off) the instance's whole process tree, a freeze expecting
        `expect` of it; False if it was not running (nothing done). One paused already
        stays so: True."""
        ...

    async def skew(self, instance: str, offset: float, drift: float, *,
                   back: bool = False) -> bool:
        """Set the instance's clock offset and drift; False if it was not running (nothing
        done). `back`: a fault ends, and the setting holds for its next start too."""
        ...

    async def limit(self, instance: str, cpu: float | None, memory: int | None, *,
                    back: bool = False) -> bool:
        """Cap the instance's CPU and memory (None: lift that cap); False if it was not
        running (nothing done). `back`: as for `skew`."""
        ...

    async def hog(self, instance: str, loops: int, *, back: bool = False) -> bool:
        """Run `loops` busy loops beside the instance, in its cgroup (0: stop them); False
        if it was not running and was to get some (nothing done), unless `back`: then they
        wait, stopped, for its next start."""
        ...


@dataclasses.dataclass
class _Active:
    name: str
    resolved: Resolved
    undo: Callable[[], Any] | None = None
    hit: list[str] = dataclasses.field(default_factory=list)
    """The instances a pause, skew, limit or hog holds (those it found running)."""
    at: float = 0.0
    """trio's clock when it was applied."""


def _setting(fault: Fault, elapsed: float) -> tuple[Any, ...]:
    """What a skew, limit or hog fault sets, `elapsed` seconds after it was applied (a
    skew's drift has moved its offset on since)."""
    args = fault.args
    if fault.action == "skew":
        drift = args.get("drift", 0.0)
        return args.get("offset", 0.0) + drift * elapsed, drift
    if fault.action == "limit":
        return args.get("cpu"), args.get("memory")
    return (args["cpu"],)


_UNSET: dict[str, tuple[Any, ...]] = {"skew": (0.0, 0.0), "limit": (None, None), "hog": (0,)}


class Conductor:
    """Plays `faults` over `members`; `inject` plays one more, live."""

    def __init__(
        self,
        faults: Sequence[Fault],
        members: Sequence[Member],
        actions: Actions,
        state: SyncState,
        record: Callable[[dict[str, Any]], None],
        log: JsonlWriter,
        fail: Callable[[str], None],
        timeout_s: float = math.inf,
    ) -> None:
        self.faults = tuple(faults)
        self.timeout_s = timeout_s
        """The run's timeout, from time 0: a live fault due later is refused."""
        self.members = list(members)
        self.actions = actions
        self.state = state
        self._record = record
        self._log = log
        self._fail = fail
        self._active: dict[str, _Active] = {}
        self._live = 0  # live faults played so far: the next one's number
        self._asked_by: dict[str, str] = {}  # live faults' names: who asked
        self._nursery: trio.Nursery | None = None
        self.t0 = 0.0  # trio's clock at the fault schedule's time 0
        self.played = 0
        self._waiting: dict[str, Fault] = {}  # faults whose time has not come yet

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Play the planned faults from now on (time 0); serve live ones until cancelled."""
        self.t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for n, fault in enumerate(self.faults):
                nursery.start_soon(self._planned, f"fault {n}", fault)
            task_status.started()
            await trio.sleep_forever()

    async def inject(self, fault: Fault, asked_by: str) -> dict[str, Any]:
        """Play `fault` now (its `at` is from now: seconds, or a sync condition) and return
        what it chose, with its name (`fault`) and `asked_by`, as its record has them;
        FaultError if it cannot be played."""
        if self._nursery is None:
            raise FaultError("the run has not started its instances yet")
        number = self._live
        name = f"live {number} ({asked_by})"
        head = {"fault": name, "asked_by": asked_by}
        if fault.at == 0.0:
            resolved = self._resolve(name, fault)  # a refusal here leaves no trace
            self._live += 1
            self._asked_by[name] = asked_by
            try:
                applied = await self._apply(name, resolved)
            except FaultError:  # refused as it was played (a skew without libfaketime)
                del self._asked_by[name]
                if self._live == number + 1:  # unless a later one took the next
                    self._live -= 1  # its number is the next accepted one's (contracts §4)
                raise
            self._nursery.start_soon(self._later, name, resolved)
            return {**head, **applied}
        if not isinstance(fault.at, When) and self.at_s() + fault.at >= self.timeout_s:
            left = max(0.0, self.timeout_s - self.at_s())
            raise FaultError(f"at {fault.at:g}s from now is past the run's timeout "
                             f"({self.timeout_s:g}s, {left:.0f}s left)")
        fault.resolve(self.members, name)  # what can be checked now is, as for planned ones
        self._live += 1
        self._asked_by[name] = asked_by
        self._nursery.start_soon(self._planned, name, fault, trio.current_time())
        return {**head, **fault.to_data()}

    def at_s(self) -> float:
        """Seconds since time 0 (every instance started)."""
        return trio.current_time() - self.t0

    def pausing(self, instance: str) -> str | None:
        """The pause that holds `instance` frozen now, as a reason says it ("frozen by
        fault 0 (pause) since 1.0 s"); None if none does."""
        held = [a for a in self._active.values()
                if a.resolved.fault.action == "pause" and instance in a.hit]
        if not held:
            return None
        return f"frozen by {held[-1].name} (pause) since {held[-1].at - self.t0:.1f} s"

    def finish(self, failed_already: bool) -> None:
        """The run's instances have all ended: a fault that never came is recorded, and
        fails a run that would pass otherwise (a test whose fault did not happen proves
        nothing)."""
        for name, fault in list(self._waiting.items()):
            self._failed(name, fault, NEVER_PLAYED, fail=not failed_already, late=True)

    async def _planned(self, name: str, fault: Fault, since: float | None = None) -> None:
        self._waiting[name] = fault
        try:
            if isinstance(fault.at, When):
                if not await self._condition(name, fault):
                    return
            else:
                await trio.sleep_until((since or self.t0) + fault.at)
            del self._waiting[name]
            resolved = self._resolve(name, fault)
            await self._apply(name, resolved)
            await self._later(name, resolved)
        except FaultError as e:
            self._waiting.pop(name, None)
            self._failed(name, fault, str(e), late=isinstance(e, TooLate))

    async def _later(self, name: str, resolved: Resolved) -> None:
        """Undo after the fault's duration."""
        if resolved.fault.duration is None:
            return
        await trio.sleep(resolved.fault.duration)
        try:
            await self._undo(name)
        except FaultError as e:
            self._failed(name, resolved.fault, f"could not be undone: {e}",
                         late=isinstance(e, TooLate))

    async def _condition(self, name: str, fault: Fault) -> bool:
        """Wait until the fault's `at` (a When): `count` instances signalled `state`; False
        (and the run fails) once that can no longer happen."""
        when = fault.at
        assert isinstance(when, When)
        done = trio.Event()
        answer: dict[str, Any] = {}

        def reply(frame: bytes) -> None:
            answer.update(orjson.loads(frame))
            done.set()

        self.state.barrier(when.state, when.count, name, reply, None)
        await done.wait()
        if "error" in answer:
            del self._waiting[name]
            self._failed(name, fault, f"{NEVER_FIRED}: {answer['error']}", late=True)
            return False
        return True

    def _resolve(self, name: str, fault: Fault) -> Resolved:
        return fault.resolve(self.members, name, self.state.last_item, self.actions.running())

    async def _apply(self, name: str, resolved: Resolved) -> dict[str, Any]:
        """Play the fault; what it recorded as applied: what it chose, and whom it missed (a
        process, clock or resource fault on one that was not running does nothing there)."""
        begun = self.at_s()
        active = _Active(name, resolved, at=trio.current_time())
        try:
            missed = await self._play(name, resolved, active)
        except FaultError:
            raise
        except Exception as e:  # the network or a cgroup refused it: not played, said so
            raise FaultError(f"{resolved.fault.action} failed: {type(e).__name__}: {e}"
                             ) from e
        self._active[name] = active
        self.played += 1
        # What it chose, and whom it found not running (nothing was done there).
        applied = {**resolved.to_data(), **({"missed": missed} if missed else {})}
        self._write(name, "applied", applied, begun)
        return applied

    async def _play(self, name: str, resolved: Resolved, active: _Active) -> list[str]:
        """Act on the fault's instances or directions, setting `active.undo`; whom it
        missed."""
        fault, chosen = resolved.fault, resolved.instances
        action, args = fault.action, fault.args
        missed: list[str] = []
        if action in ("partition", "isolate"):
            await self.actions.cut(resolved.directions, True, name)
            active.undo = lambda: self._uncut(name)
        elif action == "heal":
            await self._heal(name)
        elif action == "shape":
            await self.actions.override({p: args["shape"] for p in resolved.directions}, name)
            active.undo = lambda: self._unshape(name)
        elif action in ("kill", "stop", "restart"):
            grace = None if action == "kill" else float(args.get("grace", 3.0))
            why = f"{'killed' if action == 'kill' else 'stopped'} by {name} ({action})"
            comeback = "now" if action == "restart" else (
                "later" if fault.duration is not None else None)
            expect = fault.expectation() or "recover"
            missed = [iid for iid in chosen
                      if not await self.actions.end(iid, why, grace, comeback, expect)]
            ended = [iid for iid in chosen if iid not in missed]
            self._unhold_pauses(ended, name)  # ended: the pauses holding them end (thawed)
            # Applied once they are down: a stop's duration counts from the exit, not from
            # its SIGTERM (a program that takes its grace to exit was down for no time).
            await self.actions.gone(ended)
            if fault.duration is not None:  # those it ended: nothing was done to the missed
                active.undo = lambda: self._each(ended, self.actions.start, f"{name} undone")
        elif action == "pause":
            missed = await self._hold(active, chosen, (True, fault.expectation() or "recover"),
                                      lambda hit: self._unpause(name, hit))
        elif action == "resume":
            missed = [iid for iid in chosen if not await self.actions.pause(iid, False)]
            self._unhold_pauses(chosen, name)  # resumed: no pause holds them any more
        elif action in _UNSET:
            missed = await self._hold(active, chosen, _setting(fault, 0.0),
                                      lambda hit: self._set_back(name, action, hit))
        return missed

    async def _undo(self, name: str) -> None:
        active = self._active.get(name)
        if active is None or active.undo is None:
            return  # healed already, or nothing to undo
        begun = self.at_s()
        await active.undo()
        del self._active[name]
        self._write(name, "undone", {"action": active.resolved.fault.action}, begun)

    async def _each(self, instances: Sequence[str], act: Callable[..., Any], *args: Any) -> None:
        for iid in instances:
            await act(iid, *args)

    async def _hold(
        self, active: _Active, chosen: Sequence[str], on: tuple[Any, ...],
        back: Callable[[list[str]], Awaitable[None]],
    ) -> list[str]:
        """The fault's action with arguments `on` on each chosen instance: whom it missed
        (not running). Those it reached are `active.hit`; a timed fault's undo is
        `back(active.hit)`. If one refuses, those it reached already are put back first: a
        refused fault leaves nothing behind."""
        act = getattr(self.actions, active.resolved.fault.action)
        missed: list[str] = []
        try:
            for iid in chosen:
                (active.hit if await act(iid, *on) else missed).append(iid)
        except Exception:
            with contextlib.suppress(Exception):  # the refusal is what the run is told
                await back(active.hit)
            raise
        if active.resolved.fault.duration is not None:
            active.undo = lambda: back(active.hit)
        return missed

    def _unhold_pauses(self, instances: Sequence[str], by: str) -> None:
        """No pause in force holds `instances` any more (fault `by` ended or resumed them):
        its end leaves them be, and no reason says it froze them (a later pause's end
        thawed nothing while it did). A pause left holding none is over, and recorded so."""
        for n, a in list(self._active.items()):
            if a.resolved.fault.action == "pause" and set(a.hit) & set(instances):
                a.hit = [iid for iid in a.hit if iid not in instances]
                if not a.hit:
                    del self._active[n]
                    self._write(n, "undone", {"action": "pause", "by": by})

    def _held_by_others(self, name: str, action: str) -> dict[str, _Active]:
        """Each instance another fault of `action` in force holds: the latest such fault."""
        return {iid: a for n, a in self._active.items()
                if n != name and a.resolved.fault.action == action for iid in a.hit}

    async def _unpause(self, name: str, instances: list[str]) -> None:
        # An instance another pause still holds stays paused until that one ends.
        held = self._held_by_others(name, "pause")
        await self._each([i for i in instances if i not in held], self.actions.pause, False)

    async def _set_back(self, name: str, action: str, instances: list[str]) -> None:
        """`instances` back to what the latest other `action` (skew, limit or hog) in force
        on each sets, or to none: overlapping ones stack and the latest wins, so one that
        ends while a later one holds the instance changes nothing."""
        held = self._held_by_others(name, action)
        order = list(self._active)
        mine = order.index(name) if name in order else len(order)
        now = trio.current_time()
        for iid in instances:
            other = held.get(iid)
            if other is not None and order.index(other.name) > mine:
                continue
            setting = (_UNSET[action] if other is None
                       else _setting(other.resolved.fault, now - other.at))
            await getattr(self.actions, action)(iid, *setting, back=True)

    def _cut_by_others(self, name: str) -> set[Pair]:
        return {p for n, a in self._active.items() if n != name
                and a.resolved.fault.action in ("partition", "isolate")
                for p in a.resolved.directions}  # fmt: skip

    async def _uncut(self, name: str) -> None:
        # A direction another fault still cuts stays cut.
        left = self._active[name].resolved.directions - self._cut_by_others(name)
        if left:
            await self.actions.cut(frozenset(left), False, f"{name} undone")

    async def _heal(self, name: str) -> None:
        cuts = [n for n, a in self._active.items()
                if a.resolved.fault.action in ("partition", "isolate")]  # fmt: skip
        pairs = frozenset(p for n in cuts for p in self._active[n].resolved.directions)
        for n in cuts:
            del self._active[n]
        if pairs:
            await self.actions.cut(pairs, False, name)

    async def _unshape(self, name: str) -> None:
        mine = self._active[name].resolved.directions
        back: dict[Pair, dict[str, Any] | None] = dict.fromkeys(mine)
        for n, a in self._active.items():  # the latest other override of a direction wins
            if n != name and a.resolved.fault.action == "shape":
                for p in mine & a.resolved.directions:
                    back[p] = a.resolved.fault.args["shape"]
        await self.actions.override(back, f"{name} undone")

    def _failed(self, name: str, fault: Fault | None, reason: str, fail: bool = True,
                late: bool = False) -> None:
        """Record (and, `fail`, fail the run for) a fault that could not be played; `late`:
        because the run was ending or its condition could no longer be met, not because
        the harness or the machine could not play it."""
        text = f"{name} could not be played: {reason}"
        self._write(name, "failed", {"reason": text, **({"late": True} if late else {}),
                                     **(fault.to_data() if fault else {})})
        _log.error("fault failed", fault=name, reason=reason)
        if fail:
            self._fail(text)

    def _write(self, name: str, step: str, data: dict[str, Any],
               begun: float | None = None) -> None:
        now = self.at_s()
        entry = {"fault": name, "step": step, "at_s": round(now, 3), **data}
        if begun is not None:  # the action's own span: the record is written once it is done
            entry["took_s"] = round(now - begun, 3)
        if name in self._asked_by:
            entry["asked_by"] = self._asked_by[name]
        self._log.write(entry)
        self._log.flush()
        event = {**entry, "kind": "fault"}  # a partition's own `kind` must not take its place
        if "kind" in entry:
            event["partition_kind"] = entry["kind"]
        self._record(event)
