"""A cluster:k8s run through the Kubernetes API: create the run's objects, follow its pods
into the same outcome logic as local runs (`InstanceState`: exit status plus the events the
instance signalled), at the run's timeout have the sync service end the instances still
running (their agents then pack their outputs), collect each instance's logs and the sync
service's events into the local run directory, and delete everything by the run's labels
however the run ends. The run directory then holds run.json and the report, as a local
run's does."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from harness._errors import EnvironmentProblem, HarnessError
from harness._liveness import check_proc, identity
from harness._outcome import InstanceState, still_running_at_timeout
from harness._progress import Progress, summary_table
from harness._runid import new_run_id
from harness._stderr import last_words
from harness.observe._runrecord import write_run
from harness.plans import RunSpec
from harness.runners._registry import CLUSTER_K8S, cluster_clean_command
from harness.runners.k8s import _labels as L
from harness.runners.k8s._options import K8sOptions
from harness.runners.k8s._outputs import unpack
from harness.runners.k8s._record import Outcome, judge, run_record
from harness.runners.k8s._render import RenderedRun, render_run
from harness.runners.k8s.syncd import (
    TIMEOUT_COMMAND,
    ended_command,
    exit_fails,
    interrupt_command,
)
from harness.sync import EventType
from harness.sync._protocol import FAILING_EVENTS

POLL_S = 2.0  # one list of the run's pods per this: the API load of a run (docs/k8s.md)
KINDS = ("pods", "services", "configmaps", "secrets")  # what a run creates
CLEAN_KINDS = (*KINDS, "deployments")
"""What `harness clean` deletes: a run rendered before the sync service was a bare Pod had
it as a Deployment."""
START_WITHIN_S = 600.0
"""How long after their creation the runner waits for every instance's pod to start
(scheduling, image pulls): the run's timeout counts from when all have, as a local run's
counts from when every instance has started. A pod not started by then fails its instance,
and the timeout counts from then for the others."""
TIMEOUT_END_S = 30.0
"""How long the runner waits, from the run's timeout, for the pods still running then to
end once it told the sync service (`TIMEOUT_COMMAND`): each agent ends its instance
(SIGTERM, SIGKILL `syncd.STOP_GRACE_S` = 3 s later), packs its outputs into its log (up to
8 MiB of text) and exits, the kubelet reports it, a list (every `POLL_S`) sees it: ~6 s on a
quiet node. 30 s, what Kubernetes gives a deleted pod's containers to end by default
(`terminationGracePeriodSeconds`), leaves room for a loaded one; telling the service (an
exec in its container) counts in it. A pod not ended by then is collected as it is, and
named (`timed_out`)."""
TELL_S = 30.0
"""How long telling the sync service which instances ended without their agent saying so
may take (`tell_ended`: an exec in its container)."""
TELL_TRIES = 3
"""How many lists of the pods in a row a failed `tell_ended` is tried again on (the sync
container may not run yet), before the others are left to wait for the run's timeout."""
TELL_CHUNK = 200
"""Instances told in one exec at most: its command is one argument, sent in a URL."""


class ClusterError(HarnessError):
    """The cluster refused or failed the run midway (its objects are deleted)."""

    exit_code = 1  # as run.json's "error" outcome says


class ClusterApi(Protocol):
    """What a run needs of the API (kr8s below; a fake in the tests)."""

    async def ready(self) -> None:
        """EnvironmentProblem, in one line, if the cluster cannot be used (no kubeconfig,
        an API server that does not answer); before a run writes or creates anything."""
        ...

    async def create(self, obj: dict[str, Any]) -> None:
        """Create one object."""
        ...

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods matching `selector`, as the API returns them (v1 Pod)."""
        ...

    async def logs(self, namespace: str, pod: str, container: str) -> str | None:
        """A container's log; None if its pod is gone (evicted, deleted by hand)."""
        ...

    async def exec(self, namespace: str, pod: str, container: str,
                   command: Sequence[str]) -> None:
        """Run `command` in a running container; an error if it cannot or it fails."""
        ...

    async def delete(self, namespace: str, kinds: Sequence[str], selector: str) -> int:
        """Delete every object of `kinds` matching `selector`; how many there were."""
        ...


