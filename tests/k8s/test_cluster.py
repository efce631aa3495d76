"""The API path against the API's documented objects (a fake cluster answering with v1 Pod
objects as the API documents them), and against a real cluster when a kubeconfig is given."""

from __future__ import annotations

import asyncio
import base64
import io
import math
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness._errors import UsageError
from harness._outcome import InstanceState
from harness._progress import Progress
from harness.observe import load_run
from harness.plans import RunSpec, build_run_spec
from harness.runners.k8s import _labels as L
from harness.runners.k8s import load_options, render_run
from harness.runners.k8s._cluster import (
    CLEAN_KINDS,
    KINDS,
    TELL_TRIES,
    ClusterError,
    follow,
    pod_exit,
    run_on_cluster,
)
from harness.runners.k8s._outputs import MARKER, MAX_BYTES, pack, unpack
from harness.runners.k8s.syncd import TIMEOUT_COMMAND, ended_command, interrupt_command

from ..conftest import only_run_dir

RUN_ID = "20260101-000000-abcdef"


def pod_status(name: str, labels: dict[str, str], exit_code: int | None) -> dict[str, Any]:
    """A v1 Pod as `GET /api/v1/namespaces/NS/pods` returns it (the fields we read)."""
    state = ({"running": {"startedAt": "2026-01-01T00:00:01Z"}} if exit_code is None else
             {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0
                             else "Error", "startedAt": "2026-01-01T00:00:01Z",
                             "finishedAt": "2026-01-01T00:00:09Z"}})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "status": {"podIP": f"10.244.0.{10 + len(name) % 100}",
                       "phase": "Running" if exit_code is None else
                       ("Succeeded" if exit_code == 0 else "Failed"),
                       "containerStatuses": [{"name": "instance", "ready": False,
                                              "restartCount": 0, "image": "x",
                                              "imageID": "", "state": state}]}}


class FakeCluster:
    """Holds what was created; pods end after `ends_after` lists with `exit_codes`."""

    def __init__(self, exit_codes: dict[int, int], events: list[dict[str, Any]],
                 ends_after: int = 2, fail_on_list: bool = False) -> None:
        self.objects: list[dict[str, Any]] = []
        self.exit_codes = exit_codes
        self.events = events
        self.lists = 0
        self.ends_after = ends_after
        self.fail_on_list = fail_on_list
        self.deleted: list[tuple[str, tuple[str, ...], str]] = []

    async def ready(self) -> None:
        pass

    async def create(self, obj: dict[str, Any]) -> None:
        self.objects.append(obj)

    def _matching(self, selector: str) -> list[dict[str, Any]]:
        want = dict(s.split("=") for s in selector.split(","))
        return [o for o in self.objects if want.items() <= o["metadata"]["labels"].items()]

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        if self.fail_on_list:
            raise ConnectionError("the API server went away")
        self.lists += 1
        out = []
        for o in self._matching(selector):
            if o["kind"] != "Pod":
                continue
            if o["metadata"]["labels"][L.COMPONENT] == "sync":  # it runs till deleted
                out.append(pod_status(o["metadata"]["name"], o["metadata"]["labels"], None))
                continue
            seq = int(o["metadata"]["name"].rsplit("-", 1)[1])
            code = self.exit_codes[seq] if self.lists > self.ends_after else None
            out.append(pod_status(o["metadata"]["name"], o["metadata"]["labels"], code))
        return out

    async def logs(self, namespace: str, pod: str, container: str) -> str:
        if container == "sync":
            return "".join(orjson.dumps(e).decode() + "\n" for e in self.events)
        return f"log of {pod}\n"

    async def exec(self, namespace: str, pod: str, container: str,
                   command: Sequence[str]) -> None:
        raise RuntimeError(f'pods "{pod}" is forbidden: cannot create resource "pods/exec"')

    async def delete(self, namespace: str, kinds: Sequence[str], selector: str) -> int:
        self.deleted.append((namespace, tuple(kinds), selector))
        gone = self._matching(selector)
        self.objects = [o for o in self.objects if o not in gone]
        return len(gone)


@pytest.fixture
def spec() -> RunSpec:
    return build_run_spec("pingpong", instances=2, runner="cluster:k8s")


def success(iid: str) -> dict[str, Any]:
    return {"kind": "event", "instance": iid, "type": "success"}


def failed(iid: str, error: str) -> dict[str, Any]:
    return {"kind": "event", "instance": iid, "type": "failure", "error": error}


def test_a_run_passes_when_every_pod_exits_0_after_success_and_leaves_nothing(
        spec: RunSpec, tmp_path: Path) -> None:
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = FakeCluster({0: 0, 1: 0}, [success("single/0"), success("single/1")])
    states = asyncio.run(follow(cluster, spec, run, tmp_path, timeout_s=60, poll_s=0))
    assert [s.verdict()[0] for s in states] == [True, True]
    assert cluster.objects == [] and cluster.deleted[0][2] == L.run_selector(RUN_ID)
    assert (tmp_path / "single/0/stdout.log").read_text() == f"log of h-{RUN_ID}-0\n"
    assert orjson.loads((tmp_path / "events.jsonl").read_text().splitlines()[0]) == success(
        "single/0")


class ChattyCluster(FakeCluster):
    """The kubelet's logs as they come: the sync container's stderr among its events, and
    each instance's log ending with its output files as the agent packs them."""

    def __init__(self, outputs: Path, *args: Any) -> None:
        super().__init__(*args)
        self.packed = pack(outputs)

    async def logs(self, namespace: str, pod: str, container: str) -> str:
        text = await super().logs(namespace, pod, container)
        if container == "sync":
            return "Traceback? no: a warning on stderr\n" + text
        # stderr may follow the pack (a warning as the agent's interpreter exits)
        return text + self.packed + "a warning at exit\n" if container == "instance" else text


def test_output_files_come_back_through_the_log_and_stderr_is_no_event(
        spec: RunSpec, tmp_path: Path) -> None:
    files = tmp_path / "in-pod"
    (files / "sub").mkdir(parents=True)
    (files / "log.jsonl").write_text('{"event": "pinged"}\n')
    (files / "sub/metrics.jsonl").write_text("{}\n")
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = ChattyCluster(files, {0: 0, 1: 0}, [success("single/0"), success("single/1")])
    out = tmp_path / "run"
    states = asyncio.run(follow(cluster, spec, run, out, timeout_s=60, poll_s=0))
    assert [s.verdict()[0] for s in states] == [True, True]
    assert (out / "single/1/log.jsonl").read_text() == '{"event": "pinged"}\n'
    assert (out / "single/1/sub/metrics.jsonl").read_text() == "{}\n"
    assert (out / "single/1/stdout.log").read_text() == (f"log of h-{RUN_ID}-1\n"
                                                          "a warning at exit\n")
    assert [orjson.loads(x) for x in (out / "events.jsonl").read_text().splitlines()] == [
        success("single/0"), success("single/1")]