def terminated(pod: dict[str, Any], container: str) -> dict[str, Any] | None:
    """One container's `state.terminated` (exitCode, startedAt, finishedAt) once it has
    terminated (None while it has not)."""
    for status in pod.get("status", {}).get("containerStatuses") or ():
        if status.get("name") == container:
            done = (status.get("state") or {}).get("terminated")
            return None if done is None else dict(done)
    return None


def container_exit(pod: dict[str, Any], container: str) -> int | None:
    """One container's exit code once it has terminated (None while it has not)."""
    done = terminated(pod, container)
    return None if done is None else int(done.get("exitCode", 1))


def api_time(value: Any) -> float | None:
    """An API timestamp ("2026-01-01T00:00:09Z") in Unix seconds; None if there is none."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


CANNOT_START = ("ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError",
                "CreateContainerError")
"""A container's `waiting` reasons the kubelet does not get over by retrying: its pod
would wait for the run's timeout."""


def cannot_start(pod: dict[str, Any]) -> str | None:
    """Why one of the pod's containers will never start (the kubelet's reason and message),
    or None."""
    for status in pod.get("status", {}).get("containerStatuses") or ():
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in CANNOT_START:
            message = " ".join(str(waiting.get("message") or "").split())
            return (f"its pod's {status.get('name')} container cannot start: "
                    f"{waiting['reason']}" + (f" ({message})" if message else ""))
    return None


def pod_exit(pod: dict[str, Any], container: str = "instance") -> int | None:
    """The container's exit code once it has terminated (None while it has not)."""
    code = container_exit(pod, container)
    if code is not None:
        return code
    if pod.get("status", {}).get("phase") == "Failed":  # e.g. evicted before it ran
        return 1
    return None


async def follow(api: ClusterApi, spec: RunSpec, run: RenderedRun, run_dir: Path,
                 *, timeout_s: float, poll_s: float = POLL_S, end_s: float = TIMEOUT_END_S,
                 start_within_s: float = START_WITHIN_S,
                 states: dict[str, InstanceState] | None = None,
                 progress: Progress | None = None) -> list[InstanceState]:
    """Create the run, wait for every instance to end (or the timeout, counted from when
    every instance's pod has started: then have the sync service end those still running,
    and wait `end_s` more for their pods), collect, delete; each instance's state in
    `states` (new ones if not given). A pod not started `start_within_s` after the run's
    creation fails its instance, and the timeout counts from then for the others. Each
    instance the runner fails itself (its pod cannot start, did not start in time, was
    deleted, or its shaper failed), and each whose pod ended (its agent may have died with
    it: evicted, killed for memory), is told to the sync service (`tell_ended`; one whose
    agent said it ended is left as it is): what waits on it fails, and fail-fast stops the
    others, as when an instance fails locally.
    `progress` is kept at each list of the pods: started (a container ran), and ended with
    exit code 0 or another (the verdicts come once the sync service's events are
    collected).

    The delete runs whatever happens here (an error, a cancellation, Ctrl-C)."""
    if states is None:
        states = {i.id: InstanceState(i) for i in spec.instances}
    by_pod = {L.pod_name(run.run_id, i.global_seq): i.id for i in spec.instances}
    selector = L.run_selector(run.run_id)
    seen: set[str] = set()  # the pods listed once: one not listed again is gone
    late: dict[str, str] = {}  # the pods still running at the end: why their log is partial
    collected = False
    try:
        for obj in run.objects:
            await api.create(obj)
        created, deadline = time.monotonic(), math.inf
        told: float | None = None  # when the run's timeout was told to the sync service
        told_ended: set[str] = set()  # those ended here that the sync service was told of
        tries = 0  # failed tells in a row
        end_by, why_not = math.inf, None
        while True:
            started: set[str] = set()
            pods = await api.pods(run.namespace, selector)
            listed = {p["metadata"]["name"] for p in pods}
            for name in seen - listed:
                if states[by_pod[name]].status is None:  # it would wait for the timeout
                    states[by_pod[name]].stopped = "its pod was deleted before it ended"
                    states[by_pod[name]].status = -9
            seen |= listed & by_pod.keys()
            for pod in pods:
                iid = by_pod.get(pod["metadata"]["name"])
                code = pod_exit(pod)
                if iid is not None and pod.get("status", {}).get("phase") != "Pending":
                    started.add(iid)
                if iid is None or states[iid].status is not None:
                    continue
                states[iid].ip = pod.get("status", {}).get("podIP") or states[iid].ip
                if code is not None:
                    _exited(states[iid], pod, code)
                elif container_exit(pod, "shaper") not in (None, 0):
                    # it ends only after the instance: its network is gone, do not wait on
                    states[iid].stopped = (f"its pod's shaper failed (exit code "
                                           f"{container_exit(pod, 'shaper')}; shaper.log)")
                    states[iid].status = -9
                elif (why := cannot_start(pod)) is not None:  # e.g. no image, pull Never
                    states[iid].stopped = why
                    states[iid].status = -9
            if progress is not None:
                ended = [s.status for s in states.values() if s.status is not None]
                progress.started = max(progress.started, len(started))
                progress.passed = ended.count(0)
                progress.failed = len(ended) - progress.passed
                progress.update()
            if all(s.status is not None for s in states.values()):
                break
            if deadline == math.inf:  # the timeout counts once every pod has started
                unstarted = [i for i, s in states.items()
                             if s.status is None and i not in started]
                if unstarted and time.monotonic() > created + start_within_s:
                    pod_of = {by_pod[name]: p for p in pods
                              if (name := p["metadata"]["name"]) in by_pod}
                    for iid in unstarted:
                        states[iid].stopped = (f"its pod did not start within "
                                               f"{start_within_s:g} s of its creation"
                                               f"{pending_why(pod_of.get(iid))}")
                        states[iid].status = -9
                    unstarted = []
                if not unstarted:
                    deadline = time.monotonic() + timeout_s
            fresh = {i: s.stopped or f"its pod ended (exit code {s.status})"
                     for i, s in states.items() if s.status is not None and i not in told_ended}
            if fresh and tries < TELL_TRIES and any(s.status is None for s in states.values()):
                unheard = await tell_ended(api, run, fresh)
                if unheard is None:
                    told_ended |= fresh.keys()
                    tries = 0
                else:
                    tries += 1
                    if tries == TELL_TRIES and progress is not None:
                        progress.note(f"the sync service could not be told that "
                                      f"{', '.join(sorted(fresh))} ended ({unheard}): what "
                                      "waits on them waits for the run's timeout")
            if told is None and time.monotonic() > deadline:
                told = time.monotonic()
                why_not = await tell_timeout(api, run, end_s)
                end_by = told + (end_s if why_not is None else 0)
            if told is not None and time.monotonic() >= end_by:
                late = timed_out(states, by_pod, timeout_s, end_s, why_not, progress)
                break
            await asyncio.sleep(poll_s)
        collected = True
        await _collect(api, run, by_pod, states, run_dir, late)
    except asyncio.CancelledError:
        # Ctrl-C: the instances still running are ended through their agents, which pack
        # their outputs, then what the pods have logged and the sync service's events are
        # kept before the delete, as a local run keeps what its instances wrote (a second
        # Ctrl-C gives that up)
        if not collected:
            # Python before 3.11.3 takes a timeout's expiry in a task still counted as
            # cancelling for that cancellation (asyncio.timeout raises CancelledError)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await _end_interrupted(api, run, selector, by_pod, states, end_s, poll_s,
                                   progress)
            await _collect(api, run, by_pod, states, run_dir, interrupted(states, by_pod))
        raise
    finally:
        try:
            await asyncio.shield(api.delete(run.namespace, KINDS, selector))
        except Exception as e:  # the API gone: say what is left on the cluster, and how
            why = _one_line(e)
            raise ClusterError(
                f"{CLUSTER_K8S}: the run's objects could not be deleted ({why}); once the "
                f"cluster answers: {cluster_clean_command(run.run_id, run.namespace)}"
            ) from None
    return list(states.values())


def _one_line(error: BaseException) -> str:
    """What the API or its client raised, in one line."""
    return " ".join(f"{type(error).__name__}: {error}".split())