def test_packed_outputs_fit_the_kubelets_log_as_text(tmp_path: Path) -> None:
    """What goes in the log is base64: 4/3 of the tar. A tar under the limit whose text is
    over the kubelet's 10 MiB rotation lost its marker to the rotation."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out/blob").write_bytes(os.urandom(7 << 20))  # incompressible: 9.4 MiB text
    text = pack(tmp_path / "out")
    assert len(text) <= MAX_BYTES and "too large to ship through the log" in text
    assert unpack(f"before\n{text}", tmp_path / "in") == "before\n"  # nothing, no crash
    (tmp_path / "out/blob").write_bytes(os.urandom(1 << 20))
    (tmp_path / "in").mkdir(exist_ok=True)
    unpack(pack(tmp_path / "out"), tmp_path / "in")
    assert (tmp_path / "in/blob").read_bytes() == (tmp_path / "out/blob").read_bytes()


def test_packed_outputs_never_land_outside_the_instance_directory(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    log = f"{MARKER}\n{base64.b64encode(buf.getvalue()).decode()}\n"
    (tmp_path / "inst").mkdir()
    kept = unpack(log, tmp_path / "inst")
    assert not (tmp_path / "escaped").exists()
    assert kept.startswith(log) and "could not be unpacked" in kept
    # a damaged pack (a line lost) is kept in the log with the reason, not a crash
    assert "could not be unpacked" in unpack(log[:-10] + "\n", tmp_path / "inst")


def test_process_faults_are_judged_as_locally_and_an_unplayed_fault_fails_the_run(
        spec: RunSpec, tmp_path: Path) -> None:
    kill = {"kind": "fault", "fault": "fault 0", "step": "applied", "action": "kill",
            "chosen": ["single/1"], "at_s": 1.0}
    # single/1 killed for good exits 1 without success: a kill without duration may die
    events = [success("single/0"), kill]
    code = run_on_cluster(spec, load_options(spec), tmp_path, quiet=True,
                          api=FakeCluster({0: 0, 1: 1}, events))
    run_dir = only_run_dir(tmp_path)
    assert code == 0, (run_dir / "run.json").read_text()
    assert orjson.loads((run_dir / "faults.jsonl").read_text()) == kill
    unplayed = {"kind": "run-failed", "reason": "fault 1 could not be played: no"}
    code = run_on_cluster(spec, load_options(spec), tmp_path / "b", quiet=True,
                          api=FakeCluster({0: 0, 1: 1}, [*events, unplayed]))
    assert code == 1
    # a restart: the instance must record success anew, after it
    restart = {**kill, "action": "restart"}
    assert run_on_cluster(spec, load_options(spec), tmp_path / "d", quiet=True, api=FakeCluster(
        {0: 0, 1: 0}, [success("single/0"), success("single/1"), restart, success("single/1")]
    )) == 0
    assert run_on_cluster(spec, load_options(spec), tmp_path / "e", quiet=True, api=FakeCluster(
        {0: 0, 1: 0}, [success("single/0"), success("single/1"), restart])) == 1
    recover = {**kill, "expect": "recover"}
    code = run_on_cluster(spec, load_options(spec), tmp_path / "c", quiet=True,
                          api=FakeCluster({0: 0, 1: 1}, [success("single/0"), recover]))
    assert code == 1
    # every one killed for good: each "may die", yet nothing was checked (fails locally)
    everyone = {**kill, "chosen": ["single/0", "single/1"]}
    code = run_on_cluster(spec, load_options(spec), tmp_path / "f", quiet=True,
                          api=FakeCluster({0: 137, 1: 137}, [everyone]))
    assert code == 1
    assert load_run(only_run_dir(tmp_path / "f")).reason == (
        "no instance recorded success: faults ended every one (nothing was checked)")


def test_a_cluster_run_writes_run_json_the_report_and_the_history_as_a_local_run(
        spec: RunSpec, tmp_path: Path) -> None:
    kill = {"kind": "fault", "fault": "fault 0", "step": "applied", "action": "kill",
            "chosen": ["single/0"], "at_s": 1.0, "expect": "recover"}
    # single/0 is killed and expected to recover, but its pod exits 1: the run fails
    code = run_on_cluster(spec, load_options(spec, ["namespace=p2p"]), tmp_path, quiet=True,
                          api=FakeCluster({0: 1, 1: 0}, [success("single/1"), kill]))
    assert code == 1
    run_dir = only_run_dir(tmp_path)
    run = load_run(run_dir)
    assert (run.run_id, run.plan, run.case, run.runner) == (run_dir.name, "pingpong", "ping",
                                                           "cluster:k8s")
    assert run.outcome == "failed" and run.exit_code == 1
    assert run.reason and run.reason.startswith("1 of 2 failed; first: single/0: ")
    assert run.started is not None and run.ended is not None and run.ended >= run.started
    assert [(i.id, i.outcome, i.exit_code) for i in run.instances] == [
        ("single/0", "failed", 1), ("single/1", "passed", 0)]
    one = run.instances[1]
    assert one.ip and one.ip.startswith("10.244.0.") and one.duration_s == 8.0
    assert [g.id for g in run.groups] == ["single"] and run.groups[0].count == 2
    assert run.network is not None and run.network["runner"] == "cluster:k8s"
    assert run.network["namespace"] == "p2p"
    assert run.faults == () and run.plan_dir and run.timeout_s == spec.timeout_s
    assert not (run_dir / "k8s.json").exists()
    assert "single/0" in (run_dir / "report.html").read_text()
    assert (run_dir / "summary.json").exists() and (tmp_path / "history.sqlite").exists()
    shown = subprocess.run([sys.executable, "-m", "harness", "show", str(run_dir)],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "runner cluster:k8s" in shown.stdout and "FAILED" in shown.stdout
    assert "single/0" in shown.stdout


def test_a_cluster_run_the_api_fails_records_an_error_in_run_json(
        spec: RunSpec, tmp_path: Path) -> None:
    with pytest.raises(ConnectionError):
        run_on_cluster(spec, load_options(spec), tmp_path, quiet=True,
                       api=FakeCluster({0: 0, 1: 0}, [], fail_on_list=True))
    run = load_run(only_run_dir(tmp_path))
    assert run.outcome == "error" and run.ended is not None
    assert run.reason == "cluster:k8s: ConnectionError: the API server went away"


def test_json_prints_run_json_as_a_local_run_does(
        spec: RunSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_on_cluster(spec, load_options(spec), tmp_path, quiet=True, json=True,
                          api=FakeCluster({0: 0, 1: 0}, [success("single/0"),
                                                         success("single/1")]))
    printed = orjson.loads(capsys.readouterr().out)
    assert code == 0 and printed["outcome"] == "passed"
    assert printed == orjson.loads((only_run_dir(tmp_path) / "run.json").read_bytes())


def test_replaying_a_cluster_run_on_the_cluster_is_refused_before_anything(
        spec: RunSpec, tmp_path: Path) -> None:
    run_on_cluster(spec, load_options(spec), tmp_path, quiet=True,
                   api=FakeCluster({0: 0, 1: 0}, [success("single/0"), success("single/1")]))
    before = sorted(tmp_path.iterdir())
    done = subprocess.run([sys.executable, "-m", "harness", "replay", "latest", "--outputs",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"harness: error: run {before[0].name}: replaying on cluster:k8s is not done yet "
        "(docs/k8s.md): replay it with --runner local:netns"]
    assert sorted(tmp_path.iterdir()) == before  # no new run directory


def test_a_local_supervisor_refuses_a_cluster_run_before_its_run_directory(
        spec: RunSpec, tmp_path: Path) -> None:
    import harness

    with pytest.raises(UsageError, match="not a local supervisor"):
        harness.run(spec, harness.RunOptions(outputs=tmp_path, progress=False))
    assert list(tmp_path.iterdir()) == []  # it left an "error" run there


class RefusingCluster(FakeCluster):
    """An API server that refuses the run's objects (as kr8s raises it: no OSError)."""

    async def create(self, obj: dict[str, Any]) -> None:
        if obj["kind"] == "Pod":
            raise RuntimeError('pods "h-x-0" is forbidden:\n exceeded quota')
        await super().create(obj)