def _exited(st: InstanceState, pod: dict[str, Any], code: int) -> None:
    """The instance's pod says its process exited with `code`."""
    st.pid = 0  # started: it has exited
    st.status = code
    done = terminated(pod, "instance") or {}
    st.started = api_time(done.get("startedAt"))
    st.ended = api_time(done.get("finishedAt"))


async def _end_interrupted(api: ClusterApi, run: RenderedRun, selector: str,
                           by_pod: dict[str, str], states: dict[str, InstanceState],
                           end_s: float, poll_s: float, progress: Progress | None) -> None:
    """At a Ctrl-C, have the sync service end the instances still running through their
    agents (`syncd.interrupt_command`), which pack their outputs into their logs, and wait
    for their pods to end, `end_s` at most in all (a pod not started is not waited for:
    it has nothing to pack)."""
    end_by = time.monotonic() + end_s
    why_not: str | None = None
    told = False
    while time.monotonic() < end_by:
        try:
            pods = await api.pods(run.namespace, selector)
        except Exception as e:  # the API gone: collect what can be, then delete
            why_not = _one_line(e)
            break
        running = []
        for pod in pods:
            iid = by_pod.get(pod["metadata"]["name"])
            if iid is None or states[iid].status is not None:
                continue
            if (code := pod_exit(pod)) is not None:
                _exited(states[iid], pod, code)
            elif pod.get("status", {}).get("phase") != "Pending":
                running.append(iid)
        if not running:
            return
        if not told:
            if progress is not None:
                progress.note("interrupted: ending the instances still running through "
                              "their agents, to keep their output files (Ctrl-C again gives "
                              "them up)")
            why_not = await _in_sync(api, run, interrupt_command(), end_by - time.monotonic())
            if why_not is not None:
                break
            told = True
        await asyncio.sleep(poll_s)
    if progress is not None:
        progress.note("interrupted: " + (f"their pods could not be ended ({why_not})"
                                          if why_not else f"not all ended within {end_s:g} s")
                      + ": those still running are deleted without their output files")


async def tell_timeout(api: ClusterApi, run: RenderedRun, within_s: float) -> str | None:
    """Run `TIMEOUT_COMMAND` in the run's sync container: the service has every instance
    still running ended through its agent (`syncd.stop_at_timeout`). None once done, else
    why not, in one line; within `within_s` whatever the API does."""
    return await _in_sync(api, run, TIMEOUT_COMMAND, within_s)


async def tell_ended(api: ClusterApi, run: RenderedRun, ended: dict[str, str],
                     within_s: float = TELL_S) -> str | None:
    """Tell the run's sync service that these instances ended (instance: why): each that
    its agent did not say ended ends there as if it had (`syncd.ended_command`). None once
    done, else why not, in one line; each exec within `within_s` whatever the API does."""
    names = list(ended)
    for at in range(0, len(names), TELL_CHUNK):
        chunk = {i: ended[i] for i in names[at : at + TELL_CHUNK]}
        if (why_not := await _in_sync(api, run, ended_command(chunk), within_s)) is not None:
            return why_not
    return None


async def _in_sync(api: ClusterApi, run: RenderedRun, command: Sequence[str],
                   within_s: float) -> str | None:
    """Run `command` in the run's sync container: None once done, else why not."""
    sync = f"{L.run_selector(run.run_id)},{L.COMPONENT}=sync"
    try:
        async with asyncio.timeout(within_s):
            pods = await api.pods(run.namespace, sync)
            if not pods:
                return "the sync service's pod is gone"
            for pod in pods:  # one
                await api.exec(run.namespace, pod["metadata"]["name"], "sync", command)
    except TimeoutError:
        return f"the sync service's pod did not answer within {within_s:g} s"
    except Exception as e:  # e.g. forbidden: exec is a permission of its own (pods/exec)
        return _one_line(e)
    return None


def pending_why(pod: dict[str, Any] | None) -> str:
    """What keeps a Pending pod from starting, as ": REASON (MESSAGE)" (not scheduled, or a
    container waiting), or "" if the pod says nothing (or is not listed)."""
    if pod is None:
        return ": its pod is not there"
    status = pod.get("status", {})
    said = [(c.get("reason"), c.get("message")) for c in status.get("conditions") or ()
            if c.get("type") == "PodScheduled" and c.get("status") == "False"]
    said += [(w.get("reason"), w.get("message"))
             for c in status.get("containerStatuses") or ()
             if (w := (c.get("state") or {}).get("waiting"))]
    for reason, message in said:
        if reason:
            text = " ".join(str(message or "").split())
            return f": {reason}" + (f" ({text})" if text else "")
    return ""


def _end_running(states: dict[str, InstanceState], by_pod: dict[str, str], stopped: str,
                 lacks: str, status: int) -> dict[str, str]:
    """Fail the instances not over yet for `stopped`, with `status`; each of their pods,
    with the line its log is to end with (`lacks`: what it lacks)."""
    late = {}
    for pod, iid in by_pod.items():
        st = states[iid]
        if st.status is None:
            late[pod] = lacks
            st.stopped, st.status = stopped, status
    return late


def interrupted(states: dict[str, InstanceState], by_pod: dict[str, str]) -> dict[str, str]:
    """Fail the instances not over when the run is interrupted, as locally; each of their
    pods, with what its log lacks."""
    return _end_running(states, by_pod, "interrupted", "interrupted: its log only as far as "
                        "it went, and no output files (its pod was deleted running)",
                        -signal.SIGINT)


def timed_out(states: dict[str, InstanceState], by_pod: dict[str, str], timeout_s: float,
              end_s: float, why_not: str | None, progress: Progress | None) -> dict[str, str]:
    """Fail the instances whose pods still run once the time after the run's timeout is
    over (`why_not`: why their agents were never told to end them), as "still running at
    the run's timeout", saying that their outputs are missing; the progress names their
    pods. Each such pod, with what its log lacks."""
    told = (f"its pod did not end within {end_s:g} s after it" if why_not is None else
            f"it could not be ended through its agent ({why_not})")
    why = f"{told}: no output files, and its log only as far as it went"
    late = _end_running(states, by_pod, f"{still_running_at_timeout(timeout_s)}; {why}",
                        f"still running at the run's timeout: {why}", -9)
    if late and progress is not None:
        names = sorted(late)
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        why = (f"not ended {end_s:g} s after it" if why_not is None else
               f"not ended through their agents: {why_not}")
        progress.note(f"still running at the run's timeout ({why}): {', '.join(names[:5])}"
                      f"{more}")
    return late


async def _collect(api: ClusterApi, run: RenderedRun, by_pod: dict[str, str],
                   states: dict[str, InstanceState], run_dir: Path,
                   late: dict[str, str]) -> None:
    """Each instance's log and output files (and its shaper's log), and the sync service's
    events (which the instances' outcomes take in, as the local supervisor's do); the log
    of a pod in `late` (still running) says what it lacks."""
    shaped = {p["metadata"]["name"] for p in run.instance_pods()
              if any(c["name"] == "shaper" for c in p["spec"]["containers"])}
    logged = []  # the instances whose log was collected
    for pod, iid in by_pod.items():
        out = run_dir / iid
        out.mkdir(parents=True, exist_ok=True)
        gone = f"# harness: no log: the pod {pod} is gone\n"
        log = await api.logs(run.namespace, pod, "instance")
        if log is not None:
            logged.append(iid)
        text = gone if log is None else unpack(log, out)
        if pod in late:
            text += f"# harness: {late[pod]}\n"
        (out / "stdout.log").write_text(text)
        if pod in shaped:
            shaper = await api.logs(run.namespace, pod, "shaper")
            (out / "shaper.log").write_text(gone if shaper is None else shaper)
    sync = f"{L.run_selector(run.run_id)},{L.COMPONENT}=sync"
    for sync_pod in await api.pods(run.namespace, sync):
        text = await api.logs(run.namespace, sync_pod["metadata"]["name"], "sync") or ""
        # only the events: the kubelet merges the container's stderr into its log
        lines = [line for line in text.splitlines() if line.startswith("{")]
        (run_dir / "events.jsonl").write_text("".join(f"{line}\n" for line in lines))
        faults = []
        exits: dict[str, Any] = {}  # each instance's last process's own exit status
        for line in lines:
            event = orjson.loads(line)
            st = states.get(event.get("instance") or "")
            if event.get("kind") == "event" and st is not None:
                st.record(event)
            elif event.get("kind") == "instance" and st is not None:
                exits[st.spec.id] = event.get("exit_code")  # None: started (again)
            elif event.get("kind") in ("fault", "run-failed"):
                faults.append(line)
                fault_outcome(event, states)
            elif event.get("kind") == "phase" and event.get("name") == "stopping":
                (stopped_at_timeout if event.get("timeout") or event.get("interrupted")
                 else stopped_after_failure)(event, states)
        (run_dir / "faults.jsonl").write_text("".join(f"{line}\n" for line in faults))
        own_exits(states, exits)
    for iid in logged:
        quote_log(states[iid], run_dir / iid / "stdout.log")