def test_a_run_the_api_refuses_is_one_line_and_leaves_nothing(
        spec: RunSpec, tmp_path: Path) -> None:
    cluster = RefusingCluster({0: 0, 1: 0}, [])
    with pytest.raises(ClusterError) as raised:
        run_on_cluster(spec, load_options(spec), tmp_path, quiet=True, api=cluster)
    reason = 'cluster:k8s: RuntimeError: pods "h-x-0" is forbidden: exceeded quota'
    assert str(raised.value) == reason and raised.value.exit_code == 1
    assert load_run(only_run_dir(tmp_path)).reason == reason
    assert cluster.objects == [] and len(cluster.deleted) == 1


class BrokenShaper(FakeCluster):
    """Pod 1's shaper fails at once while its instance waits (for a network that never
    comes)."""

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = await super().pods(namespace, selector)
        for pod in out:
            if pod["metadata"]["name"].endswith("-1"):
                pod["status"]["containerStatuses"] = [
                    {"name": "instance", "state": {"running": {}}},
                    {"name": "shaper", "state": {"terminated": {"exitCode": 1}}}]
        return out


def test_a_failed_shaper_fails_its_instance_at_once_not_at_the_timeout(
        spec: RunSpec, tmp_path: Path) -> None:
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = BrokenShaper({0: 0, 1: 0}, [success("single/0")], ends_after=3)
    states = asyncio.run(follow(cluster, spec, run, tmp_path, timeout_s=5, poll_s=0.01))
    assert states[0].verdict() == (True, None)
    assert states[1].verdict() == (False, "its pod's shaper failed (exit code 1; shaper.log)")
    assert cluster.objects == []


class NoImage(FakeCluster):
    """Pod 1's image is not on its node and its pull policy is Never."""

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = await super().pods(namespace, selector)
        for pod in out:
            if pod["metadata"]["name"].endswith("-1"):
                pod["status"]["phase"] = "Pending"
                pod["status"]["containerStatuses"] = [{"name": "instance", "state": {
                    "waiting": {"reason": "ErrImageNeverPull", "message": 'Container image '
                                '"h:1" is not present with pull policy of Never'}}}]
        return out


def test_a_pod_that_can_never_start_fails_its_instance_at_once_not_at_the_timeout(
        spec: RunSpec, tmp_path: Path) -> None:
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = NoImage({0: 0, 1: 0}, [success("single/0")], ends_after=3)
    states = asyncio.run(follow(cluster, spec, run, tmp_path, timeout_s=30, poll_s=0.01))
    assert states[0].verdict() == (True, None)
    assert states[1].verdict() == (False, "its pod's instance container cannot start: "
                                   'ErrImageNeverPull (Container image "h:1" is not present '
                                   "with pull policy of Never)")
    assert cluster.objects == []


class NoImageFailFast(NoImage):
    """As NoImage; told that single/1 failed, the sync service logs what the real one
    does (`syncd._take_ended`, fail-fast) and single/0's agent ends it (exit 1)."""

    def __init__(self) -> None:
        super().__init__({0: 1, 1: 1}, [], ends_after=10**6)
        self.execs: list[tuple[str, ...]] = []

    async def exec(self, namespace: str, pod: str, container: str,
                   command: Sequence[str]) -> None:
        self.execs.append(tuple(command))
        if tuple(command) == TIMEOUT_COMMAND:
            self.events.append(timeout_stop("still running at the run's timeout (3s)", {}))
            self.ends_after = self.lists
            return
        self.events += [
            {"kind": "instance", "instance": "single/1", "status": "exited",
             "exit_code": None, "by": None, "why": "its pod's instance container cannot "
             "start: ErrImageNeverPull"},
            {"kind": "phase", "name": "stopping", "reason": "stopped after single/1 failed",
             "first": "single/1", "instances": ["single/0"]}]
        self.ends_after = self.lists


def test_a_pod_that_can_never_start_is_told_to_the_sync_service_and_fail_fast_stops_the_rest(
        tmp_path: Path) -> None:
    """single/0 waited at a barrier for single/1, whose pod can never start, until the
    run's timeout: the sync service never heard that single/1 had failed."""
    spec = build_run_spec("pingpong", instances=2, runner="cluster:k8s", timeout_s=3)
    cluster = NoImageFailFast()
    assert run_on_cluster(spec, load_options(spec), tmp_path, quiet=True, api=cluster) == 1
    why = ('its pod\'s instance container cannot start: ErrImageNeverPull (Container image '
           '"h:1" is not present with pull policy of Never)')
    assert cluster.execs == [ended_command({"single/1": why})]
    record = load_run(only_run_dir(tmp_path))
    assert [i.reason for i in record.instances] == ["stopped after single/1 failed", why]
    assert record.reason == f"2 of 2 failed; first: single/1: {why}"