def quote_log(st: InstanceState, log: Path) -> None:
    """Where its exit alone fails it, its reason quotes the end of its log, as a local
    one's quotes its stderr.log (`last_words`): the kubelet keeps a container's stdout and
    stderr in one log, which `stdout.log` holds without the packed output files."""
    if st.exit_says_why:
        st.last_words = last_words(log)


def own_exits(states: dict[str, InstanceState], exits: dict[str, Any]) -> None:
    """Each instance's exit status as its process's own (`exits`, as its agent told the
    sync service), not its pod's: the agent exits 1 for any failure, so one that exited 13
    or was killed by a signal read "exit code 1". Only where the pod's says the agent
    failed by its instance (1): one the runner failed itself, or whose agent was killed,
    keeps what it has."""
    for iid, code in exits.items():
        st = states[iid]
        if st.status == 1 and isinstance(code, int) and code != 0:
            st.status = code


def stopped_after_failure(entry: dict[str, Any], states: dict[str, InstanceState]) -> None:
    """The instances the sync service ended after the first failure (fail-fast) fail for
    that reason, as locally; one that passed before its agent heard it passed."""
    for iid in entry.get("instances", ()):
        st = states.get(iid)
        if st is not None and not st.verdict()[0]:
            st.stopped = st.stopped or str(entry.get("reason"))


def stopped_at_timeout(entry: dict[str, Any], states: dict[str, InstanceState]) -> None:
    """The instances the sync service ended at the run's timeout (or at a Ctrl-C) fail for
    it, with where each waited, as locally (one that recorded success too: it had not
    ended)."""
    waiting = entry.get("waiting") or {}
    for iid in entry.get("instances", ()):
        st = states.get(iid)
        if st is not None:
            at = waiting.get(iid)
            st.stopped = st.stopped or f"{entry.get('reason')}{f', {at}' if at else ''}"


def failure_order(run_dir: Path) -> list[str]:
    """The order in which the run's reason is to look for the instance it names first, from
    the collected events.jsonl: the one the sync service named as it ended the others
    (the failure that set off fail-fast, or its pick at the run's timeout), then each in the
    order the service saw it fail, as locally the first that failed in time: a failure or
    crash it recorded, or its process exited without passing, not by a fault (`exit_fails`,
    the service's own test)."""
    events = run_dir / "events.jsonl"
    lines = events.read_text().splitlines() if events.exists() else []
    named: list[str] = []
    order: list[str] = []
    succeeded: set[str] = set()
    for event in map(orjson.loads, lines):
        kind, who = event.get("kind"), str(event.get("instance") or "")
        if (kind == "phase" and event.get("name") == "stopping" and not named
                and not event.get("interrupted")):
            named.append(str(event.get("first")))
        elif kind == "event" and event.get("type") == EventType.SUCCESS:
            succeeded.add(who)
        elif ((kind == "event" and event.get("type") in FAILING_EVENTS)
              or (kind == "instance" and event.get("status") == "exited"
                  and exit_fails(event.get("exit_code"), event.get("by"), who in succeeded))):
            order.append(who)
    return named + order