class DeletedPod(FakeCluster):
    """Pod 1 is deleted (by hand, or evicted and removed) after the first list."""

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = await super().pods(namespace, selector)
        return out if self.lists == 1 else [p for p in out
                                            if not p["metadata"]["name"].endswith("-1")]

    async def logs(self, namespace: str, pod: str, container: str) -> str | None:
        return None if pod.endswith("-1") else await super().logs(namespace, pod, container)


def test_a_pod_deleted_mid_run_fails_its_instance_at_once_and_the_rest_is_judged(
        spec: RunSpec, tmp_path: Path) -> None:
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = DeletedPod({0: 0, 1: 0}, [success("single/0")], ends_after=3)
    states = asyncio.run(follow(cluster, spec, run, tmp_path, timeout_s=30, poll_s=0.01))
    assert states[0].verdict() == (True, None)
    assert states[1].verdict() == (False, "its pod was deleted before it ended")
    assert (tmp_path / "single/1/stdout.log").read_text() == (
        f"# harness: no log: the pod h-{RUN_ID}-1 is gone\n")
    assert cluster.objects == []


def test_a_pod_that_fails_or_never_says_success_fails_its_instance(
        spec: RunSpec, tmp_path: Path) -> None:
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = FakeCluster({0: 1, 1: 0}, [success("single/0")])  # 1 exits 0, never succeeded
    states = asyncio.run(follow(cluster, spec, run, tmp_path, timeout_s=60, poll_s=0))
    assert [s.verdict()[0] for s in states] == [False, False]
    assert [s.status for s in states] == [1, 0]


def exited(iid: str, code: int | None, by: str | None = None) -> dict[str, Any]:
    """The sync service's event as an instance's agent says its process exited."""
    return {"kind": "instance", "instance": iid, "status": "exited", "exit_code": code,
            "by": by}


@pytest.mark.parametrize("code,reason", [(13, "exit code 13"), (-15, "killed by SIGTERM")])
def test_an_instance_reads_its_own_exit_status_not_its_agents(
        code: int, reason: str, spec: RunSpec, tmp_path: Path) -> None:
    """Its pod's container exits 1 (the agent's code for any failure); the instance's own
    status is the one its agent told the sync service, as locally."""
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = FakeCluster({0: 1, 1: 0}, [exited("single/0", code), success("single/1"),
                                         exited("single/1", 0)])
    states = asyncio.run(follow(cluster, spec, run, tmp_path, timeout_s=60, poll_s=0))
    assert [s.status for s in states] == [code, 0]
    assert (states[0].verdict(quote=False)[1] or "").startswith(reason)


class LastWordsCluster(FakeCluster):
    """An instance's log ends with what it wrote last on stderr, then its packed outputs."""

    def __init__(self, outputs: Path, *args: Any) -> None:
        super().__init__(*args)
        self.packed = pack(outputs)

    async def logs(self, namespace: str, pod: str, container: str) -> str:
        text = await super().logs(namespace, pod, container)
        if container != "instance":
            return text
        return text + "connecting to 10.0.0.1\nerror: no peers\n" + self.packed


def test_an_instance_failed_by_its_exit_alone_quotes_the_end_of_its_log(
        spec: RunSpec, tmp_path: Path) -> None:
    """As locally "...; stderr ends: ...": the exit code said nothing of why; one that
    recorded its own failure keeps its reason alone."""
    failure = failed("single/1", "boom")
    (tmp_path / "in-pod").mkdir()
    cluster = LastWordsCluster(tmp_path / "in-pod", {0: 1, 1: 1}, [
        exited("single/0", 13), failure, exited("single/1", 1)])
    code = run_on_cluster(spec, load_options(spec), tmp_path / "run", quiet=True, api=cluster)
    record = load_run(only_run_dir(tmp_path / "run"))
    assert code == 1
    assert [i.reason for i in record.instances] == [
        f"exit code 13; stderr ends: log of h-{record.run_id}-0 | connecting to 10.0.0.1 | "
        "error: no peers", "failed: boom"]


def test_the_runs_reason_names_first_the_instance_the_sync_service_saw_fail_first(
        spec: RunSpec, tmp_path: Path) -> None:
    """As locally, the first that failed in time, not the first pod: without fail-fast no
    "stopping" event names it. single/0 recorded success, then its process exited 3, after
    single/1 had recorded its failure."""
    failure = failed("single/1", "boom")
    cluster = FakeCluster({0: 1, 1: 1}, [success("single/0"), failure, exited("single/1", 1),
                                         exited("single/0", 3)])
    code = run_on_cluster(spec, load_options(spec), tmp_path, quiet=True, api=cluster,
                          fail_fast=False)
    record = load_run(only_run_dir(tmp_path))
    assert code == 1
    assert record.reason == "2 of 2 failed; first: single/1: failed: boom"


def test_the_timeout_stops_waiting_and_everything_is_still_deleted(
        spec: RunSpec, tmp_path: Path) -> None:
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = FakeCluster({0: 0, 1: 0}, [], ends_after=10**6)
    states = asyncio.run(follow(cluster, spec, run, tmp_path, timeout_s=0, poll_s=0))
    assert all(s.stopped and not s.verdict()[0] for s in states)
    assert cluster.objects == []