def fault_outcome(entry: dict[str, Any], states: dict[str, InstanceState]) -> None:
    """What a played process fault means for its instances' outcomes, as locally: ended on
    purpose (judged by what the fault expects), or started again (must pass anew)."""
    action = entry.get("action")
    if action not in ("kill", "stop", "restart") or entry.get("step") not in ("applied",
                                                                               "undone"):
        return
    expect = entry.get("expect") or (
        "may_die" if action in ("kill", "stop") and "duration" not in entry else "recover")
    hit = [i for i in entry.get("chosen", ()) if i not in entry.get("missed", ())]
    for iid in hit if entry["step"] == "applied" else ():
        st = states[iid]
        st.expecting(expect, ends=True)
        if action == "restart":
            _started_again(st)
        else:
            st.ended_by = f"{'killed' if action == 'kill' else 'stopped'} by {entry['fault']}"
    if entry["step"] == "undone":  # a kill or stop with a duration: started again
        for st in states.values():
            if st.ended_by is not None and entry["fault"] in st.ended_by:
                _started_again(st)


def _started_again(st: InstanceState) -> None:
    """`restarted()`, keeping the exit status: the pod's is the last process's already."""
    status = st.status
    st.restarted(None)
    st.status, st.starting = status, False  # its pod's process, not one started here


class Kr8sApi:
    """`ClusterApi` on kr8s (asyncio), from a kubeconfig and context."""

    def __init__(self, options: K8sOptions) -> None:
        self.options = options
        self._api: Any = None

    async def _client(self) -> Any:
        if self._api is None:
            try:
                import httpx
                import kr8s.asyncio
            except ImportError:
                raise EnvironmentProblem("cluster:k8s needs kr8s: pip install "
                                         "'p2p-harness[k8s]'") from None
            kubeconfig = str(self.options.kubeconfig) if self.options.kubeconfig else None
            try:  # kr8s asks the API server its version before it returns
                self._api = await kr8s.asyncio.api(kubeconfig=kubeconfig,
                                                   context=self.options.context)
            except (httpx.TransportError, kr8s.APITimeoutError) as e:
                raise EnvironmentProblem(f"cluster:k8s: the kubeconfig's API server does "
                                         f"not answer ({type(e).__name__}: {e})") from None
            except Exception as e:  # kr8s says ValueError, OSError, its own errors
                why = " ".join(str(e).split())  # a YAML error draws its place over lines
                raise EnvironmentProblem(f"cluster:k8s: no usable kubeconfig ({why}); give "
                                         "one with --k8s kubeconfig=PATH") from None
        return self._api

    async def ready(self) -> None:
        """The kubeconfig loads and its API server answers."""
        await self._client()

    async def create(self, obj: dict[str, Any]) -> None:
        """Create one object."""
        from kr8s.asyncio.objects import object_from_spec

        await object_from_spec(obj, api=await self._client()).create()

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods matching `selector`."""
        api = await self._client()
        return [p.raw async for p in api.get("pods", namespace=namespace,
                                             label_selector=selector)]

    async def logs(self, namespace: str, pod: str, container: str) -> str | None:
        """A container's log; None if its pod is gone."""
        import kr8s
        from kr8s.asyncio.objects import Pod

        try:
            found = await Pod.get(pod, namespace=namespace, api=await self._client())
        except kr8s.NotFoundError:
            return None
        return "".join([line + "\n" async for line in found.logs(container=container)])

    async def exec(self, namespace: str, pod: str, container: str,
                   command: Sequence[str]) -> None:
        """Run `command` in a running container (kr8s raises if it exits non-zero)."""
        from kr8s.asyncio.objects import Pod

        found = await Pod.get(pod, namespace=namespace, api=await self._client())
        await found.exec(list(command), container=container)

    async def delete(self, namespace: str, kinds: Sequence[str], selector: str) -> int:
        """Delete every object of `kinds` matching `selector` (one gone meanwhile, e.g. a
        pod deleted by hand, is one fewer to delete, not the end of it)."""
        import kr8s

        api = await self._client()
        count = 0
        for kind in kinds:
            async for obj in api.get(kind, namespace=namespace, label_selector=selector):
                with contextlib.suppress(kr8s.NotFoundError):
                    await obj.delete(propagation_policy="Foreground")
                    count += 1
        return count