class StillRunning(FakeCluster):
    """Every pod runs on past the run's timeout; once the sync service is told of it (the
    runner's exec in its container), it logs the stop and each agent ends its instance
    (exit 1) with its outputs packed, but for those of `silent`, which run on."""

    def __init__(self, outputs: Path, events: list[dict[str, Any]], stop: dict[str, Any],
                 silent: Sequence[int] = ()) -> None:
        super().__init__({0: 1, 1: 1}, events, ends_after=10**6)
        self.packed, self.stop, self.silent = pack(outputs), stop, silent
        self.execs: list[tuple[str, str, str, tuple[str, ...]]] = []

    async def exec(self, namespace: str, pod: str, container: str,
                   command: Sequence[str]) -> None:
        assert not self.deleted  # before anything is deleted
        self.execs.append((namespace, pod, container, tuple(command)))
        if tuple(command) not in (TIMEOUT_COMMAND, interrupt_command()):
            return  # an instance the runner failed: told
        self.events.append(self.stop)
        self.ends_after = self.lists  # they end from the next list on

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = await super().pods(namespace, selector)
        for pod in out:
            if self._silent(pod["metadata"]["name"]):
                pod.update(pod_status(pod["metadata"]["name"], pod["metadata"]["labels"],
                                      None))
        return out

    async def logs(self, namespace: str, pod: str, container: str) -> str:
        text = await super().logs(namespace, pod, container)
        ended = self.execs and not self._silent(pod)
        return text + self.packed if container == "instance" and ended else text

    def _silent(self, pod: str) -> bool:
        seq = pod.rsplit("-", 1)[1]
        return seq.isdigit() and int(seq) in self.silent


def _in_pod(tmp_path: Path) -> Path:
    files = tmp_path / "in-pod"
    files.mkdir()
    (files / "log.jsonl").write_text('{"event": "pinged"}\n')
    return files


def timeout_stop(reason: str, waiting: dict[str, str]) -> dict[str, Any]:
    """The sync service's event as it ends single/0 and single/1 at the run's timeout."""
    return {"kind": "phase", "name": "stopping", "reason": reason, "first": "single/1",
            "instances": ["single/0", "single/1"], "timeout": True, "waiting": waiting}


def test_at_the_timeout_the_agents_end_their_instances_and_their_outputs_are_collected(
        tmp_path: Path) -> None:
    """The outputs of instances still running at the run's timeout were lost: the runner
    deleted their pods before any agent packed them; each failed as 'the run's timeout
    (N s) passed', where a local run says 'still running at the run's timeout (Ns)'."""
    spec = build_run_spec("pingpong", instances=2, runner="cluster:k8s", timeout_s=0.5)
    waiting = {"single/0": "waiting at barrier 'pong' (1 of 2 arrived)"}
    # single/0 had recorded success, yet it ran on: it fails, as locally
    cluster = StillRunning(_in_pod(tmp_path), [success("single/0")], timeout_stop(
        "still running at the run's timeout (0.5s)", waiting))
    assert run_on_cluster(spec, load_options(spec), tmp_path / "out", quiet=True,
                          api=cluster) == 1
    run_dir = only_run_dir(tmp_path / "out")
    sync_pod = L.object_name(run_dir.name, "sync")
    assert cluster.execs == [("default", sync_pod, "sync", TIMEOUT_COMMAND)]
    for iid in ("single/0", "single/1"):
        assert (run_dir / iid / "log.jsonl").read_text() == '{"event": "pinged"}\n'
        assert "harness" not in (run_dir / iid / "stdout.log").read_text()
    record = load_run(run_dir)
    assert [(i.reason, i.exit_code) for i in record.instances] == [
        ("still running at the run's timeout (0.5s), waiting at barrier 'pong' (1 of 2 "
         "arrived)", 1), ("still running at the run's timeout (0.5s)", 1)]
    # the one that waited on no other is named, as locally
    assert record.reason == "2 of 2 failed; first: single/1: still running at the run's " \
                            "timeout (0.5s)"
    assert cluster.objects == []


@pytest.mark.parametrize("exec_works", [True, False])
def test_a_pod_that_does_not_end_after_the_timeout_is_named_and_collected_as_it_is(
        exec_works: bool, spec: RunSpec, tmp_path: Path) -> None:
    """single/1's pod does not end once told (or nothing could be told: exec is
    forbidden): the runner waits no longer than it said, keeps what its log has, and names
    it; single/0's pod ended and its outputs are in."""
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    stop = timeout_stop("still running at the run's timeout (0s)", {})
    cluster = StillRunning(_in_pod(tmp_path), [], stop, silent=[1] if exec_works else [0, 1])
    if not exec_works:
        cluster.exec = FakeCluster.exec.__get__(cluster)  # type: ignore[method-assign]
    out = io.StringIO()
    progress = Progress(spec.total, out, interval=0.0, heartbeat=3600)
    states = asyncio.run(follow(cluster, spec, run, tmp_path / "run", timeout_s=0, poll_s=0.01,
                               end_s=0.3, progress=progress))
    late = "its pod did not end within 0.3 s after it" if exec_works else (
        f'it could not be ended through its agent (RuntimeError: pods "h-{RUN_ID}-sync" '
        'is forbidden: cannot create resource "pods/exec")')
    why = f"{late}: no output files, and its log only as far as it went"
    assert states[1].verdict() == (False, f"still running at the run's timeout (0s); {why}")
    assert (tmp_path / "run/single/1/stdout.log").read_text() == (
        f"log of h-{RUN_ID}-1\n# harness: still running at the run's timeout: {why}\n")
    assert not (tmp_path / "run/single/1/log.jsonl").exists()
    assert (tmp_path / "run/single/0/log.jsonl").exists() == exec_works
    named = out.getvalue()
    assert (f"(not ended 0.3 s after it): h-{RUN_ID}-1\n" in named if exec_works else
            f"(not ended through their agents: RuntimeError: pods \"h-{RUN_ID}-sync\" "
            f"is forbidden: cannot create resource \"pods/exec\"): h-{RUN_ID}-0, h-{RUN_ID}-1\n"
            in named)
    assert cluster.objects == []


def test_an_api_failure_mid_run_still_deletes_the_runs_objects(
        spec: RunSpec, tmp_path: Path) -> None:
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = FakeCluster({0: 0, 1: 0}, [], fail_on_list=True)
    with pytest.raises(ConnectionError):
        asyncio.run(follow(cluster, spec, run, tmp_path, timeout_s=60, poll_s=0))
    assert cluster.objects == [] and len(cluster.deleted) == 1


class Kr8sObject:
    """A listed object whose delete finds it gone, or deletes it."""

    def __init__(self, name: str, deleted: list[str], gone: bool = False) -> None:
        self.name, self.deleted, self.gone = name, deleted, gone

    async def delete(self, propagation_policy: str) -> None:
        if self.gone:
            import kr8s

            raise kr8s.NotFoundError(f"Object {self.name} does not exist")
        self.deleted.append(self.name)