def run_on_cluster(spec: RunSpec, options: K8sOptions, outputs: Path, *, quiet: bool,
                   api: ClusterApi | None = None, json: bool = False,
                   fail_fast: bool = True) -> int:
    """Run `spec` on the cluster (through kr8s, or `api`) into `outputs/<run id>`, with its
    run.json and report as a local run's; 0 if every instance passed. The summary table at
    the end, or with `json` run.json (`harness run --json`). With `fail_fast` the first
    instance that fails ends the others (the sync service does it, `syncd`)."""
    from harness._supervisor import finish_run

    check_proc()  # run.json names this process as the run's owner
    client = api or Kr8sApi(options)
    run = render_run(spec, options, new_run_id(), secrets.token_bytes(32), fail_fast=fail_fast)
    run_dir = outputs.resolve() / run.run_id
    states = {i.id: InstanceState(i) for i in spec.instances}
    started = time.time()

    async def run_it() -> None:
        await client.ready()  # a cluster that cannot be used leaves no run directory
        run_dir.mkdir(parents=True, exist_ok=True)
        # "running", naming this process: a run killed here is found aborted (harness
        # show, clean) with where its objects are, and followers have a record to follow
        write_run(run_dir, dataclasses.replace(
            run_record(spec, run, options, list(states.values()), started=started, ended=None,
                       outcome=Outcome("running", 0, None)),
            exit_code=None, supervisor=identity()))
        if not quiet:
            print(f"running {spec.plan.name}:{spec.case.name} with {spec.total} instances "
                  f"on cluster:k8s (namespace {run.namespace}, run {run.run_id})",
                  file=sys.stderr)
        progress = None if quiet else Progress(spec.total)
        await follow(client, spec, run, run_dir, timeout_s=spec.timeout_s, states=states,
                     progress=progress)
        if progress is not None:
            progress.finish()

    def write(outcome: Outcome) -> None:
        record = run_record(spec, run, options, list(states.values()), started=started,
                            ended=time.time(), outcome=outcome)
        write_run(run_dir, record)

    try:
        asyncio.run(run_it())
    except BaseException as e:  # run.json says how it ended, never nothing (as locally)
        if not run_dir.is_dir():
            raise  # it never started
        reason = (str(e) if isinstance(e, HarnessError) else
                  f"{CLUSTER_K8S}: {_one_line(e)}")
        with contextlib.suppress(OSError):  # what failed may be the disk
            if isinstance(e, KeyboardInterrupt):
                write(Outcome("interrupted", 130, "interrupted (what its pods logged is "
                                                  "kept, with the output files of those "
                                                  "ended through their agents; its objects "
                                                  "were deleted)"))
            else:
                write(Outcome("error", 1, reason))
        if isinstance(e, HarnessError | OSError) or not isinstance(e, Exception):
            raise
        # what the API or its client says (a namespace that does not exist, a forbidden
        # create): one line, as run.json has it, not a traceback
        raise ClusterError(reason) from None
    faults = run_dir / "faults.jsonl"
    lines = faults.read_text().splitlines() if faults.exists() else []
    # a fault that could not be played fails the run: a test whose fault never happened
    # proves nothing (harness._conductor)
    unplayed = [e["reason"] for e in map(orjson.loads, lines) if e["kind"] == "run-failed"]
    outcome = judge(list(states.values()), unplayed, failure_order(run_dir))
    write(outcome)
    finish_run(run_dir)
    passed = sum(1 for s in states.values() if s.verdict()[0])
    with contextlib.suppress(BrokenPipeError):  # `| true`: the exit code tells the verdict still
        if json:
            sys.stdout.buffer.write((run_dir / "run.json").read_bytes() + b"\n")
            return outcome.exit_code
        print(f"run {run.run_id}: {outcome.outcome.upper()} ({passed} of {len(states)} passed)"
              + (f"\n{outcome.reason}" if outcome.reason else "")
              + f"\n{summary_table(list(states.values()))}\noutputs: {run_dir}"
              + (f"\nreport:  {run_dir / 'report.html'}" if (run_dir / "report.html").exists()
                 else ""))
    return outcome.exit_code


def clean_run(options: K8sOptions, run_id: str) -> int:
    """Delete one run's objects (`harness clean --runner cluster:k8s --run ID`)."""
    return asyncio.run(Kr8sApi(options).delete(options.namespace, CLEAN_KINDS,
                                               L.run_selector(run_id)))