def test_an_object_gone_between_list_and_delete_leaves_no_other_behind() -> None:
    pytest.importorskip("kr8s")
    from harness.runners.k8s._cluster import Kr8sApi

    deleted: list[str] = []

    class Client:
        async def get(self, kind: str, namespace: str, label_selector: str) -> Any:
            yield Kr8sObject(f"{kind}/a", deleted, gone=kind == "pods")
            yield Kr8sObject(f"{kind}/b", deleted)

    api = Kr8sApi(load_options(build_run_spec("pingpong", runner="cluster:k8s")))
    api._api = Client()
    count = asyncio.run(api.delete("default", ("pods", "services"), "x=y"))
    assert deleted == ["pods/b", "services/a", "services/b"] and count == 3


class GoneCluster(FakeCluster):
    """The API server went away: nothing can be listed or deleted."""

    async def delete(self, namespace: str, kinds: Sequence[str], selector: str) -> int:
        raise ConnectionError("All connection attempts failed")


def test_objects_that_could_not_be_deleted_are_named_with_how_to_delete_them(
        spec: RunSpec, tmp_path: Path) -> None:
    cluster = GoneCluster({0: 0, 1: 0}, [], fail_on_list=True)
    with pytest.raises(ClusterError) as raised:
        run_on_cluster(spec, load_options(spec, ["namespace=p2p"]), tmp_path, quiet=True,
                       api=cluster)
    run_id = only_run_dir(tmp_path).name
    assert str(raised.value) == (
        "cluster:k8s: the run's objects could not be deleted (ConnectionError: All connection "
        f"attempts failed); once the cluster answers: harness clean --runner cluster:k8s "
        f"--run {run_id} --k8s namespace=p2p")
    assert load_run(only_run_dir(tmp_path)).reason == str(raised.value)


def test_pod_exit_reads_the_documented_container_states() -> None:
    assert pod_exit(pod_status("p", {}, None)) is None
    assert pod_exit(pod_status("p", {}, 0)) == 0
    assert pod_exit(pod_status("p", {}, 3)) == 3
    assert pod_exit({"status": {"phase": "Failed", "reason": "Evicted"}}) == 1
    assert pod_exit({"status": {"phase": "Pending"}}) is None


@pytest.mark.skipif(not os.environ.get("KUBECONFIG"),
                    reason="no cluster: set KUBECONFIG (and an image with the harness) to run")
def test_pingpong_passes_on_a_real_cluster(spec: RunSpec, tmp_path: Path) -> None:
    image = os.environ.get("HARNESS_K8S_IMAGE", "localhost/harness:latest")
    options = load_options(spec, [f"image={image}", "namespace=" +
                                  os.environ.get("HARNESS_K8S_NAMESPACE", "default")])
    assert run_on_cluster(spec, options, tmp_path, quiet=True) == 0


KUBECONFIG_NOBODY_ANSWERS = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_a_run_on_a_cluster_that_cannot_be_used_is_one_line_and_leaves_nothing(
        tmp_path: Path) -> None:
    """No kubeconfig, or an API server that does not answer (loopback's discard port):
    exit 3 and one line, before any run directory (this once recorded an error run)."""
    config = tmp_path / "kubeconfig"
    config.write_text(KUBECONFIG_NOBODY_ANSWERS)
    outputs = tmp_path / "outputs"
    for kubeconfig, problem in [
        (tmp_path / "none", "harness: error: cluster:k8s: no usable kubeconfig ("),
        (config, "harness: error: cluster:k8s: the kubeconfig's API server does not answer "
                 "(ConnectError: "),
    ]:
        done = subprocess.run([sys.executable, "-m", "harness", "run", "pingpong", "--runner",
                               "cluster:k8s", "--outputs", str(outputs)],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "HOME": str(tmp_path),
                                   "KUBECONFIG": str(kubeconfig)})
        assert done.returncode == 3 and done.stderr.startswith(problem), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert not outputs.exists() or not any(outputs.iterdir())


def test_a_kubeconfig_that_is_missing_or_not_yaml_is_one_line(tmp_path: Path) -> None:
    """A YAML error was five lines (its caret drawing); a missing file said only that
    there were no valid credentials."""
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nclusters: [\n  - {name: x\n")
    for kubeconfig, code, problem in [
        (broken, 3, "harness: error: cluster:k8s: no usable kubeconfig ("),
        (tmp_path / "nope", 2, f"harness: error: --k8s kubeconfig '{tmp_path / 'nope'}': no "
                               "such file"),
    ]:
        done = subprocess.run([sys.executable, "-m", "harness", "run", "pingpong", "--runner",
                               "cluster:k8s", "--k8s", f"kubeconfig={kubeconfig}", "--outputs",
                               str(tmp_path / "outputs")],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "HOME": str(tmp_path)})
        assert done.returncode == code and done.stderr.startswith(problem), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_clean_without_a_cluster_or_with_bad_input_is_one_line(tmp_path: Path) -> None:
    env_home = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    for args, code, problem in [
        (["--run", "nope"], 2, "needs --run RUN_ID"),
        (["--run", RUN_ID, "--k8s", "namespace=BAD"], 2, "is not a DNS label"),
        (["--run", RUN_ID], 3, "no usable kubeconfig"),
    ]:
        done = subprocess.run([sys.executable, "-m", "harness", "clean", "--runner",
                               "cluster:k8s", *args], capture_output=True, text=True,
                              timeout=60, env={**os.environ, **env_home})
        assert done.returncode == code and problem in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_the_progress_line_follows_the_pods(spec: RunSpec, tmp_path: Path) -> None:
    """Started once a pod left Pending, then ended by exit code, list by list."""
    from harness._progress import Progress

    class Scheduling(FakeCluster):
        async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
            pods = await super().pods(namespace, selector)
            for pod in pods:  # at the first list, instance 1's pod is still pending
                if self.lists == 1 and pod["metadata"]["name"] == f"h-{RUN_ID}-1":
                    pod["status"]["phase"] = "Pending"
            return pods

    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = Scheduling({0: 0, 1: 3}, [success("single/0")], ends_after=2)
    out = io.StringIO()
    progress = Progress(spec.total, out, interval=0.0, heartbeat=3600)
    asyncio.run(follow(cluster, spec, run, tmp_path, timeout_s=60, poll_s=0,
                       progress=progress))
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["started 1/2  passed 0  failed 0", "started 2/2  passed 0  failed 0",
                     "started 2/2  passed 1  failed 1"]


def test_a_live_cluster_run_has_a_record_and_a_killed_one_is_found_aborted(
        spec: RunSpec, tmp_path: Path) -> None:
    """run.json came only at the end: a run SIGKILLed on this machine left an empty
    directory (`harness runs` said "no runs", `--follow` waited for ever) and its objects on
    the cluster with no record of them."""
    from harness._liveness import mark_aborted
    from tests.observe._fixture import orphan

    seen: list[dict[str, Any]] = []

    class Watched(FakeCluster):
        async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
            if not seen:  # the first list: the run goes on
                seen.append(orjson.loads((only_run_dir(tmp_path) / "run.json").read_bytes()))
            return await super().pods(namespace, selector)

    api = Watched({0: 0, 1: 0}, [success("single/0"), success("single/1")])
    assert run_on_cluster(spec, load_options(spec), tmp_path, quiet=True, api=api) == 0
    (live,) = seen
    assert live["outcome"] == "running" and live["supervisor"]["pid"] == os.getpid()
    assert live["network"]["namespace"] == "default" and live.get("ended") is None
    run_dir = only_run_dir(tmp_path)
    (run_dir / "run.json").write_bytes(orjson.dumps(live))  # as a SIGKILL left it
    orphan(run_dir)
    assert mark_aborted(run_dir, "test")
    reason = orjson.loads((run_dir / "run.json").read_bytes())["reason"]
    assert reason.endswith(f"its objects may be left on the cluster: harness clean --runner "
                           f"cluster:k8s --run {run_dir.name} --k8s namespace=default"), reason


def test_instances_the_sync_service_stopped_after_a_failure_are_judged_as_locally(
        spec: RunSpec, tmp_path: Path) -> None:
    """fail-fast on the cluster: single/1 failed first, the sync service then ended
    single/0 (and single/1, still running after its recorded failure)."""
    stop = {"kind": "phase", "name": "stopping", "reason": "stopped after single/1 failed",
            "first": "single/1", "instances": ["single/0", "single/1"]}
    failure = failed("single/1", "boom")
    code = run_on_cluster(spec, load_options(spec), tmp_path, quiet=True,
                          api=FakeCluster({0: 1, 1: 1}, [failure, stop]))
    record = load_run(only_run_dir(tmp_path))
    assert code == 1
    assert record.reason == "2 of 2 failed; first: single/1: failed: boom"
    assert [i.reason for i in record.instances] == ["stopped after single/1 failed",
                                                    "failed: boom"]
    # one that passed before its agent heard the stop passed
    code = run_on_cluster(spec, load_options(spec), tmp_path / "b", quiet=True,
                          api=FakeCluster({0: 0, 1: 1}, [success("single/0"), failure, stop]))
    record = load_run(only_run_dir(tmp_path / "b"))
    assert [i.reason for i in record.instances] == [None, "failed: boom"]


def test_the_runs_delete_and_clean_reach_every_kind_it_creates(spec: RunSpec) -> None:
    """The sync service is a bare Pod, so its deadline ends it after a killed runner; clean
    still deletes the Deployment an earlier version made it."""
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    assert {o["kind"].lower() + "s" for o in run.objects} == set(KINDS)
    assert "deployments" in CLEAN_KINDS and set(KINDS) < set(CLEAN_KINDS)


class SlowToStart(StillRunning):
    """Pod 1 is Pending (not scheduled: no node has room) for the first `pending` lists,
    or for ever; then every pod runs on until told of the timeout."""

    def __init__(self, outputs: Path, stop: dict[str, Any], pending: float) -> None:
        super().__init__(outputs, [], stop)
        self.pending = pending
        self.started_at: float | None = None  # when a list first showed pod 1 running
        self.told_at: float | None = None

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = await super().pods(namespace, selector)
        for pod in out:
            if pod["metadata"]["name"].endswith("-1") and self.lists <= self.pending:
                pod["status"] = {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/3 nodes are available:  3 Insufficient cpu."}]}
            elif pod["metadata"]["name"].endswith("-1") and self.started_at is None:
                self.started_at = time.monotonic()
        return out

    async def exec(self, namespace: str, pod: str, container: str,
                   command: Sequence[str]) -> None:
        if tuple(command) == TIMEOUT_COMMAND:
            self.told_at = time.monotonic()
        await super().exec(namespace, pod, container, command)


def test_the_runs_timeout_counts_from_when_every_pod_has_started(
        spec: RunSpec, tmp_path: Path) -> None:
    """The timeout counted from the objects' creation, so a slow start (scheduling, a cold
    node's image pull) ate the test's time, where a local run's counts from when every
    instance has started."""
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    stop = timeout_stop("still running at the run's timeout (0.3s)", {})
    cluster = SlowToStart(_in_pod(tmp_path), stop, pending=20)  # ~0.4 s at 0.02 s a list
    states = asyncio.run(follow(cluster, spec, run, tmp_path / "run", timeout_s=0.3,
                                poll_s=0.02))
    assert cluster.started_at is not None and cluster.told_at is not None
    assert cluster.told_at - cluster.started_at >= 0.3
    assert [s.verdict()[1] for s in states] == ["still running at the run's timeout (0.3s)"] * 2


def test_a_pod_not_started_in_time_fails_its_instance_saying_why(
        spec: RunSpec, tmp_path: Path) -> None:
    """One never scheduled: its instance fails naming why, and the run's timeout counts
    from then for the others."""
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    stop = {**timeout_stop("still running at the run's timeout (0.3s)", {}),
            "instances": ["single/0"]}
    cluster = SlowToStart(_in_pod(tmp_path), stop, pending=math.inf)
    begun = time.monotonic()
    states = asyncio.run(follow(cluster, spec, run, tmp_path / "run", timeout_s=0.3,
                                poll_s=0.02, start_within_s=0.2))
    assert cluster.told_at is not None and cluster.told_at - begun >= 0.5
    assert states[1].verdict() == (False, "its pod did not start within 0.2 s of its "
                                   "creation: Unschedulable (0/3 nodes are available: 3 "
                                   "Insufficient cpu.)")
    assert states[0].verdict() == (False, "still running at the run's timeout (0.3s)")
    # the sync service is told (here it does not stop single/0: no fail-fast in this fake)
    assert [c[3] for c in cluster.execs] == [
        ended_command({"single/1": states[1].verdict()[1]}), TIMEOUT_COMMAND]
    assert cluster.objects == []


def test_an_interrupted_run_has_its_instances_ended_through_their_agents_and_keeps_their_outputs(
        spec: RunSpec, tmp_path: Path) -> None:
    """Ctrl-C deleted the running pods with their output files, where a local run keeps
    what its instances wrote: their agents now end them first and pack them."""
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    stop = {"kind": "phase", "name": "stopping", "reason": "interrupted", "first": "",
            "instances": ["single/0", "single/1"], "interrupted": True}
    # single/0 had recorded success, yet it ran on (and exits 0 when ended): it fails
    # for the Ctrl-C, as locally
    cluster = StillRunning(_in_pod(tmp_path), [success("single/0")], stop)
    cluster.exit_codes[0] = 0
    states = {i.id: InstanceState(i) for i in spec.instances}

    async def interrupt() -> None:
        task = asyncio.create_task(follow(cluster, spec, run, tmp_path / "run", timeout_s=60,
                                          poll_s=0.01, states=states))
        while cluster.lists < 3:  # noqa: ASYNC110 (the fake cluster counts its lists)
            await asyncio.sleep(0.01)
        task.cancel()  # what asyncio.run does at a Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupt())
    assert [c[3] for c in cluster.execs] == [interrupt_command()]
    for iid in ("single/0", "single/1"):
        assert states[iid].verdict() == (False, "interrupted")
        assert (tmp_path / "run" / iid / "log.jsonl").read_text() == '{"event": "pinged"}\n'
        assert "harness" not in (tmp_path / "run" / iid / "stdout.log").read_text()
    assert cluster.objects == []


class Pending(FakeCluster):
    """Pod 1 is never scheduled; pod 0 runs on."""

    def __init__(self) -> None:
        super().__init__({0: 1, 1: 1}, [], ends_after=10**6)
        self.execs: list[tuple[str, ...]] = []

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = await super().pods(namespace, selector)
        for pod in out:
            if pod["metadata"]["name"].endswith("-1"):
                pod["status"] = {"phase": "Pending"}
        return out

    async def exec(self, namespace: str, pod: str, container: str,
                   command: Sequence[str]) -> None:
        self.execs.append(tuple(command))
        self.ends_after = self.lists  # pod 0's agent ends it and exits


def test_a_ctrl_c_waits_for_the_pods_that_run_not_for_those_never_started(
        spec: RunSpec, tmp_path: Path) -> None:
    """A pod stuck Pending has no agent to pack anything: the Ctrl-C waited the whole
    30 s for it. And with none running, nothing is asked of the sync service."""
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)

    async def interrupt(cluster: FakeCluster) -> float:
        task = asyncio.create_task(follow(cluster, spec, run, tmp_path / str(id(cluster)),
                                          timeout_s=60, poll_s=0.01))
        while cluster.lists < 3:  # noqa: ASYNC110 (the fake cluster counts its lists)
            await asyncio.sleep(0.01)
        begun = time.monotonic()
        task.cancel()  # what asyncio.run does at a Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - begun

    pending = Pending()
    assert asyncio.run(interrupt(pending)) < 10
    assert pending.execs == [interrupt_command()]  # for pod 0, which ended
    assert pending.objects == []

    class NoneStarted(Pending):
        async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
            out = await super().pods(namespace, selector)
            for pod in out:
                if pod["metadata"]["labels"][L.COMPONENT] == "instance":
                    pod["status"] = {"phase": "Pending"}
            return out

    none = NoneStarted()
    assert asyncio.run(interrupt(none)) < 10
    assert none.execs == [] and none.objects == []


class SyncNotReady(NoImage):
    """NoImage, on a cluster whose sync container refuses the first `refusals` execs (it
    is not running yet)."""

    def __init__(self, refusals: int) -> None:
        super().__init__({0: 0, 1: 0}, [success("single/0")], ends_after=10)
        self.refusals = refusals
        self.execs: list[tuple[str, ...]] = []

    async def exec(self, namespace: str, pod: str, container: str,
                   command: Sequence[str]) -> None:
        self.execs.append(tuple(command))
        if len(self.execs) <= self.refusals:
            raise RuntimeError('container "sync" is not running')


@pytest.mark.parametrize("refusals", [TELL_TRIES - 1, TELL_TRIES + 5])
def test_telling_the_sync_service_is_tried_again_on_the_next_lists_then_given_up(
        refusals: int, spec: RunSpec, tmp_path: Path) -> None:
    """A pod that cannot start is seen within seconds, maybe before the sync container
    runs: the one exec failed, and the others waited for the run's timeout."""
    cluster = SyncNotReady(refusals)
    states = asyncio.run(follow(cluster, spec, render_run(spec, load_options(spec), RUN_ID,
                                                          b"k" * 32),
                                tmp_path, timeout_s=60, poll_s=0.01))
    assert states[0].verdict() == (True, None)
    why = states[1].verdict()[1]
    assert why is not None and why.startswith("its pod's instance container cannot start")
    told = ended_command({"single/1": why})
    assert cluster.execs == [told] * min(refusals + 1, TELL_TRIES)


def test_an_interrupted_run_keeps_what_its_pods_logged_and_the_events_then_deletes(
        spec: RunSpec, tmp_path: Path) -> None:
    """Ctrl-C deleted the pods with nothing collected: a local run keeps what its
    instances wrote. single/0 has ended; single/1 runs on when the run is interrupted."""
    run = render_run(spec, load_options(spec), RUN_ID, b"k" * 32)
    cluster = StillRunning(_in_pod(tmp_path), [success("single/0")], {}, silent=[1])
    cluster.ends_after = 0

    async def interrupt() -> list[Any]:
        task = asyncio.create_task(follow(cluster, spec, run, tmp_path / "run", timeout_s=60,
                                          poll_s=0.01, states=states, end_s=0.3))
        while cluster.lists < 3:  # noqa: ASYNC110 (the fake cluster counts its lists)
            await asyncio.sleep(0.01)
        task.cancel()  # what asyncio.run does at a Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task
        return list(states.values())

    states = {i.id: InstanceState(i) for i in spec.instances}
    ended, running = asyncio.run(interrupt())
    # single/0's end was told (its agent had said it: the service leaves it), then the
    # interrupt; single/1's agent ran on (silent) for end_s: deleted without its outputs
    assert [c[3] for c in cluster.execs] == [
        ended_command({"single/0": "its pod ended (exit code 1)"}), interrupt_command()]
    assert running.verdict() == (False, "interrupted")
    assert (tmp_path / "run/single/1/stdout.log").read_text() == (
        f"log of h-{RUN_ID}-1\n# harness: interrupted: its log only as far as it went, and "
        "no output files (its pod was deleted running)\n")
    assert (tmp_path / "run/single/0/stdout.log").read_text() == f"log of h-{RUN_ID}-0\n"
    assert ended.recorded == "success"  # from the sync service's events, collected
    assert (tmp_path / "run/events.jsonl").exists()
    assert cluster.objects == []
